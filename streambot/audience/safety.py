"""On-air safety: what a prompt is about, and whether this world allows it.

The block lists (`blocklist.BlockList`) catch words; they cannot catch
meaning ("a child in lingerie" holds no bad word). Three more layers, each
cheap enough for where it runs:

0. Slang read as what it means (`Slang`, config/moderation/slang.txt):
   "seggs" is judged as "sex" by every layer below and by the block lists.
   A block-list word WordNet knows only as a harmless animal, plant or place
   name ("blue-footed boobies", "pussy willow") holds instead of refusing.
1. Concept terms (inline, microseconds): per category, words and phrases
   matched like the block lists, evasions undone; the `minors` category
   refuses a minor-word together with a sexual word anywhere in the prompt.
2. An offensive-language classifier (inline, microseconds): the linear model
   shipped inside `alt-profanity-check`, evaluated straight from its fitted
   weights (the package's own `predict_prob` costs 10 ms a call; the result
   is the same to 1e-9, checked when it loads).
3. A semantic probe (per candidate, in the pooling worker): a softmax over
   sentence embeddings (the ones pooling already computes) and what WordNet
   says the prompt's words can mean (`WordSenses`: a word any of whose
   senses is a kind of sexual activity, genitalia, suicide, wound, killing,
   battle, ... or is marked in WordNet as an obscenity or an ethnic slur),
   trained on the examples in config/moderation/concepts.toml and the `dev`
   half of tests/data/safety_prompts.jsonl (`benchmarks/bench_safety.py --train`),
   averaged with the vote of the nearest of those sentences; in the hold
   band, a prompt far nearer a harmless training sentence than an unsafe one
   is admitted (`ConceptProbe.release_margin`, chosen on dev).
   While the sentence model still loads in the background (`streambot run`
   does not wait for it), candidates wait for this layer, hidden; the
   streamer's own prompt does not wait and meets the first two.

Three outcomes, as Twitch's AutoMod has: a prompt the layers are sure of is
refused; one they are unsure of (the probe between its hold and refuse
thresholds, the classifier between its two, a block-list word marked `?`
whose commonest meaning is harmless: "dick" the detective, "nude" the
painting, or a prompt naming a child with some sexual weight) is held for
a moderator; the rest is admitted.

Categories: sexual, minors, self_harm, gore, hate, violence (against
people), violence.war (battles, soldiers, tanks, bombs) and abuse (insults).
A world may allow `violence.war` (`[moderation] allow` in its preset),
against armies only: a prompt that names what war must not target
(`Safety.targets_civilians`) is judged as a world that allows nothing judges
it. Nothing allows the others.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import threading
import tomllib
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from .. import cache
from ..blocklist import BlockList
from ..config import CONFIG_DIR, RELAXABLE, ConfigError
from ..pooling import lemma

if TYPE_CHECKING:
    from ..lexicon import WordNet

log = logging.getLogger(__name__)

CATEGORIES = ("sexual", "minors", "self_harm", "gore", "hate", "violence", "violence.war", "abuse")
CONCEPTS_FILE = CONFIG_DIR / "moderation" / "concepts.toml"
PROBE_FILE = CONFIG_DIR / "moderation" / "concepts.npz"
SLANG_FILE = CONFIG_DIR / "moderation" / "slang.txt"
MODEL_WAIT_S = 120  # the longest a batch of candidates waits for the sentence model to load

Embed = Callable[[list[str]], np.ndarray]
Concepts = dict[str, dict[str, Any]]  # concepts.toml: per category, its tables
Action = Literal["refuse", "hold"]


# -- 1. concept terms --------------------------------------------------------------


class ConceptTerms:
    """Per category, block-list-style terms, matched in one pass; `minors`
    refuses only when a minor-word and a sexual word are both there."""

    def __init__(self, concepts: Concepts) -> None:
        self.terms = BlockList()
        for cat, table in concepts.items():
            for term in table.get("terms", ()):
                self.terms.add(term, cat)
            for term in table.get("minor_terms", ()):
                self.terms.add(term, f"{cat}+minor")
            for term in table.get("sexual_terms", ()):
                self.terms.add(term, f"{cat}+sexual")
            for term in table.get("impact_terms", ()):
                self.terms.add(term, f"{cat}+impact")

    def names_minor(self, text: str) -> bool:
        """Whether the normalised text holds a minor-word ("a girl", "12 year old")."""
        return "minors+minor" in self.terms.tags(text)

    def names_impact(self, text: str) -> bool:
        """Whether the normalised text says something flew or crashed into something ("into", "slams")."""
        return "violence+impact" in self.terms.tags(text)

    def category(self, text: str, allowed: frozenset[str] = frozenset()) -> str | None:
        """The first category (in `CATEGORIES` order) whose terms the normalised text holds."""
        tags = self.terms.tags(text)
        if not tags:
            return None
        if "minors+minor" in tags and "minors+sexual" in tags:
            return "minors"
        return next((c for c in CATEGORIES if c in tags and c not in allowed), None)


def load_concepts(path: Path = CONCEPTS_FILE) -> Concepts:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: the safety concepts file does not exist.") from None
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{path}: the safety concepts file cannot be read ({e}).") from None
    unknown = set(data) - set(CATEGORIES) - {"benign"}
    if unknown:
        raise ConfigError(f"{path}: unknown safety category {sorted(unknown)[0]!r}; use {', '.join(CATEGORIES)}.")
    return data


# -- 1b. what WordNet says a word can mean --------------------------------------

SENSE_FEATURES = (*CATEGORIES, "minors+sexual")
# Animals, plants and places (not organism.n.1: people are organisms, and "sex offender" is a person)
CREATURES_AND_PLACES = ("animal.n.1", "plant.n.2", "location.n.1")
_DRINKS = ("beverage.n.1",)
_NAMED_PLACES = ("location.n.1", "land.n.4")  # a region, a country, a town; an island
_STOPWORDS = frozenset("a an the of in on at by to and or her his its their with for from".split())
_MINORS = SENSE_FEATURES.index("minors")
_WORD = re.compile(r"[a-z]+(?:-[a-z]+)*")


class WordSenses:
    """Per word, which safety categories its WordNet senses fall under.

    A sense falls under a category when it is a kind of one of the
    category's root senses (`senses` in concepts.toml, named as
    `lemma.pos.N`, N counting in WordNet's own order: commonest first), or
    when WordNet marks its usage as one of them (obscenity, ethnic slur).
    Words never seen in training still land somewhere: "fellatio" is a kind
    of sexual activity, "cadaver" a corpse, "barrage" a bombardment.
    """

    def __init__(
        self, lexicon: WordNet, roots: dict[str, list[str]], marks: dict[str, list[str]] | None = None
    ) -> None:
        self.lexicon = lexicon
        self.roots: dict[tuple[str, int], set[str]] = {}
        for cat, names in roots.items():
            for name in names:
                self.roots.setdefault(self._resolve(name), set()).add(cat)
        # Kinds of thing a rule asks about, not categories: "civilian" (what war must not
        # target), "aircraft", "building" (concepts.toml's [violence] `*_senses`).
        self.mark_roots: dict[tuple[str, int], set[str]] = {}
        for mark, names in (marks or {}).items():
            for name in names:
                self.mark_roots.setdefault(self._resolve(name), set()).add(mark)
        self._marks_of_word = lru_cache(maxsize=100_000)(self._word_marks)
        self._ancestors = lru_cache(maxsize=100_000)(self._walk_up)  # type: ignore[method-assign]
        self._creature_roots: set[tuple[str, int]] | None = None
        self._of_synset = lru_cache(maxsize=100_000)(self._categories)
        self.word = lru_cache(maxsize=100_000)(self._word)
        self.features = lru_cache(maxsize=8192)(self._features)  # type: ignore[method-assign]

    def _resolve(self, name: str) -> tuple[str, int]:
        try:
            lemma, pos, n = name.rsplit(".", 2)
            found = self.lexicon.synsets(lemma, pos=(pos,))
            return found[int(n) - 1].key
        except (ValueError, IndexError, KeyError):
            raise ConfigError(
                f"{CONCEPTS_FILE.name}: {name!r} is not a WordNet sense (lemma.pos.N, e.g. corpse.n.1)."
            ) from None

    def _categories(self, key: tuple[str, int]) -> frozenset[str]:
        """The categories of one synset: its own roots, its usage domains', its hypernyms'."""
        out: set[str] = set(self.roots.get(key, ()))
        for sym, target, _, _ in self.lexicon.synset(key).pointers:
            if sym == ";u":  # usage domain: "obscenity", "ethnic slur"
                out |= self.roots.get(target, set())
        for t in self._ancestors(key):
            out |= self.roots.get(t, set())
        return frozenset(out)

    def _word(self, word: str) -> tuple[frozenset[str], ...]:
        """The categories of each sense of a word (or its lemma), commonest first in each part of speech."""
        senses = self.lexicon.synsets(word)
        if not senses:
            lemma = _lemma(word)
            senses = self.lexicon.synsets(lemma) if lemma != word else []
        return tuple(self._of_synset(s.key) for s in senses)

    def phrases(self, text: str) -> list[tuple[int, int, str]]:
        """The phrases of the text WordNet holds as one lemma ("pussy willow", "spic and span" as
        spick-and-span, "killer whale"): (start, end, lemma), longest first, never overlapping.
        A hyphenated word counts as a phrase of its parts."""
        spans = [(m.start(), m.end(), m.group()) for m in _WORD.finditer(text.lower())]
        out: list[tuple[int, int, str]] = []
        i = 0
        while i < len(spans):
            for n in range(min(4, len(spans) - i), 0, -1):
                words = [w for _, _, w in spans[i : i + n]]
                if n == 1 and "-" not in words[0]:
                    break
                found = next((lemma for lemma in self._phrase_forms(words) if self.lexicon.synsets(lemma)), None)
                if found is not None:
                    out.append((spans[i][0], spans[i + n - 1][1], found))
                    i += n - 1
                    break
            i += 1
        return out

    @staticmethod
    def _phrase_forms(words: list[str]) -> list[str]:
        last = [words[-1], _lemma(words[-1])]  # "pussy willows" is the lemma pussy_willow
        return list(dict.fromkeys(sep.join([*words[:-1], w]) for w in last for sep in ("_", "-")))

    def _ancestors(self, key: tuple[str, int]) -> frozenset[tuple[str, int]]:
        """The synset and everything it is a kind or an instance of (cached)."""
        return self._walk_up(key)

    def _walk_up(self, key: tuple[str, int]) -> frozenset[tuple[str, int]]:
        frontier, seen = {key}, {key}
        for _ in range(18):  # WordNet's noun hierarchy is at most about 18 deep
            frontier = {
                t for k in frontier for sym, t, _, _ in self.lexicon.synset(k).pointers if sym in ("@", "@i")
            } - seen
            if not frontier:
                break
            seen |= frontier
        return frozenset(seen)

    def _word_marks(self, word: str) -> frozenset[str]:
        senses = self.lexicon.synsets(word, pos=("n",))
        if not senses:
            lemma = _lemma(word)
            senses = self.lexicon.synsets(lemma, pos=("n",)) if lemma != word else []
        # the commonest sense only: "army" and "crush" have rare senses that are crowds
        return (
            frozenset(m for k in self._ancestors(senses[0].key) for m in self.mark_roots.get(k, ()))
            if senses
            else frozenset()
        )

    def marks(self, text: str) -> frozenset[str]:
        """The marks (`marks` of the constructor) the commonest noun sense of a word of the text
        falls under; a phrase WordNet holds as one lemma is read as that lemma ("twin towers")."""
        if not self.mark_roots:
            return frozenset()
        lower = text.lower()
        phrases = self.phrases(lower)
        grams = [lemma for _, _, lemma in phrases]
        grams += [m.group() for m in _WORD.finditer(lower) if not any(a <= m.start() < b for a, b, _ in phrases)]
        return frozenset(m for w in grams for m in self._marks_of_word(w))

    def first_sense_under(self, word: str, roots: Iterable[str]) -> bool:
        """Whether the word's commonest noun sense is a kind (or an instance) of one of `roots`."""
        senses = self.lexicon.synsets(word.lower(), pos=("n",)) or self.lexicon.synsets(
            _lemma(word.lower()), pos=("n",)
        )
        return bool(senses) and bool(self._ancestors(senses[0].key) & {self._resolve(r) for r in roots})

    def any_sense_under(self, word: str, roots: Iterable[str], *, instance: bool = False) -> bool:
        """Whether one of the word's noun senses is a kind of one of `roots` (with `instance`:
        a named one, as Newfoundland is an island and Pennsylvania a state)."""
        keys = {self._resolve(r) for r in roots}
        for s in self.lexicon.synsets(word.lower(), pos=("n",)):
            if instance and not any(sym == "@i" for sym, _, _, _ in s.pointers):
                continue
            if self._ancestors(s.key) & keys:
                return True
        return False

    def harmless(self, word: str) -> bool:
        """WordNet knows the word (or phrase) and none of its senses falls under any category."""
        senses = self.word(word.lower().replace(" ", "_"))
        return bool(senses) and not any(senses)

    def names_a_creature_or_place(self, word: str) -> bool:
        """One of the word's senses is a living thing or a place (the blue-footed booby, the
        Maine coon): what Scunthorpe-like traps mostly are."""
        if self._creature_roots is None:
            self._creature_roots = {self._resolve(n) for n in CREATURES_AND_PLACES}
        word = word.lower()
        senses = self.lexicon.synsets(word) or self.lexicon.synsets(_lemma(word))
        frontier = {s.key for s in senses}
        seen = set(frontier)
        for _ in range(18):
            if frontier & self._creature_roots:
                return True
            frontier = {
                t for k in frontier for sym, t, _, _ in self.lexicon.synset(k).pointers if sym in ("@", "@i")
            } - seen
            seen |= frontier
        return False

    def without_harmless_phrases(self, text: str, also: Callable[[str], bool] = lambda lemma: True) -> str:
        """The text with its WordNet phrases that mean nothing unsafe in any sense (and pass `also`) cut out."""
        cut = [(a, b) for a, b, lemma in self.phrases(text) if self.harmless(lemma) and also(lemma)]
        for a, b in reversed(cut):
            text = text[:a] + " " + text[b:]
        return text

    def features(self, text: str) -> np.ndarray:
        """Per category (and for minors with sexual words), the largest share of any word's
        senses under it, senses weighted by how common they are (1/rank). A phrase WordNet
        holds as one lemma is read as that lemma, not as its words ("killer whale" is a whale).
        Read-only (cached)."""
        return self._features(text)

    def _features(self, text: str) -> np.ndarray:
        lower = text.lower()
        phrases = self.phrases(lower)
        grams = [lemma for _, _, lemma in phrases]
        grams += [m.group() for m in _WORD.finditer(lower) if not any(a <= m.start() < b for a, b, _ in phrases)]
        out = np.zeros(len(SENSE_FEATURES), np.float32)
        index = {c: i for i, c in enumerate(SENSE_FEATURES)}
        for w in grams:
            senses = self.word(w)
            if not senses:
                continue
            weights = [1.0 / (1 + i) for i in range(len(senses))]
            total = sum(weights)
            share: dict[str, float] = {}
            for wt, cats in zip(weights, senses):
                for c in cats:
                    share[c] = share.get(c, 0.0) + wt / total
            for c, v in share.items():
                out[index[c]] = max(out[index[c]], v)
        out[index["minors+sexual"]] = out[index["minors"]] * out[index["sexual"]]
        out.setflags(write=False)
        return out


def _lemma(word: str) -> str:
    return lemma(word).lower()  # pooling's lemmatizer (cached there), lower-cased for the word lists


# -- 1c. slang read as what it stands for ---------------------------------------------


class Slang:
    """Slang and algospeak ("seggs", "unalive", "spicy accountant"), read as what they stand for.

    Each line of slang.txt is `term = meaning`; the terms are matched like the block
    lists (evasions undone: "s3ggs", "s e g g s"), and a prompt holding one is read with
    the meanings added ("seggs in a car (sex)"), so every layer (the block lists, the
    concept terms, the classifier, the sentence model) judges the words it knows.
    What the viewer wrote is what is shown; the reading is only judged.
    """

    def __init__(self, lines: Iterable[str], where: str = "slang.txt") -> None:
        from ..blocklist import BlockList

        self.list = BlockList()
        for n, line in enumerate(lines, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            term, sep, meaning = line.partition("=")
            if not sep or not term.strip() or not meaning.strip() or term.strip()[0] in "?!":
                raise ConfigError(f"{where} line {n}: write `slang = what it means`, e.g. `seggs = sex`.")
            self.list.add(term.strip(), " ".join(meaning.split()))

    def reading(self, text: str) -> str:
        """The text with the meaning of each slang term it holds added, or the text itself."""
        meanings = self.list.tags(text) if self.list.size else ()
        return f"{text} ({', '.join(sorted(meanings))})" if meanings else text


def load_slang(path: Path = SLANG_FILE) -> Slang:
    try:
        with open(path, encoding="utf-8") as f:
            return Slang(f, path.name)
    except FileNotFoundError:
        raise ConfigError(f"{path}: the slang file does not exist.") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: the slang file cannot be read ({e}).") from None


# -- 2. the offensive-language classifier ----------------------------------------


class OffensiveClassifier:
    """`alt-profanity-check`'s model: TF-IDF words -> calibrated linear SVMs.

    The package's model is a `CalibratedClassifierCV` of linear SVMs, each
    with a sigmoid calibration; its probability is the mean of theirs. A
    linear model over TF-IDF is a weight per word, so one prompt costs a few
    dictionary look-ups instead of the library's 10 ms of input checking.

    That reduction (`Reduction`) is cached (streambot/cache.py), keyed by the
    package's version, scikit-learn's and `REDUCTION_VERSION`: a warm start
    reads a few arrays and never imports scikit-learn (1 s of imports and
    unpickling). A reduction is cached only after it scored the labelled
    prompts and a few hundred generated strings as the package's own
    `predict_proba` does.
    """

    def __init__(self, reduction: Reduction) -> None:
        self._analyzer = reduction.analyzer()
        self._intercept = reduction.intercept.tolist()
        self._calibration = [(float(a), float(b)) for a, b in reduction.calibration]
        # word -> (idf, idf * coef of each fold), as plain floats: a prompt has few words,
        # and Python arithmetic on five floats beats numpy's per-call overhead
        self._words = dict(zip(reduction.words, zip(reduction.idf.tolist(), map(tuple, reduction.weights.tolist()))))

    @classmethod
    def from_package(cls) -> OffensiveClassifier:
        """The package's model, reduced; from the cache when it holds this version's reduction."""
        return cls(Reduction.load())

    def score(self, text: str) -> float:
        """The probability that the text is offensive (0..1)."""
        dots = [0.0] * len(self._intercept)
        norm = 0.0
        for word, tf in Counter(self._analyzer(text)).items():
            hit = self._words.get(word)
            if hit is not None:
                norm += (tf * hit[0]) ** 2
                dots = [d + tf * w for d, w in zip(dots, hit[1])]
        scale = 1.0 / math.sqrt(norm) if norm > 0 else 0.0
        p = 0.0
        for d, c, (a, b) in zip(dots, self._intercept, self._calibration):
            p += 1.0 / (1.0 + math.exp(a * (d * scale + c) + b))
        return p / len(dots)

    def reference(self, texts: Sequence[str]) -> np.ndarray:
        """The package's own computation (slow, imports scikit-learn): what `score` must agree with."""
        from profanity_check import profanity_check as pc

        return np.asarray(pc.model.predict_proba(pc.vectorizer.transform(list(texts)))[:, 1])


REDUCTION_VERSION = 1  # bump when `Reduction` reads the package's model or lays out its arrays differently
_REDUCTION_CACHE = "offensive-classifier"
_REDUCTION_ATOL = 1e-6  # the largest difference from `predict_proba`, in log-odds, a cached reduction may have


@dataclass(frozen=True)
class Reduction:
    """The package's TF-IDF vectorizer and calibrated SVMs as arrays: per word its idf and
    idf x coefficient of each fold, each fold's intercept and sigmoid (a, b), and the
    settings of the vectorizer's word analyzer, which `analyzer` rebuilds with `re`."""

    words: list[str]
    idf: np.ndarray  # (words,)
    weights: np.ndarray  # (words, folds): idf * coef
    intercept: np.ndarray  # (folds,)
    calibration: np.ndarray  # (folds, 2): a, b of 1 / (1 + exp(a f + b))
    token_pattern: str
    lowercase: bool
    stop_words: frozenset[str]
    ngram_range: tuple[int, int]

    def analyzer(self) -> Callable[[str], list[str]]:
        """scikit-learn's word analyzer with these settings: lower-case, the token
        pattern's matches, stop words out, then word n-grams."""
        findall = re.compile(self.token_pattern).findall
        lower, stop = self.lowercase, self.stop_words
        min_n, max_n = self.ngram_range

        def words(text: str) -> list[str]:
            tokens: list[str] = [t for t in findall(text.lower() if lower else text) if t not in stop]
            if max_n == 1:
                return tokens
            grams = list(tokens) if min_n == 1 else []
            for n in range(max(min_n, 2), min(max_n, len(tokens)) + 1):
                grams += [" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
            return grams

        return words

    @staticmethod
    def key() -> str:
        from importlib.metadata import version

        return cache.key(_REDUCTION_CACHE, REDUCTION_VERSION, version("alt-profanity-check"), version("scikit-learn"))

    @classmethod
    def load(cls) -> Reduction:
        """From the cache, or reduced from the package, checked against it, and cached."""
        k = cls.key()
        arrays = cache.load(_REDUCTION_CACHE, k)
        if arrays is not None:
            try:
                return cls.from_arrays(arrays)
            except (KeyError, ValueError, UnicodeDecodeError) as e:
                log.warning("the cached classifier does not fit (%s); reducing the package's model again", e)
        from profanity_check import profanity_check as pc

        reduced = cls.reduce(pc.vectorizer, pc.model)
        reduced.check(pc.vectorizer, pc.model)
        cache.store(_REDUCTION_CACHE, k, reduced.arrays())
        return reduced

    @classmethod
    def reduce(cls, vectorizer: Any, model: Any) -> Reduction:
        """The reduction of a fitted TfidfVectorizer and CalibratedClassifierCV of linear SVMs."""
        v = vectorizer
        replicable = (
            v.analyzer == "word"
            and v.preprocessor is None
            and v.tokenizer is None
            and not v.strip_accents
            and not v.binary
            and not v.sublinear_tf
            and v.use_idf
            and v.norm == "l2"
            and all(c.method == "sigmoid" for c in model.calibrated_classifiers_)
        )
        if not replicable:
            raise ConfigError(
                "The offensive-language classifier's model is not the one this version reads; "
                "reinstall alt-profanity-check as pinned in pyproject.toml."
            )
        vocab = sorted(v.vocabulary_.items(), key=lambda item: item[1])
        idf = np.asarray(v.idf_, dtype=np.float64)
        folds = model.calibrated_classifiers_
        coef = np.stack([np.asarray(f.estimator.coef_, dtype=np.float64).ravel() for f in folds])
        return cls(
            words=[w for w, _ in vocab],
            idf=idf[[j for _, j in vocab]],
            weights=np.ascontiguousarray((coef * idf).T[[j for _, j in vocab]]),
            intercept=np.array([float(np.ravel(f.estimator.intercept_)[0]) for f in folds]),
            calibration=np.array([(float(f.calibrators[0].a_), float(f.calibrators[0].b_)) for f in folds]),
            token_pattern=v.token_pattern,
            lowercase=bool(v.lowercase),
            stop_words=frozenset(v.get_stop_words() or ()),
            ngram_range=(int(v.ngram_range[0]), int(v.ngram_range[1])),
        )

    def check(self, vectorizer: Any, model: Any) -> None:
        """Refuse (ConfigError) a reduction that scores any of the labelled prompts or a few
        hundred generated strings otherwise than the package's own `predict_proba`."""
        texts = _check_texts(self.words)
        clf = OffensiveClassifier(self)
        ours = np.array([clf.score(t) for t in texts])
        theirs = np.asarray(model.predict_proba(vectorizer.transform(texts))[:, 1])

        # in log-odds, where a saturated score (a slur alone scores 0.999999) still shows a
        # word weighed otherwise; float64 keeps them to about 1e-10 there
        def logit(p: np.ndarray) -> np.ndarray:
            p = np.clip(p, 1e-15, 1 - 1e-15)
            return np.asarray(np.log(p) - np.log1p(-p))

        worst = int(np.argmax(np.abs(logit(ours) - logit(theirs))))
        if abs(logit(ours[worst : worst + 1]) - logit(theirs[worst : worst + 1]))[0] > _REDUCTION_ATOL:
            raise ConfigError(
                "The offensive-language classifier's model is not the one this version reads "
                f"({texts[worst]!r} scores {ours[worst]:.6f}, the package says {theirs[worst]:.6f}); "
                "reinstall alt-profanity-check as pinned in pyproject.toml."
            )

    def arrays(self) -> dict[str, np.ndarray]:
        def text(words: Iterable[str]) -> np.ndarray:
            return np.frombuffer("\n".join(words).encode("utf-8"), np.uint8)

        if any("\n" in w for w in [*self.words, *self.stop_words]):
            raise ValueError("a word holds a line break")
        return {
            "words": text(self.words),
            "idf": self.idf,
            "weights": self.weights,
            "intercept": self.intercept,
            "calibration": self.calibration,
            "token_pattern": np.array(self.token_pattern),
            "lowercase": np.array(self.lowercase),
            "stop_words": text(sorted(self.stop_words)),
            "ngram_range": np.array(self.ngram_range),
        }

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray]) -> Reduction:
        words = a["words"].tobytes().decode("utf-8").split("\n")
        weights = a["weights"]
        if weights.ndim != 2 or len(words) != len(weights) or a["idf"].shape != (len(words),):
            raise ValueError(f"{len(words)} words for weights of shape {weights.shape}")
        lo, hi = (int(n) for n in a["ngram_range"])
        return cls(
            words=words,
            idf=a["idf"],
            weights=weights,
            intercept=a["intercept"],
            calibration=a["calibration"],
            token_pattern=str(a["token_pattern"]),
            lowercase=bool(a["lowercase"]),
            stop_words=frozenset(a["stop_words"].tobytes().decode("utf-8").split("\n")),
            ngram_range=(lo, hi),
        )


def _check_texts(vocabulary: Sequence[str], n: int = 400) -> list[str]:
    """What a reduction is checked on, the same on every install: every word of the model
    alone (each word's weight decides its own score), a few prompts, and `n` strings of the
    model's words, stop words, case, digits and punctuation (the tests hold it against the
    package's own scores on the labelled set too)."""
    import random

    texts = ["a dragon attacks the castle", "you are all idiots", "what the hell", "", "!!!", *vocabulary]
    rng = random.Random(0)
    extra = ["the", "and", "A", "I", "x", "über", "café", "42", "don't", "e-mail", "!", "?", "...", "—", "😀"]
    for _ in range(n):
        words = [rng.choice(vocabulary) if rng.random() < 0.6 else rng.choice(extra) for _ in range(rng.randint(1, 12))]
        words = [w.upper() if rng.random() < 0.15 else w.capitalize() if rng.random() < 0.15 else w for w in words]
        texts.append(rng.choice([" ", " ", ", ", "  ", "-"]).join(words))
    return texts


@lru_cache(maxsize=1)
def load_classifier() -> OffensiveClassifier:
    return OffensiveClassifier.from_package()


# -- 3. the semantic probe -------------------------------------------------------


_BLAS_ONE_THREAD = 262_144  # elements: OpenBLAS splits a matrix-vector product across threads from about 450,000


def _cosines(memory: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """memory @ v for each row v, as matrix-vector products of at most `_BLAS_ONE_THREAD`
    elements: a batch's matrix product, or a larger matrix-vector one, goes to BLAS's threads,
    which on a busy machine wait on each other (8 ms a row for 1,241 training sentences
    against 0.1 ms in blocks)."""
    rows = max(1, _BLAS_ONE_THREAD // max(1, memory.shape[1]))
    vectors = np.asarray(vectors, np.float32)
    out = np.empty((len(vectors), len(memory)), np.float32)
    for i, v in enumerate(vectors):
        for a in range(0, len(memory), rows):
            out[i, a : a + rows] = memory[a : a + rows] @ v
    return out


@dataclass(frozen=True)
class ConceptProbe:
    """Two readers of a prompt's features, averaged: a softmax (row i of `weights`
    scores `classes[i]`) and its nearest training sentences.

    The features are the sentence embedding followed, when `senses` is set,
    by `WordSenses.features` (one column per `SENSE_FEATURES`). The softmax
    draws one straight boundary per class and, on a sentence model this
    small, calls anything near a topic unsafe ("a shirtless man chopping
    wood" near nudity); the neighbours (`memory`, the training sentences'
    embeddings) know that the nearest sentences to it were harmless. Their
    vote: the `neighbours` most similar, each weighted exp((cos - 1) /
    `temperature`); `memory_weight` is its share of the average.

    The refused classes' probability together decides: at `threshold` or
    more the prompt is refused, from `hold_threshold` it is held for a
    moderator. Worlds that allow a category have their own pair
    (`relaxed_*`): the rest must weigh less. A prompt that names a minor is
    held from `minor_hold_threshold` of sexual content (sexual and minors
    together), whatever else it weighs.
    """

    classes: tuple[str, ...]  # "benign" and the categories
    weights: np.ndarray  # (classes, features)
    bias: np.ndarray  # (classes,)
    threshold: float
    relaxed_threshold: float
    hold_threshold: float = 1.0  # 1.0: no band, nothing held
    relaxed_hold_threshold: float = 1.0
    source: str = ""  # hash of what it was trained on
    senses: bool = False  # whether the WordNet columns follow the embedding
    memory: np.ndarray | None = None  # (sentences, embedding) unit vectors, float16
    memory_labels: np.ndarray | None = None  # (sentences,) index into classes
    neighbours: int = 10
    temperature: float = 0.1
    memory_weight: float = 0.0
    minor_hold_threshold: float = 1.0
    # A second opinion in the hold band: a prompt whose nearest harmless training sentence is
    # this much more similar (cosine) than its nearest unsafe one is admitted. None: off.
    release_margin: float | None = None

    def neighbour_gap(self, vectors: np.ndarray) -> np.ndarray:
        """Per row, cosine to the nearest harmless training sentence minus to the nearest unsafe one."""
        assert self.memory is not None and self.memory_labels is not None
        benign = self.memory_labels == self.classes.index("benign")
        sims = _cosines(self.memory, vectors)
        gap: np.ndarray = sims[:, benign].max(axis=1) - sims[:, ~benign].max(axis=1)
        return gap

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        z = features @ self.weights.T + self.bias
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        p: np.ndarray = e / e.sum(axis=1, keepdims=True)
        if self.memory is None or self.memory_labels is None or self.memory_weight <= 0:
            return p
        vote = self.neighbour_vote(features[:, : self.memory.shape[1]])
        mixed: np.ndarray = (1.0 - self.memory_weight) * p + self.memory_weight * vote
        return mixed

    def neighbour_vote(self, vectors: np.ndarray) -> np.ndarray:
        """Per row, the classes of its nearest training sentences, weighted by similarity."""
        assert self.memory is not None and self.memory_labels is not None
        sims = _cosines(self.memory, vectors)
        k = min(self.neighbours, sims.shape[1])
        near = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        w = np.exp((np.take_along_axis(sims, near, axis=1) - 1.0) / self.temperature)
        vote = np.zeros((len(vectors), len(self.classes)))
        np.add.at(vote, (np.repeat(np.arange(len(vectors)), k), self.memory_labels[near].ravel()), w.ravel())
        out: np.ndarray = vote / vote.sum(axis=1, keepdims=True)
        return out

    def unsafe(
        self, features: np.ndarray, allowed: frozenset[str] = frozenset(), p: np.ndarray | None = None
    ) -> tuple[np.ndarray, list[str]]:
        """Per row, the refused classes' probability together, and the likeliest of them."""
        p = self.probabilities(features) if p is None else p
        refused = [i for i, c in enumerate(self.classes) if c != "benign" and c not in allowed]
        sub = p[:, refused]
        mass: np.ndarray = sub.sum(axis=1)
        return mass, [self.classes[refused[int(j)]] for j in sub.argmax(axis=1)]

    def sexual(self, p: np.ndarray) -> np.ndarray:
        """Per row of probabilities, sexual content's share (the sexual and minors classes)."""
        share: np.ndarray = p[:, [i for i, c in enumerate(self.classes) if c in ("sexual", "minors")]].sum(axis=1)
        return share

    def thresholds(self, allowed: frozenset[str] = frozenset()) -> tuple[float, float]:
        """(hold, refuse) for a world that allows these categories."""
        if allowed:
            return self.relaxed_hold_threshold, self.relaxed_threshold
        return self.hold_threshold, self.threshold

    def categories(
        self,
        features: np.ndarray,
        allowed: frozenset[str] = frozenset(),
        *,
        hold: float | None = None,
        refuse: float | None = None,
        minor: Sequence[bool] | None = None,
    ) -> list[tuple[str, Action] | None]:
        """Per row, (the likeliest refused category, refuse or hold), or None when it may go on air.
        `minor`: per row, whether the prompt names a minor."""
        p = self.probabilities(features)
        mass, cats = self.unsafe(features, allowed, p)
        sexual = self.sexual(p)
        h, r = self.thresholds(allowed)
        h, r = (h if hold is None else hold), (r if refuse is None else refuse)
        gap = None
        if self.release_margin is not None and self.memory is not None and bool(((mass >= h) & (mass < r)).any()):
            gap = self.neighbour_gap(features[:, : self.memory.shape[1]])
        out: list[tuple[str, Action] | None] = []
        for i, (m, c) in enumerate(zip(mass, cats)):
            if m >= r:
                out.append((c, "refuse"))
            elif m >= h and (gap is None or self.release_margin is None or gap[i] < self.release_margin):
                out.append((c, "hold"))
            elif minor is not None and minor[i] and sexual[i] >= self.minor_hold_threshold:
                out.append(("minors", "hold"))
            else:
                out.append(None)
        return out

    def save(self, path: Path) -> None:
        extra: dict[str, Any] = {}  # arrays; Any: savez_compressed also takes allow_pickle=
        if self.memory is not None and self.memory_labels is not None:
            extra = {
                "memory": self.memory.astype(np.float16),
                "memory_labels": self.memory_labels.astype(np.int8),
                "neighbours": np.int32(self.neighbours),
                "temperature": np.float32(self.temperature),
                "memory_weight": np.float32(self.memory_weight),
            }
            if self.release_margin is not None:
                extra["release_margin"] = np.float32(self.release_margin)
        np.savez_compressed(
            path,
            classes=np.array(self.classes),
            weights=self.weights.astype(np.float32),
            bias=self.bias.astype(np.float32),
            threshold=np.float32(self.threshold),
            relaxed_threshold=np.float32(self.relaxed_threshold),
            hold_threshold=np.float32(self.hold_threshold),
            relaxed_hold_threshold=np.float32(self.relaxed_hold_threshold),
            minor_hold_threshold=np.float32(self.minor_hold_threshold),
            source=np.array(self.source),
            senses=np.array(self.senses),
            **extra,
        )

    @classmethod
    def load(cls, path: Path = PROBE_FILE) -> ConceptProbe:
        try:
            with np.load(path) as z:
                extra: dict[str, Any] = {
                    k: float(z[k])
                    for k in (
                        "hold_threshold",
                        "relaxed_hold_threshold",
                        "minor_hold_threshold",
                        "temperature",
                        "memory_weight",
                        "release_margin",
                    )
                    if k in z
                }
                if "memory" in z:
                    extra.update(
                        memory=z["memory"].astype(np.float32),
                        memory_labels=z["memory_labels"].astype(np.intp),
                        neighbours=int(z["neighbours"]),
                    )
                return cls(
                    tuple(str(c) for c in z["classes"]),
                    z["weights"],
                    z["bias"],
                    float(z["threshold"]),
                    float(z["relaxed_threshold"]),
                    source=str(z["source"]),
                    senses=bool(z["senses"]) if "senses" in z else False,
                    **extra,
                )
        except FileNotFoundError:
            raise ConfigError(
                f"{path}: the safety probe does not exist; run benchmarks/bench_safety.py --train."
            ) from None
        except (OSError, KeyError, ValueError) as e:
            raise ConfigError(f"{path}: the safety probe cannot be read ({e}).") from None


def training_source(examples: Iterable[tuple[str, str]]) -> str:
    h = hashlib.sha256()
    for text, label in examples:
        h.update(f"{label}\t{text}\n".encode())
    return h.hexdigest()[:16]


def train_probe(
    texts: list[str],
    labels: list[str],
    features: np.ndarray,
    *,
    c: float,
    senses: bool = False,
    threshold: float = 0.5,
    relaxed_threshold: float = 0.5,
    hold_threshold: float = 1.0,
    relaxed_hold_threshold: float = 1.0,
    minor_hold_threshold: float = 1.0,
    memory: np.ndarray | None = None,
    memory_weight: float = 0.0,
    release_margin: float | None = None,
) -> ConceptProbe:
    """A multinomial logistic regression on the features (scikit-learn); with `memory` (the
    same sentences' embeddings, row for row), their neighbours vote too."""
    from sklearn.linear_model import LogisticRegression

    classes = ("benign",) + tuple(c_ for c_ in CATEGORIES if c_ in set(labels))
    y = np.array([classes.index(lab) for lab in labels])
    lr = LogisticRegression(C=c, class_weight="balanced", max_iter=5000).fit(features, y)
    return ConceptProbe(
        classes,
        lr.coef_.astype(np.float32),
        lr.intercept_.astype(np.float32),
        threshold,
        relaxed_threshold,
        hold_threshold,
        relaxed_hold_threshold,
        training_source(zip(texts, labels)),
        senses,
        memory=None if memory is None else np.asarray(memory, np.float32),
        memory_labels=None if memory is None else y,
        memory_weight=memory_weight,
        minor_hold_threshold=minor_hold_threshold,
        release_margin=release_margin,
    )


# -- the layers together -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Finding:
    layer: str  # "block_list" | "terms" | "classifier" | "semantic"
    category: str
    action: Action = "refuse"  # "hold": unsure, a moderator decides

    @property
    def held(self) -> bool:
        return self.action == "hold"


def worse(a: Finding | None, b: Finding | None) -> Finding | None:
    """The stricter of two findings: a refusal over a hold over nothing."""
    if a is None or (b is not None and b.action == "refuse" and a.action == "hold"):
        return b
    return a


class Safety:
    """The concept layers, with the categories this world allows."""

    def __init__(
        self,
        terms: ConceptTerms | None,
        classifier: OffensiveClassifier | None,
        probe: ConceptProbe | None,
        embed: Embed | None,
        *,
        senses: WordSenses | None = None,
        slang: Slang | None = None,
        classifier_threshold: float = 1.0,
        classifier_hold_threshold: float = 0.8,
        semantic_hold_threshold: float | None = None,
        semantic_threshold: float | None = None,
        allow: Iterable[str] = (),
        model_pending: bool = False,
    ) -> None:
        """`model_pending`: the sentence model is loading elsewhere and comes
        through `take_model`; until then the semantic layer waits for it."""
        self.terms = terms
        self.classifier = classifier
        self._probe = probe
        self.probe: ConceptProbe | None = None  # usable: with the sentence model (and WordNet if trained with it)
        self.embed = embed
        self.senses = senses
        self.slang = slang
        self._settled = threading.Event()
        self.classifier_threshold = classifier_threshold
        self.classifier_hold_threshold = min(classifier_hold_threshold, classifier_threshold)
        self.semantic_hold_threshold = semantic_hold_threshold
        self.semantic_threshold = semantic_threshold
        self.allowed: frozenset[str] = frozenset()
        # Chat repeats itself (the same idea from many viewers): remember recent verdicts.
        self._check = lru_cache(maxsize=8192)(self._check_uncached)
        self.allow(allow)
        if not model_pending:
            self.take_model(embed)
            if probe is not None and self.probe is None:
                log.warning("the sentence model or WordNet is unavailable: prompts are screened by words only")

    @property
    def model_pending(self) -> bool:
        """The sentence model is still loading; the semantic layer waits for it."""
        return not self._settled.is_set()

    def take_model(self, embed: Embed | None) -> None:
        """The sentence model is there (its `encode`), or will not be (None:
        words only from now on; its loader has said why)."""
        probe = self._probe
        self.embed = embed
        usable = probe is not None and embed is not None and (self.senses is not None or not probe.senses)
        self.probe = probe if usable else None
        self._settled.set()

    def allow(self, categories: Iterable[str]) -> None:
        """The categories this world relaxes (only those in `RELAXABLE`)."""
        cats = frozenset(categories)
        bad = sorted(cats - set(RELAXABLE))
        if bad:
            raise ConfigError(f"The safety category {bad[0]!r} cannot be allowed; only {', '.join(RELAXABLE)} can.")
        self.allowed = cats
        self._check.cache_clear()

    def check(self, text: str) -> Finding | None:
        """The inline layers, on a normalised prompt (as `read`)."""
        return self._check(text)

    def read(self, text: str) -> str:
        """What the layers judge: the prompt with its slang's meanings added."""
        return self.slang.reading(text) if self.slang is not None else text

    def harmless_listing(self, text: str, listed: Callable[[str], bool]) -> bool:
        """Whether every word the block lists refuse in `text` is the name of an animal, a plant
        or a place that WordNet knows only in harmless senses ("boobies": the seabird, the
        dunce), or sits inside such a name WordNet holds as one phrase ("pussy willow", "coon
        cat"). A list cannot tell the seabird from the slang; a moderator can, so such a prompt
        is held, not refused. ("sexy", "anal", "sex kitten", "suicide pact" are harmless to
        WordNet's categories too, but name no creature or place: they stay refused.)
        `listed(text)`: whether the lists refuse something in that text."""
        if self.senses is None:
            return False
        rest = self.senses.without_harmless_phrases(text, self.senses.names_a_creature_or_place)
        if not listed(rest):
            return True
        words = {part for w in _WORD.findall(rest.lower()) for part in (w, *w.split("-")) if listed(part)}
        if not words:
            return False
        if all(self.senses.harmless(w) and self.senses.names_a_creature_or_place(w) for w in words):
            return True
        return all(self._named_in_context(w, rest) for w in words)

    def _named_in_context(self, word: str, text: str) -> bool:
        """Whether the prompt itself says the listed word is meant in a harmless sense it has:
        an animal's name next to another animal ("a beagle bitch", "a greyhound bitch": the
        breeders' word for a female dog), or a proper name, written capitalised inside the
        prompt, next to a named place or a drink ("the Dildo lighthouse in Newfoundland", "a
        Porn Star Martini"). Never a slur, nor an insult as a name. A moderator still decides
        (held, not admitted)."""
        assert self.senses is not None
        senses = self.senses
        meanings = senses.word(word)
        if any("hate" in cats for cats in meanings):
            return False  # a slur is never read as a harmless sense
        others = [w for w in _WORD.findall(text.lower()) if w != word and w not in _STOPWORDS]
        if senses.any_sense_under(word, CREATURES_AND_PLACES[:1]) and any(
            senses.first_sense_under(w, CREATURES_AND_PLACES[:1]) for w in others
        ):
            return True
        if not meanings or any("abuse" in cats for cats in meanings):
            return False  # nor a word WordNet does not know, or knows as an insult, as a name
        capitalised = [m for m in re.finditer(r"[A-Za-z]+", text) if m.group().lower() == word and m.start() > 0]
        if not any(m.group()[0].isupper() for m in capitalised):
            return False
        return any(
            senses.any_sense_under(w, _NAMED_PLACES, instance=True) or senses.first_sense_under(w, _DRINKS)
            for w in others
        )

    def _check_uncached(self, text: str) -> Finding | None:
        if self.terms is not None:
            cat = self.terms.category(text, self.allowed)
            if cat is not None:
                # a category some worlds allow (war) is not grave enough to refuse on a word
                # alone ("a grenade in a museum case"): held, unless the probe refuses it
                return Finding("terms", cat, "hold" if cat in RELAXABLE else "refuse")
        if self.classifier is not None:
            # A bag of words cannot tell "hoe" the tool from the slur: at 1.0 it only holds.
            score = self.classifier.score(text)
            if self.classifier_threshold < 1.0 and score >= self.classifier_threshold:
                return Finding("classifier", "abuse")
            if score >= self.classifier_hold_threshold:
                return Finding("classifier", "abuse", "hold")
        return None

    def features(self, texts: Sequence[str], vectors: np.ndarray | None = None) -> np.ndarray:
        """What the probe reads: the embeddings, then WordNet's columns if it was trained with them."""
        if vectors is None or len(vectors) != len(texts):
            vectors = self.embed(list(texts))  # type: ignore[misc]
        vectors = np.asarray(vectors, dtype=np.float32)
        if self.probe is not None and self.probe.senses and self.senses is not None:
            vectors = np.hstack([vectors, np.stack([self.senses.features(t) for t in texts])])
        return vectors

    def screen(
        self, texts: Sequence[str], vectors: np.ndarray | None = None, *, wait: bool = True
    ) -> list[Finding | None]:
        """The semantic layer, on a batch of candidates (their embeddings if pooling made them).

        While the model is loading, `wait` holds the batch until it is there
        (a worker's call: the candidates stay hidden meanwhile); `wait=False`
        leaves this layer out for the call instead (the event loop's)."""
        if texts and wait and not self._settled.is_set() and not self._settled.wait(MODEL_WAIT_S):
            log.warning(
                "the sentence model is still loading after %d s: this batch is screened by words only", MODEL_WAIT_S
            )
        probe = self.probe
        if probe is None or not texts:
            return [None] * len(texts)
        readings = [self.read(t) for t in texts]
        changed = [i for i, (r, t) in enumerate(zip(readings, texts)) if r != t]
        if changed and vectors is not None and len(vectors) == len(texts):  # slang: embed what it means
            vectors = np.array(vectors, dtype=np.float32)
            vectors[changed] = np.asarray(self.embed([readings[i] for i in changed]), np.float32)  # type: ignore[misc]
        texts = readings
        features = self.features(texts, vectors)
        minor = [self.names_minor(t) for t in texts]
        bands = {"hold": self.semantic_hold_threshold, "refuse": self.semantic_threshold}
        found = probe.categories(features, self.allowed, minor=minor, **bands)
        if self.allowed:
            # War is relaxed against armies only: a prompt naming civilians is judged as a world
            # that relaxes nothing judges it (WordNet asked only where that judgement is stricter).
            strict = probe.categories(features, frozenset(), minor=minor, **bands)
            for i, (f, g) in enumerate(zip(found, strict)):
                if (
                    g is not None
                    and (f is None or f[1] == "hold" and g[1] == "refuse")
                    and self.targets_civilians(texts[i])
                ):
                    found[i] = ("violence" if g[0] in self.allowed else g[0], g[1])
        for i, t in enumerate(texts):
            # An aircraft flown into a building is terror imagery in every world: a moderator decides.
            if found[i] is None and self.flies_into_building(t):
                found[i] = ("violence", "hold")
        return [None if f is None else Finding("semantic", f[0], f[1]) for f in found]

    def flies_into_building(self, text: str) -> bool:
        """An aircraft and a building or a tower, with something flying or crashing into it
        ("an airliner flown into a tall building", "a jet hits the north tower"); the words
        are asked first, WordNet only when they are there."""
        if self.terms is None or self.senses is None or not self.terms.names_impact(text):
            return False
        return {"aircraft", "building"} <= self.senses.marks(text)

    def targets_civilians(self, text: str) -> bool:
        """Whether a prompt names what war must not target: civilians, a crowd, a school, a
        hospital, a market, a wedding (`civilian_senses`), or an aircraft together with a
        building or a tower ("a plane flown into the twin towers")."""
        if self.senses is None:
            return False
        marks = self.senses.marks(text)
        return "civilian" in marks or {"aircraft", "building"} <= marks

    def names_minor(self, text: str) -> bool:
        """Whether a prompt speaks of a child: a minor-word of the concept terms, or a word
        WordNet files under children and juveniles ("a youngster", "a newborn"; not "a cheerleader")."""
        if self.terms is not None and self.terms.names_minor(text):
            return True
        return self.senses is not None and bool(self.senses.features(text)[_MINORS] > 0)

    def warm_up(self) -> None:
        """Load what the first candidate would otherwise wait for: WordNet's indexes and, once
        it has loaded in the background, the sentence model (never waited for here)."""
        if self.senses is not None:
            self.senses.features("a lighthouse in a storm")
        if self.probe is not None:
            self.screen(["a lighthouse in a storm"], wait=False)

    def check_all(self, text: str) -> Finding | None:
        """Every layer at once, for one prompt (the streamer's own)."""
        return worse(self.check(self.read(text)), self.screen([text])[0])


def build_safety(
    *,
    classifier: bool = True,
    semantic: bool = True,
    classifier_threshold: float = 1.0,
    classifier_hold_threshold: float = 0.8,
    semantic_hold_threshold: float | None = None,
    semantic_threshold: float | None = None,
    allow: Iterable[str] = (),
    embed: Embed | None = None,
    wait_for_model: bool = True,
) -> Safety:
    """The layers as configured; the sentence model and WordNet are the shared ones unless given.
    `wait_for_model=False`: the shared model loads in the background (see
    streambot/embeddings.py) and the semantic layer takes it when it is there."""
    from .. import embeddings

    concepts = load_concepts()
    probe = None
    pending = False
    senses = load_senses(concepts)
    if semantic:
        probe = ConceptProbe.load()
        if embed is None and wait_for_model:
            embedder = embeddings.get_embedder()
            embed = embedder.encode if embedder is not None else None
        pending = embed is None and not wait_for_model
    safety = Safety(
        ConceptTerms(concepts),
        load_classifier() if classifier else None,
        probe,
        embed,
        senses=senses,
        slang=load_slang(),
        classifier_threshold=classifier_threshold,
        classifier_hold_threshold=classifier_hold_threshold,
        semantic_hold_threshold=semantic_hold_threshold,
        semantic_threshold=semantic_threshold,
        allow=allow,
        model_pending=pending,
    )
    if pending:
        embeddings.when_settled(lambda model: safety.take_model(model.encode if model is not None else None))
        embeddings.load_in_background()
    return safety


@lru_cache(maxsize=1)
def _senses(
    roots: tuple[tuple[str, tuple[str, ...]], ...], marks: tuple[tuple[str, tuple[str, ...]], ...] = ()
) -> WordSenses | None:
    from ..lexicon import WordNet

    lexicon = WordNet.find()
    if lexicon is None:
        return None
    return WordSenses(lexicon, {c: list(n) for c, n in roots}, {m: list(n) for m, n in marks})


def load_senses(concepts: Concepts | None = None) -> WordSenses | None:
    """WordNet's senses of the categories in concepts.toml (one shared reader), or None without WordNet."""
    concepts = load_concepts() if concepts is None else concepts
    marks = tuple(
        (key.removesuffix("_senses"), tuple(names))
        for key, names in concepts.get("violence", {}).items()
        if key.endswith("_senses")
    )
    return _senses(tuple((c, tuple(t.get("senses", ()))) for c, t in concepts.items() if c in CATEGORIES), marks)
