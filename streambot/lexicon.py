"""Word relations from Princeton WordNet 3.0, read from its own database files.

Pooling asks two questions of a pair of words that two prompts do not
share: is one a way of saying the other (a synonym, a kind of it, a part of
it, the same word as another part of speech: "woods" ~ "forest", "salmon" ~
"fish", "invade" ~ "invasion"), and is one the opposite of the other
("rise" / "set", "huge" / "tiny", through WordNet's antonyms and its
adjective clusters)? Two nouns that are neither (cat / dog, ice / gold) are
different things.

The database is Debian's `wordnet-base` (/usr/share/wordnet; elsewhere set
STREAMBOT_WORDNET to the folder holding index.noun, data.noun, ...), in the
format its wndb(5) manual page documents. Index files are read once, data
lines on demand by their byte offset, as WordNet's own tools do; every
lookup is cached, so a running show reads each word once.

Parsing the four index files is 150,000 lines of Python (over half a second
before the first frame); each parsed index is kept in the cache
(streambot/cache.py), keyed by its file's path, size and modification time,
this module's source and marisa-trie's library file, so a start reads it back
in C (the lemmas as a marisa-trie, the rest as numpy arrays) and a changed
database or reader parses it again.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import marisa_trie
import numpy as np

from . import cache

log = logging.getLogger(__name__)

POS = {"n": "noun", "v": "verb", "a": "adj", "r": "adv"}
_DEFAULT_DIRS = ("/usr/share/wordnet", "/usr/local/share/wordnet", "/opt/homebrew/share/wordnet")

# Pointer symbols (wndb(5)) that make two words the same idea for a viewer:
# a kind of it, a part or member of it, derived from it, similar to it.
_NEAR = ("#m", "#s", "#p", "%m", "%s", "%p", "+", "\\", "&", "<", "^", "=", "*", ">", "$")


@dataclass(frozen=True, slots=True)
class Synset:
    key: tuple[str, int]  # (pos, byte offset): unique within the database
    words: tuple[str, ...]
    pointers: tuple[tuple[str, tuple[str, int], int, int], ...]  # (symbol, target, source word, target word)


class WordNet:
    """The few questions pooling asks, over WordNet's database files."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        missing = [
            f"{kind}.{p}"
            for p in POS.values()
            for kind in ("index", "data")
            if not (self.root / f"{kind}.{p}").is_file()
        ]
        if missing:
            raise FileNotFoundError(f"{self.root}: no WordNet database here (missing {', '.join(missing)})")
        self._index: dict[str, _Index] = {}
        self._files = {p: open(self.root / f"data.{name}", "rb") for p, name in POS.items()}  # noqa: SIM115
        self._lock = threading.Lock()
        self.senses: int | None = 6  # meanings per part of speech that `related` considers: rare ones mislead
        self.synset = lru_cache(maxsize=200_000)(self._read)
        self.related = lru_cache(maxsize=100_000)(self._related)
        self.opposite = lru_cache(maxsize=100_000)(self._opposite)

    @classmethod
    def find(cls) -> WordNet | None:
        """The installed database, or None (with a warning) when there is none."""
        env = os.environ.get("STREAMBOT_WORDNET")
        for d in [env] if env else list(_DEFAULT_DIRS):
            try:
                return cls(d)
            except OSError:
                continue
        log.warning(
            "WordNet not found (apt-get install wordnet-base, or set STREAMBOT_WORDNET); "
            "pooling merges only prompts with the same words"
        )
        return None

    def close(self) -> None:
        for f in self._files.values():
            f.close()

    # -- reading
    def _index_of(self, pos: str) -> _Index:
        with self._lock:
            idx = self._index.get(pos)
            if idx is None:
                idx = self._index[pos] = self._load_index(pos)
            return idx

    def _load_index(self, pos: str) -> _Index:
        """One part of speech's parsed index file, from the cache when it and this reader are unchanged."""
        path = self.root / f"index.{POS[pos]}"
        st = path.stat()
        trie_lib = Path(marisa_trie.__file__).stat()  # its binary format: an upgrade is a new file
        k = cache.key(
            _CACHE_NAME,
            cache.source_of(sys.modules[__name__]),
            (trie_lib.st_size, trie_lib.st_mtime_ns),
            (str(path.resolve()), st.st_size, st.st_mtime_ns),
        )
        name = f"{_CACHE_NAME}-{POS[pos]}"
        try:
            return _Index.from_arrays(cache.cached(name, k, lambda: _parse(path)))
        except (KeyError, ValueError, RuntimeError) as e:  # a cache file of the right key, but broken
            log.warning("the cached WordNet index does not fit (%s); parsing %s", e, path)
            return _Index.from_arrays(_parse(path))

    def _read(self, key: tuple[str, int]) -> Synset:
        pos, offset = key
        with self._lock:
            f = self._files[pos]
            f.seek(offset)
            parts = f.readline().decode("utf-8").split(" | ")[0].split()
        n_words = int(parts[3], 16)
        words = tuple(parts[4 + 2 * i].lower().split("(")[0] for i in range(n_words))
        at = 4 + 2 * n_words
        pointers = []
        for i in range(int(parts[at])):
            sym, off, p, st = parts[at + 1 + 4 * i : at + 5 + 4 * i]
            p = "a" if p == "s" else p
            pointers.append((sym, (p, int(off)), int(st[:2], 16), int(st[2:], 16)))
        return Synset(key, words, tuple(pointers))

    def synsets(self, lemma: str, pos: Iterable[str] = POS, senses: int | None = None) -> list[Synset]:
        """The word's meanings, or its `senses` most common ones in each part of speech."""
        lemma = lemma.lower().replace(" ", "_")
        return [self.synset((p, o)) for p in pos for o in self._index_of(p).get(lemma, ())[:senses]]

    # -- the questions
    def _related(self, x: str, y: str) -> bool:
        """One is a way of saying the other: the same synset, one a kind of
        the other (up to three steps, one direction only: "salmon" is a kind
        of "fish", while "cat" and "dog" are only both kinds of "carnivore"),
        one step apart as part, member, derivation or similar adjective, or two
        adjectives in one cluster ("giant" and "huge", both near "large")."""
        if x == y:
            return True
        xs, ys = self.synsets(x, senses=self.senses), self.synsets(y, senses=self.senses)
        if not xs or not ys:
            return False
        xk, yk = {s.key for s in xs}, {s.key for s in ys}
        if xk & yk or self._up(xk) & yk or self._up(yk) & xk:
            return True
        near_x = {t for s in xs for sym, t, _, _ in s.pointers if sym in _NEAR}
        near_y = {t for s in ys for sym, t, _, _ in s.pointers if sym in _NEAR}
        if near_x & yk or near_y & xk:
            return True
        if self.is_noun(x) and self.is_noun(y):  # "red" and "blue" share a cluster but name different things
            return False

        def heads(keys: set[tuple[str, int]]) -> set[tuple[str, int]]:
            return {t for k in keys if k[0] == "a" for sym, t, _, _ in self.synset(k).pointers if sym == "&"}

        return bool(heads(xk) & heads(yk))

    def _up(self, keys: set[tuple[str, int]], depth: int = 3) -> set[tuple[str, int]]:
        """Every synset these are a kind of, up to `depth` steps."""
        seen: set[tuple[str, int]] = set()
        frontier = keys
        for _ in range(depth):
            frontier = {t for k in frontier for sym, t, _, _ in self.synset(k).pointers if sym in ("@", "@i")} - seen
            seen |= frontier
        return seen

    def _antonyms(self, s: Synset, word: str) -> set[tuple[str, int]]:
        """Synsets opposite to `word` in `s`: direct antonyms, and for a
        satellite adjective ("huge") its cluster head's ("large")."""
        out = set()
        idx = s.words.index(word) + 1 if word in s.words else 0
        heads = [s] + [self.synset(t) for sym, t, _, _ in s.pointers if sym == "&"]
        for h in heads:
            for sym, target, src, _ in h.pointers:
                if sym == "!" and (h is not s or src in (0, idx)):
                    out.add(target)
                    # the opposite head's satellites are opposite too ("tiny" to "huge")
                    if target[0] == "a":
                        out.update(t for sy, t, _, _ in self.synset(target).pointers if sy == "&")
        return out

    def _opposite(self, x: str, y: str) -> bool:
        """WordNet lists them as antonyms, directly or through adjective clusters."""
        if x == y:
            return False
        ys = {s.key for s in self.synsets(y)}
        for s in self.synsets(x):
            word = x.lower().replace(" ", "_")
            if self._antonyms(s, word) & ys:
                return True
        return False

    def is_verb(self, w: str) -> bool:
        return bool(self._index_of("v").get(w.lower()))

    def is_noun(self, w: str) -> bool:
        return bool(self._index_of("n").get(w.lower()))

    def main_pos(self, w: str) -> str | None:
        """The part of speech of the word's most common sense ("cat": n, "run": v)."""
        w = w.lower()
        best = max(POS, key=lambda p: self._index_of(p).tagged(w))  # ties: the first, a noun
        return best if self._index_of(best).tagged(w) >= 0 else None


_CACHE_NAME = "wordnet-index"


def _parse(path: Path) -> dict[str, np.ndarray]:
    """An index file: a trie of its lemmas (marisa-trie's own bytes) and, in the
    trie's order of ids, where each lemma's synset offsets start (CSR), the
    offsets, and its tagged-sense count."""
    lemmas: list[str] = []
    counts: list[int] = []
    offsets: list[int] = []
    tagged: list[int] = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith(" "):  # the licence at the top
                continue
            parts = line.split()
            n_ptr = int(parts[3])
            lemmas.append(parts[0])
            offs = parts[6 + n_ptr :]
            counts.append(len(offs))
            offsets += map(int, offs)
            tagged.append(int(parts[5 + n_ptr]))
    trie = marisa_trie.Trie(lemmas)
    if len(trie) != len(lemmas):
        raise ValueError(f"{path}: a lemma is listed twice")
    # Rows in the trie's order of ids: row r of the result is row order[r] of the file.
    order = np.argsort(np.fromiter((trie[w] for w in lemmas), np.int64, len(lemmas)))
    n = np.asarray(counts, np.int64)
    starts = np.concatenate([[0], np.cumsum(n)])
    new_n = n[order]
    new_starts = np.concatenate([[0], np.cumsum(new_n)])
    gather = np.repeat(starts[:-1][order] - new_starts[:-1], new_n) + np.arange(new_starts[-1])
    return {
        "trie": np.frombuffer(trie.tobytes(), np.uint8),
        "starts": new_starts,
        "offsets": np.asarray(offsets, np.int64)[gather],
        "tagged": np.asarray(tagged, np.int64)[order],
    }


class _Index:
    """One part of speech's index: per lemma its synsets' byte offsets (commonest
    sense first) and how often its senses were seen tagged in a corpus. The lemmas
    are a marisa-trie (read back from bytes in C); its ids number the rows."""

    def __init__(self, trie: marisa_trie.Trie, starts: np.ndarray, offsets: np.ndarray, tagged: np.ndarray) -> None:
        if len(starts) != len(trie) + 1 or len(tagged) != len(trie) or starts[-1] != len(offsets):
            raise ValueError(f"an index of {len(trie)} lemmas with {len(starts)} starts")
        self._trie = trie
        self._starts, self._offsets, self._tagged = starts, offsets, tagged

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray]) -> _Index:
        trie = marisa_trie.Trie().frombytes(a["trie"].tobytes())
        return cls(trie, a["starts"], a["offsets"], a["tagged"])

    def get(self, lemma: str, default: tuple[int, ...] = ()) -> tuple[int, ...]:
        """The lemma's synset offsets, or `default` when it is not in the index."""
        row = self._trie.get(lemma)
        if row is None:
            return default
        return tuple(self._offsets[self._starts[row] : self._starts[row + 1]].tolist())

    def tagged(self, lemma: str) -> int:
        """How often the lemma's senses were seen tagged; -1 when it is not in the index."""
        row = self._trie.get(lemma)
        return -1 if row is None else int(self._tagged[row])
