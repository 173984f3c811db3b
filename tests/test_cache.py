"""The start-up cache: what it holds is what the code builds without it.

Each cached result is held against the thing it stands for: the sketch world
renders the same frames from a cold cache, a warm one and a broken one; the
classifier's cached reduction scores the labelled prompts as
`alt-profanity-check`'s own `predict_proba` does, and a warm start never
imports scikit-learn; WordNet's cached index answers as its index files read
line by line do (wndb(5)), on every word of the labelled sets.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from streambot import cache
from streambot.audience.safety import OffensiveClassifier, Reduction
from streambot.config import ConfigError, resolve_world
from streambot.lexicon import POS, WordNet
from streambot.world import sketch_assets
from streambot.world.base import Direction
from streambot.world.sketch import SketchWorld
from streambot.world.sketch_assets import Assets

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).resolve().parent.parent
SIZE = (320, 180)


@pytest.fixture
def cache_home(tmp_path, monkeypatch) -> Path:
    """An empty cache folder of the test's own."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    return tmp_path / "xdg-cache" / "streambot"


def files(folder: Path, name: str) -> list[Path]:
    return sorted(folder.glob(f"{name}-*.npz"))


# -- the sketch world ------------------------------------------------------------


def frames(seed: int = 0, n: int = 8) -> list[np.ndarray]:
    """A world started in the fantasy preset (clouds, water, floating islands) that is then asked for a
    city at night in the rain, so the windows, the nebula and the rain are drawn too."""
    w = SketchWorld(embedder=None, background=False)
    try:
        w.start(resolve_world("fantasy"), SIZE, 30, seed=seed)
        out = [w.render().image for _ in range(n)]
        w.steer(Direction("a neon city at night in the rain", "a neon city at night in the rain", "audience"), 0.5)
        out += [w.render().image for _ in range(20)][::4]
        return out
    finally:
        w.close()


def count_builds(monkeypatch) -> list[int]:
    """Every time `Assets` is built rather than read, its seed (the real constructor runs)."""
    built: list[int] = []
    build = Assets.__init__

    def counted(self: Assets, seed: int) -> None:
        built.append(seed)
        build(self, seed)

    monkeypatch.setattr(Assets, "__init__", counted)
    return built


def test_a_warm_cache_renders_the_frames_a_cold_one_does(cache_home, monkeypatch) -> None:
    built = count_builds(monkeypatch)
    cold = frames()
    assert built == [0] and len(files(cache_home, "sketch-assets")) == 1
    warm = frames()
    assert built == [0], "the second start read the assets"
    assert len(cold) == len(warm)
    for a, b in zip(cold, warm):
        assert np.array_equal(a, b)
    # and the assets read back are the ones the seed builds, array by array, dtype by dtype
    fresh = Assets(0).arrays()
    for name, arr in Assets.load(0).arrays().items():
        assert arr.dtype == fresh[name].dtype and np.array_equal(arr, fresh[name]), name


def test_another_seed_or_changed_code_builds_again(cache_home, monkeypatch) -> None:
    built = count_builds(monkeypatch)
    Assets.load(0)
    Assets.load(1)
    assert built == [0, 1]
    real = cache.source_of
    monkeypatch.setattr(
        cache, "source_of", lambda *m: real(*m) + ("edited" if sketch_assets in m else "")
    )  # as an edit to sketch_assets.py would
    Assets.load(0)
    assert built == [0, 1, 0]
    assert len(files(cache_home, "sketch-assets")) == 3


def test_a_corrupt_cache_file_is_rebuilt(cache_home, monkeypatch, caplog) -> None:
    reference = frames(n=3)
    built = count_builds(monkeypatch)
    (path,) = files(cache_home, "sketch-assets")
    data = path.read_bytes()
    for broken in (data[: len(data) // 2], b"not a zip file", b""):
        path.write_bytes(broken)
        got = frames(n=3)
        assert all(np.array_equal(a, b) for a, b in zip(reference, got))
        assert "cannot be read" in caplog.text
        assert path.read_bytes() == data, "the rebuilt file is written in its place"
    assert built == [0, 0, 0]


def test_a_file_under_another_key_is_not_read(cache_home, monkeypatch) -> None:
    Assets.load(1)
    built = count_builds(monkeypatch)
    k0 = cache.key("sketch-assets", 1, 0, cache.source_of(sketch_assets), np.__version__)
    (seed1,) = files(cache_home, "sketch-assets")
    seed1.rename(cache_home / f"sketch-assets-{k0[:24]}.npz")  # seed 1's assets where seed 0's would be
    a = Assets.load(0)
    assert built == [0]
    assert np.array_equal(a.nebula, Assets(0).nebula)


def test_a_cache_folder_that_cannot_be_written_is_not_an_error(tmp_path, monkeypatch, caplog) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))  # the cache folder would be inside a file
    a = Assets.load(0)
    assert np.array_equal(a.profiles, Assets(0).profiles)
    assert "cannot write the cache file" in caplog.text


def test_source_of_follows_the_file(tmp_path) -> None:
    import importlib.util

    path = tmp_path / "gen.py"
    path.write_text("X = 1\n")
    spec = importlib.util.spec_from_file_location("gen", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    before = cache.source_of(mod)
    path.write_text("X = 2\n")
    assert cache.source_of(mod) != before


# -- the offensive-language classifier --------------------------------------------


@pytest.fixture(scope="module")
def labelled_texts() -> list[str]:
    with open(DATA / "safety_prompts.jsonl", encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f if line.strip()]


def test_cached_scores_are_the_packages(cache_home, labelled_texts) -> None:
    from profanity_check import predict_prob

    OffensiveClassifier.from_package()  # cold: reduced, checked, written
    assert len(files(cache_home, "offensive-classifier")) == 1
    warm = OffensiveClassifier.from_package()
    ours = np.array([warm.score(t) for t in labelled_texts])
    theirs = predict_prob(labelled_texts)
    assert np.abs(ours - theirs).max() < 1e-9


def test_the_analyzer_is_scikit_learns(labelled_texts) -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts = [*labelled_texts, "Don't STOP me now!!", "über café 42 e-mail — ok", "the and of", ""]
    for settings in (
        {"stop_words": "english"},
        {"ngram_range": (1, 3), "stop_words": "english"},
        {"ngram_range": (2, 2), "lowercase": False, "token_pattern": r"(?u)\b(\w+)\b"},
    ):
        v = TfidfVectorizer(**settings).fit(labelled_texts)
        r = Reduction(
            words=[],
            idf=np.zeros(0),
            weights=np.zeros((0, 1)),
            intercept=np.zeros(1),
            calibration=np.zeros((1, 2)),
            token_pattern=v.token_pattern,
            lowercase=v.lowercase,
            stop_words=frozenset(v.get_stop_words() or ()),
            ngram_range=v.ngram_range,
        )
        ours, theirs = r.analyzer(), v.build_analyzer()
        for t in texts:
            assert ours(t) == theirs(t), (settings, t)


def test_a_reduction_that_disagrees_is_refused_and_not_written(cache_home, monkeypatch) -> None:
    reduce = Reduction.reduce

    def off(vectorizer, model) -> Reduction:
        r = reduce(vectorizer, model)
        weights = r.weights.copy()
        weights[r.words.index("idiot")] += 0.5  # one word weighed otherwise than the package does
        return Reduction(**{**r.__dict__, "weights": weights})

    monkeypatch.setattr(Reduction, "reduce", off)
    with pytest.raises(ConfigError, match="not the one this version reads"):
        Reduction.load()
    assert files(cache_home, "offensive-classifier") == []


def test_a_corrupt_classifier_cache_is_rebuilt(cache_home, labelled_texts) -> None:
    first = OffensiveClassifier.from_package()
    (path,) = files(cache_home, "offensive-classifier")
    path.write_bytes(path.read_bytes()[:1000])
    again = OffensiveClassifier.from_package()
    assert [again.score(t) for t in labelled_texts[:50]] == [first.score(t) for t in labelled_texts[:50]]
    assert len(path.read_bytes()) > 1000


def test_a_warm_start_never_imports_scikit_learn(cache_home) -> None:
    OffensiveClassifier.from_package()  # warm the cache
    program = (
        "import sys\n"
        "from streambot.audience.moderation import Moderation\n"
        "from streambot.config import ModerationSettings\n"
        "m = Moderation(ModerationSettings(), wait_for_model=False)\n"  # as `streambot run` builds it
        "from streambot.audience.safety import load_classifier\n"
        "print(round(load_classifier().score('you are all idiots'), 6))\n"
        "print(sorted(n for n in sys.modules if n.split('.')[0] in ('sklearn', 'joblib')))\n"
    )
    env = {**os.environ, "XDG_CACHE_HOME": str(cache_home.parent)}
    out = subprocess.run(
        [sys.executable, "-c", program], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    score, modules = out.stdout.strip().splitlines()
    assert float(score) > 0.9
    assert modules == "[]", f"imported in a warm start: {modules}"


# -- WordNet's index ----------------------------------------------------------------


def index_lines(root: Path, pos: str) -> dict[str, list[str]]:
    """index.<pos> as wndb(5) lays it out: per lemma (its first field) the fields of its line."""
    with open(root / f"index.{POS[pos]}", encoding="utf-8") as f:
        return {line.split()[0]: line.split() for line in f if not line.startswith(" ")}


@pytest.fixture(scope="module")
def words() -> list[str]:
    """Every word (and the two-word phrases as WordNet joins them) of the labelled sets."""
    texts = []
    with open(DATA / "safety_prompts.jsonl", encoding="utf-8") as f:
        texts += [json.loads(line)["text"] for line in f if line.strip()]
    with open(DATA / "pool_pairs.jsonl", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                pair = json.loads(line)
                texts += [pair["a"], pair["b"]]
    out: set[str] = set()
    for t in texts:
        ws = re.findall(r"[a-z]+(?:-[a-z]+)*", t.lower())
        out |= set(ws) | {f"{a}_{b}" for a, b in zip(ws, ws[1:])}
    return sorted(out)


def answers(lexicon: WordNet, words: list[str]) -> list[object]:
    return [
        (
            [s.key for s in lexicon.synsets(w)],
            lexicon.main_pos(w),
            lexicon.is_noun(w),
            lexicon.is_verb(w),
        )
        for w in words
    ]


def test_wordnet_warm_answers_as_cold_and_as_the_files(cache_home, words, monkeypatch) -> None:
    cold_lexicon = WordNet.find()
    if cold_lexicon is None:
        pytest.skip("WordNet is not installed (apt-get install wordnet-base)")
    cold = answers(cold_lexicon, words)
    assert len(files(cache_home, "wordnet-index")) == 4  # one per part of speech
    parsed: list[int] = []
    real_parse = sys.modules["streambot.lexicon"]._parse
    monkeypatch.setattr(sys.modules["streambot.lexicon"], "_parse", lambda path: parsed.append(1) or real_parse(path))
    warm_lexicon = WordNet.find()
    assert warm_lexicon is not None
    assert answers(warm_lexicon, words) == cold
    assert parsed == [], "the warm start parsed the index files"
    # held against the files themselves, on every word
    root = cold_lexicon.root
    for pos in POS:
        lines = index_lines(root, pos)
        for w in words:
            line = lines.get(w)
            want = () if line is None else tuple(int(o) for o in line[6 + int(line[3]) :])
            assert warm_lexicon._index_of(pos).get(w) == want, (pos, w)
            tagged = -1 if line is None else int(line[5 + int(line[3])])
            assert warm_lexicon._index_of(pos).tagged(w) == tagged, (pos, w)
    cold_lexicon.close()
    warm_lexicon.close()


def test_wordnet_rebuilds_when_its_files_change(cache_home, tmp_path, monkeypatch) -> None:
    found = WordNet.find()
    if found is None:
        pytest.skip("WordNet is not installed (apt-get install wordnet-base)")
    copy = tmp_path / "wordnet"
    copy.mkdir()
    for f in found.root.iterdir():
        if f.name.startswith(("index.", "data.")) and f.suffix[1:] in POS.values():
            (copy / f.name).symlink_to(f) if f.name.startswith("data.") else (copy / f.name).write_bytes(f.read_bytes())
    found.close()
    first = WordNet(copy)
    assert first.synsets("zebra") and not first.synsets("zorblattquux")
    first.close()
    # a new word in index.noun, pointing at zebra's synset
    zebra = index_lines(copy, "n")["zebra"]
    with open(copy / "index.noun", "a", encoding="utf-8") as f:
        f.write(" ".join(["zorblattquux", *zebra[1:]]) + "\n")
    second = WordNet(copy)
    assert [s.key for s in second.synsets("zorblattquux")] == [s.key for s in second.synsets("zebra")]
    second.close()
    assert len(files(cache_home, "wordnet-index-noun")) == 2  # the changed file's, beside the old one
    assert len(files(cache_home, "wordnet-index-verb")) == 1


def test_a_corrupt_wordnet_cache_is_rebuilt(cache_home, words) -> None:
    first = WordNet.find()
    if first is None:
        pytest.skip("WordNet is not installed (apt-get install wordnet-base)")
    want = answers(first, words[:300])
    first.close()
    (path,) = files(cache_home, "wordnet-index-noun")
    path.write_bytes(b"PK\x03\x04 cut short")
    again = WordNet.find()
    assert again is not None and answers(again, words[:300]) == want
    again.close()


# -- the sketch world's keywords, compiled when a text may hold them ------------------


def test_keyword_matching_is_every_pattern_searched(monkeypatch) -> None:
    """The mapper skips keywords whose letters an ASCII text does not hold: it must
    never skip one whose pattern matches, and map every text as searching them all does."""
    from streambot.world import sketch_concepts
    from streambot.world.sketch_concepts import CONCEPTS, SceneMapper

    texts = []
    for name in ("safety_prompts.jsonl", "pool_pairs.jsonl", "moods.tsv"):
        with open(DATA / name, encoding="utf-8") as f:
            for line in f:
                if name.endswith(".tsv"):
                    texts.append(line.split("\t")[0])
                elif line.strip():
                    row = json.loads(line)
                    texts += [row[k] for k in ("text", "a", "b") if k in row]
    texts += [
        "A STORM over the SEA",
        "no rain, just snow",
        "Snowstorms and Dragons",
        "\u017fnow on the roofs",  # a long s: the same letter as s to `re.I`
        "neon \u212aites in the sky",  # a Kelvin sign: K to `re.I`
        "caf\u00e9 at dawn under the aurora",
        "",
    ]
    for t in texts:
        for p in sketch_concepts.clauses(t):
            low, plain = p.lower(), p.isascii()
            for c in CONCEPTS:
                for w in c.keywords:
                    if re.search(r"\b" + re.escape(w) + r"(?:s|es)?\b", p, re.I):
                        assert sketch_concepts._may_hold(low, plain, w), (p, w)
    mapper = SceneMapper(None)
    fast = [mapper.activations(t) for t in texts]
    monkeypatch.setattr(sketch_concepts, "_may_hold", lambda low, plain, w: True)  # search every pattern
    for t, got in zip(texts, fast):
        want = mapper.activations(t)
        assert all(np.array_equal(a, b) for a, b in zip(got, want)), t


def test_the_glows_are_the_whole_formula() -> None:
    """The canvas computes a glow's quadrant and mirrors it: the textures must be the
    formula's own values at every pixel, odd sizes too."""
    from streambot.world.sketch_canvas import Canvas

    for w, h in ((320, 180), (640, 360), (97, 61)):
        c = Canvas(w, h)
        gy, gx = np.mgrid[0 : 2 * h, 0 : 2 * w].astype(np.float32)
        d = np.hypot(gx - w, gy - h) / h
        wide = (0.55 * np.exp(-d / 0.09) + 0.35 * np.exp(-((d / 0.45) ** 2))).astype(np.float32)
        small = (0.6 * np.exp(-((d / 0.07) ** 2)) + 0.4 * np.exp(-((d / 0.03) ** 2))).astype(np.float32)
        assert np.array_equal(c._glow, wide) and np.array_equal(c._glow_small, small)
        assert c._glow.flags.c_contiguous and c._glow.dtype == np.float32


def _labelled_words() -> list[str]:
    words: set[str] = set()
    for line in (Path(__file__).parent / "data" / "safety_prompts.jsonl").read_text().splitlines():
        words.update(re.findall(r"[a-z']+", json.loads(line)["text"].lower()))
    return sorted(words)


def test_the_lemmatizers_cached_trie_gives_simplemmas_own_lemmas(cache_home):
    """The lemmatizer reads simplemma's dictionary from a trie in the cache folder; its
    lemmas are simplemma's own (the shipped dictionary, decoded in memory) on every word
    of the labelled sets, from a cold cache, a warm one, and a corrupt one built again."""
    import simplemma

    from streambot import pooling

    words = _labelled_words() + ["geese", "went", "better", "children", "burning", "mice"]
    reference = [simplemma.Lemmatizer().lemmatize(w, lang="en") for w in words]
    for state in ("cold", "warm", "corrupt"):
        if state == "corrupt":
            (dic,) = (cache_home / "simplemma").glob("*/en.dic")
            dic.write_bytes(b"not a trie")
        pooling._lemmatizer.cache_clear()
        got = [pooling._lemmatizer().lemmatize(w, lang="en") for w in words]
        assert got == reference, state
    (dic,) = (cache_home / "simplemma").glob("*/en.dic")
    assert dic.stat().st_size > 100_000  # built again, whole


# -- the overlay's fonts -------------------------------------------------------------


FONTS = sorted(p for p in (ROOT / "overlays" / "fonts").iterdir() if p.suffix in (".ttf", ".otf"))


def test_font_cmaps_cold_and_warm_are_fonttools_own(cache_home) -> None:
    from streambot.broadcast.overlay_text import font_cmap, read_cmap

    assert len(FONTS) >= 10
    for path in FONTS:
        truth = read_cmap(path)  # fontTools reads the file itself
        assert len(truth) > 50, path.name
        assert font_cmap(path) == truth, f"{path.name}: cold"
        assert files(cache_home, f"font-cmap-{path.stem}"), path.name
        assert font_cmap(path) == truth, f"{path.name}: warm"


def test_a_changed_font_file_is_read_again(cache_home, tmp_path) -> None:
    from streambot.broadcast.overlay_text import font_cmap, read_cmap

    latin, hebrew = ROOT / "overlays/fonts/NotoSans-Bold.ttf", ROOT / "overlays/fonts/NotoSansHebrew-Bold.ttf"
    font = tmp_path / "Custom.ttf"
    font.write_bytes(latin.read_bytes())
    assert font_cmap(font) == read_cmap(latin)
    font.write_bytes(hebrew.read_bytes())  # the streamer replaced the file: another size, another time
    assert font_cmap(font) == read_cmap(hebrew)
    assert 0x05D0 in font_cmap(font) and 0x05D0 not in read_cmap(latin)  # alef


def test_a_warm_overlay_start_never_imports_fonttools(cache_home) -> None:
    program = (
        "import sys\n"
        "from streambot.broadcast.overlay_text import FontSet\n"
        "fonts = FontSet()\n"
        "print(fonts.face_for('\u05d0').path.name, fonts.face_for('a').path.name)\n"
        "print(sorted(n for n in sys.modules if n.split('.')[0] == 'fontTools'))\n"
    )
    env = {**os.environ, "XDG_CACHE_HOME": str(cache_home.parent)}
    outs = [
        subprocess.run([sys.executable, "-c", program], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        for _ in range(2)  # cold, then warm
    ]
    assert all(o.returncode == 0 for o in outs), outs[-1].stderr
    (cold_faces, cold_modules), (warm_faces, warm_modules) = (o.stdout.strip().splitlines() for o in outs)
    assert cold_faces == warm_faces == "NotoSansHebrew-Bold.ttf NotoSans-Bold.ttf"
    assert cold_modules != "[]"  # the cold start read the files with fontTools
    assert warm_modules == "[]", f"imported in a warm start: {warm_modules}"
