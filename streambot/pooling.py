"""Near-duplicate pooling: are two prompts the same idea to a viewer?

A sentence embedding (all-MiniLM-L6-v2) says how close two prompts are, but
it cannot see what makes close prompts different ideas: "make it rain" and
"make it stop raining" score 0.8, "a cat chases a mouse" and "a mouse chases a
cat" 0.99. So the embedding is one vote among explicit checks, each of which
can only keep two prompts apart:

1. negation: an odd number of "not", "no", "never", "without", "stop", ... in
   one and an even number in the other;
2. opposites: a word only one prompt has whose antonym only the other has
   (WordNet's antonyms and adjective clusters, plus `OPPOSITES`, the common
   pairs WordNet does not list);
3. roles: the same two things on either side of the same relation, in the
   other order ("a cat chases a mouse" / "a mouse chases a cat"), unless an
   agent marker turns it round ("the castle is attacked by a dragon");
4. different things: the words the prompts do not share are matched to each
   other when WordNet relates them (synonym, a kind of, a part of, derived
   from) or their own embeddings are close; two unmatched nouns ("cats" /
   "dogs", "ice" / "gold") are different things.

What is left is decided by the sentence embedding, with a higher bar when
each prompt has a word the other lacks (a substitution) than when one only
adds words ("spawn a dragon" / "dragon"). The thresholds were set on the
development split of tests/data/pool_pairs.jsonl and are measured on its
held-out split by benchmarks/bench_pooling.py.

Embeddings are computed in batches, off the asyncio loop (`Pooler.prepare`):
one call for the new prompts and the words not seen before.
"""

from __future__ import annotations

import importlib.metadata
import logging
import re
import threading
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from .lexicon import WordNet

if TYPE_CHECKING:
    import simplemma

log = logging.getLogger(__name__)

Embed = Callable[[list[str]], np.ndarray]

_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")

# Words that carry no idea of their own in a prompt ("make it rain" is "rain").
STOP = frozenset(
    """
a an the it its of in on at to into onto from with and or but is are be been being was were am this that
these those some any please pls plz make makes made let lets add spawn summon create bring put start become
get show give have has had appear happen now more very so just suddenly there here then all i we you me my
our your their they them he she his her lots lot much many every own do does did can could will would should
may might must go keep turn over above under below across through by for up down out off away around behind
past near
""".split()
)
# Words that cancel what follows.
NEGATIONS = frozenset(
    """not no never without nobody nothing none nowhere neither nor cannot stop cease quit halt
extinguish put_out stamp_out douse""".split()
)
# Particles that make a phrasal verb WordNet may know as one word ("put out" = extinguish, "go away" = disappear).
_PARTICLES = frozenset("up down out off away over in on back apart".split())
_PASSIVE = frozenset("be get".split())  # "is attacked", "gets built": the doer comes second
# Words that say nothing about the idea itself (for the opposites check).
_FUNCTION = frozenset(
    """
a an the it its of in at to into onto from with and or but is are be been being was were am this that these
those some any i we you me my our your their they them he she his her there here by for
""".split()
)
# Between two things, these do not make a relation ("a cat and a dog").
_SYMMETRIC = frozenset({"and", "or", "with", "plus", "a", "an", "the"})
# After the relation, these put the doer second ("attacked by", "fills with", "shakes from").
_AGENT = frozenset({"by", "with", "from"})

# Common opposites WordNet does not list as antonyms (it has rise/set, huge/tiny, win/lose, ...).
OPPOSITES = frozenset(
    frozenset(p)
    for p in [
        ("build", "destroy"),
        ("create", "destroy"),
        ("grow", "shrink"),
        ("live", "die"),
        ("happy", "sad"),
        ("freeze", "melt"),
        ("summer", "winter"),
        ("spring", "autumn"),
        ("crowded", "empty"),
        ("full", "empty"),
        ("add", "remove"),
        ("flood", "dry"),
        ("speed", "slow"),
        ("big", "small"),
        ("bigger", "smaller"),
        ("brighter", "darker"),
        ("heavier", "lighter"),
        ("sunrise", "sunset"),
        ("dawn", "dusk"),
        ("heaven", "hell"),
        ("angel", "demon"),
        ("war", "peace"),
        ("friend", "enemy"),
        ("hero", "villain"),
    ]
)

_CONTRACTIONS = {"can't": "can", "won't": "will", "shan't": "shall"}


@lru_cache(maxsize=65536)
def lemma(word: str) -> str:
    return _lemmatizer().lemmatize(word, lang="en")


@lru_cache(maxsize=1)
def _lemmatizer() -> simplemma.Lemmatizer:
    """simplemma's English dictionary as a MARISA trie kept in the cache folder
    (simplemma's own `TrieDictionaryFactory`, per simplemma version): read back
    in about a millisecond, where decoding the shipped dictionary holds the GIL
    for 0.3 s alone and well over a second beside the show's start. The same
    lemmas; a corrupt file is built again by simplemma."""
    import simplemma
    from simplemma.strategies import DefaultStrategy, TrieDictionaryFactory

    from . import cache

    folder = cache.folder() / "simplemma" / importlib.metadata.version("simplemma")
    try:
        factory = TrieDictionaryFactory(disk_cache_dir=str(folder))
    except ImportError:  # no marisa-trie here: the shipped dictionary, decoded in memory
        return simplemma.Lemmatizer()
    return simplemma.Lemmatizer(lemmatization_strategy=DefaultStrategy(dictionary_factory=factory))


def tokens(text: str) -> list[str]:
    """Lower-case words, "n't" split off as "not", "'s" dropped."""
    text = unicodedata.normalize("NFKC", text).lower().replace("\u2019", "'")
    out: list[str] = []
    for w in _TOKEN.findall(text):
        if w.endswith("n't"):
            out += [_CONTRACTIONS.get(w, w[:-3]), "not"]
        elif w.endswith("'s"):
            out.append(w[:-2])
        else:
            out.append(w)
    return out


@dataclass(frozen=True, slots=True, eq=False)
class Prompt:
    """What pooling knows about one prompt."""

    text: str
    words_: tuple[str, ...]  # as written, lower-case, one per lemma
    lemmas: tuple[str, ...]
    content: tuple[tuple[int, str], ...]  # (position, lemma) of the words that carry the idea
    negated: bool
    vector: np.ndarray | None = None  # unit-length sentence embedding

    @property
    def words(self) -> frozenset[str]:
        return frozenset(w for _, w in self.content)


def analyse(text: str, vector: np.ndarray | None = None, lexicon: WordNet | None = None) -> Prompt:
    toks = tokens(text)
    lems = [lemma(w) for w in toks]
    if lexicon is not None:  # join phrasal verbs WordNet lists ("put out", "go away", "blow up")
        i = 0
        while i < len(toks) - 1:
            particle = toks[i + 1]
            if particle in _PARTICLES and lexicon.is_verb(f"{lems[i]}_{particle}"):
                toks[i : i + 2] = [f"{toks[i]}_{particle}"]
                lems[i : i + 2] = [f"{lems[i]}_{particle}"]
            i += 1
    negs = sum(1 for w, lm in zip(toks, lems) if w in NEGATIONS or lm in NEGATIONS)
    content = tuple((i, lm) for i, (w, lm) in enumerate(zip(toks, lems)) if not ({w, lm} & STOP or {w, lm} & NEGATIONS))
    return Prompt(text, tuple(toks), tuple(lems), content, negs % 2 == 1, vector)


def content_words(text: str) -> frozenset[str]:
    """The idea's words as lemmas: 'aliens invade' and 'the alien invades' share them."""
    return analyse(text).words


def exact_key(text: str) -> str:
    """Prompts with the same key are the same wording (case, punctuation, spacing aside)."""
    return " ".join(tokens(text))


class Pooler:
    """Decides whether two prompts are the same idea (see the module docstring).

    `embed` turns texts into unit vectors (None: no sentence model, pool only
    prompts with the same content words); `lexicon` is WordNet (None: only
    `OPPOSITES` and the embeddings relate words). `threshold` is the sentence
    similarity needed when the prompts' words match or one only adds some;
    `reworded` when each has words the other lacks; `word_match` the
    similarity at which two single words count as the same.
    """

    def __init__(
        self,
        embed: Embed | None,
        lexicon: WordNet | None = None,
        *,
        threshold: float = 0.5,
        reworded: float = 0.78,
        word_match: float = 0.75,
    ) -> None:
        self.embed = embed
        self.lexicon = lexicon
        self.threshold = threshold
        self.reworded = reworded
        self.word_match = word_match
        self._words: dict[str, np.ndarray] = {}  # word -> embedding, filled by prepare()
        self._lock = threading.Lock()

    # -- batches (worker thread)
    def prepare(self, texts: Sequence[str]) -> list[Prompt]:
        """Analyse prompts, embedding them and their new words in one call.

        Raises what `embed` raises; the caller decides how to go on.
        """
        prompts = [analyse(t, lexicon=self.lexicon) for t in texts]
        if self.embed is None or not prompts:
            return prompts
        with self._lock:
            new = sorted({w for p in prompts for _, w in p.content} - self._words.keys())
        vecs = np.asarray(self.embed(list(texts) + new), dtype=np.float32)
        with self._lock:
            if len(self._words) > 50_000:  # a long show: start again rather than grow without bound
                self._words.clear()
            self._words.update(zip(new, vecs[len(texts) :]))
        return [analyse(t, vecs[i], self.lexicon) for i, t in enumerate(texts)]

    def _word_sims(self, xs: list[str], ys: list[str]) -> np.ndarray:
        with self._lock:
            if self.embed is None or not all(w in self._words for w in xs + ys):
                return np.zeros((len(xs), len(ys)), np.float32)
            sims: np.ndarray = np.array([self._words[w] for w in xs]) @ np.array([self._words[w] for w in ys]).T
            return sims

    # -- the decision
    def same(self, a: Prompt, b: Prompt) -> bool:
        return self.explain(a, b)[0]

    def explain(self, a: Prompt, b: Prompt) -> tuple[bool, str]:
        """The decision and the reason for it, in a few words."""
        if a.negated != b.negated:
            return False, "negation"
        opposite = self._opposites(a, b)
        if opposite:
            return False, f"opposites {opposite}"
        if swapped_roles(a, b):
            return False, "roles"
        wa, wb = [w for _, w in a.content], [w for _, w in b.content]
        if a.vector is None or b.vector is None:
            return bool(wa) and set(wa) == set(wb), "words"
        cos = float(a.vector @ b.vector)
        only_a, only_b = self._unmatched(wa, wb)
        if only_a and only_b:
            things = self._different_things(only_a, only_b)
            if things:
                return False, f"different things {things}"
            return cos >= self.reworded, f"reworded {cos:.2f}"
        return cos >= self.threshold, f"{'added words' if only_a or only_b else 'same words'} {cos:.2f}"

    def _opposites(self, a: Prompt, b: Prompt) -> str:
        sa, sb = _opposable(a), _opposable(b)
        for x in sa - sb:
            for y in sb - sa:
                if frozenset((x, y)) in OPPOSITES or (self.lexicon is not None and self.lexicon.opposite(x, y)):
                    return f"{x}/{y}"
        return ""

    def _unmatched(self, wa: list[str], wb: list[str]) -> tuple[list[str], list[str]]:
        """The words of each that nothing in the other stands for (shared words first)."""
        ra = [x for x in wa if x not in wb]
        rb = [y for y in wb if y not in wa]
        if not ra or not rb:
            return ra, rb
        sims = self._word_sims(ra, rb)
        match = np.array(
            [[sims[i, j] >= self.word_match or self._related(x, y) for j, y in enumerate(rb)] for i, x in enumerate(ra)]
        )
        return [x for i, x in enumerate(ra) if not match[i].any()], [
            y for j, y in enumerate(rb) if not match[:, j].any()
        ]

    def _related(self, x: str, y: str) -> bool:
        return self.lexicon is not None and self.lexicon.related(x, y)

    def _different_things(self, xs: list[str], ys: list[str]) -> str:
        lex = self.lexicon
        if lex is None:
            return ""
        for x in xs:
            for y in ys:
                if lex.is_noun(x) and lex.is_noun(y) and "v" not in (lex.main_pos(x), lex.main_pos(y)):
                    return f"{x}/{y}"
        return ""


def _opposable(p: Prompt) -> set[str]:
    """Words that may have an opposite, a phrasal verb's parts too ("turn_on": on / off)."""
    out = set(p.lemmas)
    out.update(part for w in p.lemmas if "_" in w for part in w.split("_"))
    return out - _FUNCTION - NEGATIONS


def swapped_roles(a: Prompt, b: Prompt) -> bool:
    """Two things on either side of the same relation, the other way round."""
    pa = {w: i for i, w in a.content}
    pb = {w: i for i, w in b.content}
    shared = [w for w in pa if w in pb]
    for i, x in enumerate(shared):
        for y in shared[i + 1 :]:
            oa, ra = _orientation(a, pa[x], pa[y])
            ob, rb = _orientation(b, pb[x], pb[y])
            if ra & rb and oa != ob:
                return True
    return False


def _orientation(p: Prompt, i: int, j: int) -> tuple[bool, set[str]]:
    """Whether the word at i acts on the one at j, and the relation words between them."""
    lo, hi = sorted((i, j))
    between = p.lemmas[lo + 1 : hi]
    rel = [k for k, w in enumerate(between) if w not in _SYMMETRIC and w not in _AGENT and w not in _FUNCTION]
    forward = i < j
    if rel:
        r = lo + 1 + rel[0]
        passive = r > 0 and p.lemmas[r - 1] in _PASSIVE and not p.words_[r].endswith("ing")
        if passive or any(w in _AGENT for w in between[rel[0] + 1 :]):
            forward = not forward
    return forward, {between[k] for k in rel}
