"""On-air safety: what a prompt is about, and whether this world allows it.

The block lists (`moderation.BlockList`) catch words; they cannot catch
meaning ("a child in lingerie" holds no bad word). Three more layers, each
cheap enough for where it runs:

1. Concept terms (inline, microseconds): per category, words and phrases
   matched like the block lists, evasions undone; the `minors` category
   refuses a minor-word together with a sexual word anywhere in the prompt.
2. An offensive-language classifier (inline, microseconds): the linear model
   shipped inside `alt-profanity-check`, evaluated straight from its fitted
   weights (the package's own `predict_prob` costs 10 ms a call; the result
   is the same to 1e-9, checked when it loads).
3. A semantic probe (per candidate, in the pooling worker): a softmax over
   sentence embeddings (the ones pooling already computes), trained on the
   examples in config/moderation/concepts.toml and the training half of
   tests/data/safety_prompts.jsonl (`benchmarks/bench_safety.py --train`).
   While the sentence model still loads in the background (`streambot run`
   does not wait for it), candidates wait for this layer, hidden; the
   streamer's own prompt does not wait and meets the first two.

Categories: sexual, minors, self_harm, gore, hate, violence (against
people), violence.war (battles, soldiers, tanks, bombs) and abuse (insults).
A world may allow `violence.war` (`[moderation] allow` in its preset);
nothing allows the others.
"""
from __future__ import annotations

import hashlib
import logging
import math
import threading
import tomllib
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..config import CONFIG_DIR, RELAXABLE, ConfigError

log = logging.getLogger(__name__)

CATEGORIES = ("sexual", "minors", "self_harm", "gore", "hate", "violence", "violence.war", "abuse")
CONCEPTS_FILE = CONFIG_DIR / "moderation" / "concepts.toml"
PROBE_FILE = CONFIG_DIR / "moderation" / "concepts.npz"
MODEL_WAIT_S = 120  # the longest a batch of candidates waits for the sentence model to load

Embed = Callable[[list[str]], np.ndarray]


# -- 1. concept terms --------------------------------------------------------------

class ConceptTerms:
    """Per category, block-list-style terms, matched in one pass; `minors`
    refuses only when a minor-word and a sexual word are both there."""

    def __init__(self, concepts: dict) -> None:
        from .moderation import BlockList

        self.terms = BlockList()
        for cat, table in concepts.items():
            for term in table.get("terms", ()):
                self.terms.add(term, cat)
            for term in table.get("minor_terms", ()):
                self.terms.add(term, f"{cat}+minor")
            for term in table.get("sexual_terms", ()):
                self.terms.add(term, f"{cat}+sexual")

    def category(self, text: str, allowed: frozenset[str] = frozenset()) -> str | None:
        """The first category (in `CATEGORIES` order) whose terms the normalised text holds."""
        tags = self.terms.tags(text)
        if not tags:
            return None
        if "minors+minor" in tags and "minors+sexual" in tags:
            return "minors"
        return next((c for c in CATEGORIES if c in tags and c not in allowed), None)


def load_concepts(path: Path = CONCEPTS_FILE) -> dict:
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


# -- 2. the offensive-language classifier ----------------------------------------

class OffensiveClassifier:
    """`alt-profanity-check`'s model: TF-IDF words -> calibrated linear SVMs.

    The package's model is a `CalibratedClassifierCV` of linear SVMs, each
    with a sigmoid calibration; its probability is the mean of theirs. A
    linear model over TF-IDF is a weight per word, so one prompt costs a few
    dictionary look-ups instead of the library's 10 ms of input checking.
    """

    def __init__(self, vectorizer, model) -> None:
        self._analyzer = vectorizer.build_analyzer()
        if vectorizer.analyzer == "word" and tuple(vectorizer.ngram_range) == (1, 1):
            # The same words, without the generic n-gram machinery (a third of the cost).
            preprocess, tokenize = vectorizer.build_preprocessor(), vectorizer.build_tokenizer()
            stop = frozenset(vectorizer.get_stop_words() or ())
            self._analyzer = lambda text: [t for t in tokenize(preprocess(text)) if t not in stop]
        vocab = vectorizer.vocabulary_
        idf = np.asarray(vectorizer.idf_, dtype=np.float64)
        folds = model.calibrated_classifiers_
        coef = np.stack([np.asarray(f.estimator.coef_, dtype=np.float64).ravel() for f in folds])
        self._intercept = [float(np.ravel(f.estimator.intercept_)[0]) for f in folds]
        self._calibration = [(float(f.calibrators[0].a_), float(f.calibrators[0].b_)) for f in folds]
        # word -> (idf, idf * coef of each fold), as plain floats: a prompt has few words,
        # and Python arithmetic on five floats beats numpy's per-call overhead
        self._words = {w: (float(idf[j]), tuple((coef[:, j] * idf[j]).tolist())) for w, j in vocab.items()}
        self._reference = lambda texts: model.predict_proba(vectorizer.transform(texts))[:, 1]

    @classmethod
    def from_package(cls) -> OffensiveClassifier:
        from profanity_check import profanity_check as pc

        return cls(pc.vectorizer, pc.model)

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
        """The package's own computation (slow): what `score` must agree with."""
        return self._reference(list(texts))


@lru_cache(maxsize=1)
def load_classifier() -> OffensiveClassifier:
    clf = OffensiveClassifier.from_package()
    probe = ["a dragon attacks the castle", "you are all idiots", "what the hell"]
    ours = [clf.score(t) for t in probe]
    if not np.allclose(ours, clf.reference(probe), atol=1e-6):  # the package's model changed shape
        raise ConfigError("The offensive-language classifier's model is not the one this version reads; "
                          "reinstall alt-profanity-check as pinned in pyproject.toml.")
    return clf


# -- 3. the semantic probe -------------------------------------------------------

@dataclass(frozen=True)
class ConceptProbe:
    """Softmax over sentence embeddings: row i of `weights` scores `classes[i]`."""

    classes: tuple[str, ...]  # "benign" and the categories
    weights: np.ndarray  # (classes, dim)
    bias: np.ndarray  # (classes,)
    threshold: float  # refuse when the refused classes together reach this
    relaxed_threshold: float  # the same in a world that allows a category (the rest must weigh less)
    source: str = ""  # hash of what it was trained on

    def probabilities(self, vectors: np.ndarray) -> np.ndarray:
        z = vectors @ self.weights.T + self.bias
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def categories(self, vectors: np.ndarray, allowed: frozenset[str] = frozenset()) -> list[str | None]:
        """Per row, the most likely refused category, or None when it may go on air."""
        p = self.probabilities(vectors)
        refused = [i for i, c in enumerate(self.classes) if c != "benign" and c not in allowed]
        threshold = self.relaxed_threshold if allowed else self.threshold
        out: list[str | None] = []
        for row in p:
            mass = row[refused].sum()
            out.append(self.classes[refused[int(np.argmax(row[refused]))]] if mass >= threshold else None)
        return out

    def save(self, path: Path) -> None:
        np.savez(path, classes=np.array(self.classes), weights=self.weights.astype(np.float32),
                 bias=self.bias.astype(np.float32), threshold=np.float32(self.threshold),
                 relaxed_threshold=np.float32(self.relaxed_threshold), source=np.array(self.source))

    @classmethod
    def load(cls, path: Path = PROBE_FILE) -> ConceptProbe:
        try:
            with np.load(path) as z:
                return cls(tuple(str(c) for c in z["classes"]), z["weights"], z["bias"],
                           float(z["threshold"]), float(z["relaxed_threshold"]), str(z["source"]))
        except FileNotFoundError:
            raise ConfigError(f"{path}: the safety probe does not exist; run benchmarks/bench_safety.py --train.") from None
        except (OSError, KeyError, ValueError) as e:
            raise ConfigError(f"{path}: the safety probe cannot be read ({e}).") from None


def training_source(examples: Iterable[tuple[str, str]]) -> str:
    h = hashlib.sha256()
    for text, label in examples:
        h.update(f"{label}\t{text}\n".encode())
    return h.hexdigest()[:16]


def train_probe(texts: list[str], labels: list[str], vectors: np.ndarray, *, c: float,
                threshold: float = 0.5, relaxed_threshold: float = 0.5) -> ConceptProbe:
    """A multinomial logistic regression on the embeddings (scikit-learn)."""
    from sklearn.linear_model import LogisticRegression

    classes = ("benign",) + tuple(c_ for c_ in CATEGORIES if c_ in set(labels))
    y = np.array([classes.index(lab) for lab in labels])
    lr = LogisticRegression(C=c, class_weight="balanced", max_iter=5000).fit(vectors, y)
    return ConceptProbe(classes, lr.coef_.astype(np.float32), lr.intercept_.astype(np.float32), threshold,
                        relaxed_threshold, training_source(zip(texts, labels)))


# -- the layers together -----------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Finding:
    layer: str  # "terms" | "classifier" | "semantic"
    category: str


class Safety:
    """The concept layers, with the categories this world allows."""

    def __init__(
        self,
        terms: ConceptTerms | None,
        classifier: OffensiveClassifier | None,
        probe: ConceptProbe | None,
        embed: Embed | None,
        *,
        classifier_threshold: float = 0.8,
        allow: Iterable[str] = (),
        model_pending: bool = False,
    ) -> None:
        """`model_pending`: the sentence model is loading elsewhere and comes
        through `take_model`; until then the semantic layer waits for it."""
        self.terms = terms
        self.classifier = classifier
        self._probe = probe
        self.probe = probe if embed is not None else None
        self.embed = embed
        self._settled = threading.Event()
        self.classifier_threshold = classifier_threshold
        self.allowed: frozenset[str] = frozenset()
        # Chat repeats itself (the same idea from many viewers): remember recent verdicts.
        self._check = lru_cache(maxsize=8192)(self._check_uncached)
        self.allow(allow)
        if not model_pending:
            if probe is not None and embed is None:
                log.warning("the sentence model is unavailable: prompts are screened by words only")
            self.take_model(embed)

    @property
    def model_pending(self) -> bool:
        """The sentence model is still loading; the semantic layer waits for it."""
        return not self._settled.is_set()

    def take_model(self, embed: Embed | None) -> None:
        """The sentence model is there (its `encode`), or will not be (None:
        words only from now on; its loader has said why)."""
        self.embed = embed
        self.probe = self._probe if embed is not None else None
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
        """The inline layers, on a normalised prompt."""
        return self._check(text)

    def _check_uncached(self, text: str) -> Finding | None:
        if self.terms is not None:
            cat = self.terms.category(text, self.allowed)
            if cat is not None:
                return Finding("terms", cat)
        if self.classifier is not None and self.classifier.score(text) >= self.classifier_threshold:
            return Finding("classifier", "abuse")
        return None

    def screen(self, texts: Sequence[str], vectors: np.ndarray | None = None, *,
               wait: bool = True) -> list[Finding | None]:
        """The semantic layer, on a batch of candidates (their embeddings if pooling made them).

        While the model is loading, `wait` holds the batch until it is there
        (a worker's call: the candidates stay hidden meanwhile); `wait=False`
        leaves this layer out for the call instead (the event loop's)."""
        if texts and wait and not self._settled.is_set() and not self._settled.wait(MODEL_WAIT_S):
            log.warning("the sentence model is still loading after %d s: this batch is screened by words only",
                        MODEL_WAIT_S)
        probe, embed = self.probe, self.embed
        if probe is None or embed is None or not texts:
            return [None] * len(texts)
        if vectors is None or len(vectors) != len(texts):
            vectors = embed(list(texts))
        cats = probe.categories(np.asarray(vectors, dtype=np.float32), self.allowed)
        return [None if c is None else Finding("semantic", c) for c in cats]

    def check_all(self, text: str) -> Finding | None:
        """Every layer at once, for one prompt (the streamer's own)."""
        return self.check(text) or self.screen([text])[0]


def build_safety(*, classifier: bool = True, semantic: bool = True, classifier_threshold: float = 0.8,
                 allow: Iterable[str] = (), embed: Embed | None = None, wait_for_model: bool = True) -> Safety:
    """The layers as configured; the sentence model is the shared one unless given.
    `wait_for_model=False`: the shared model loads in the background (see
    streambot/embeddings.py) and the semantic layer takes it when it is there."""
    from .. import embeddings

    concepts = load_concepts()
    probe = None
    pending = False
    if semantic:
        probe = ConceptProbe.load()
        if embed is None and wait_for_model:
            embedder = embeddings.get_embedder()
            embed = embedder.encode if embedder is not None else None
        pending = embed is None and not wait_for_model
    safety = Safety(ConceptTerms(concepts), load_classifier() if classifier else None, probe, embed,
                    classifier_threshold=classifier_threshold, allow=allow, model_pending=pending)
    if pending:
        embeddings.when_settled(lambda model: safety.take_model(model.encode if model is not None else None))
        embeddings.load_in_background()
    return safety
