"""On-air safety measured on the labelled set, per category and per layer.

    python benchmarks/bench_safety.py            # the figures the README quotes
    python benchmarks/bench_safety.py --json     # the same, machine-readable
    python benchmarks/bench_safety.py --train    # retrain config/moderation/concepts.npz

The set is tests/data/safety_prompts.jsonl: one prompt a line with its
label (unsafe or benign), category, the presets that allow it, and its split.
The split is fixed by the prompt's text (first byte of its SHA-256 even:
`dev`, odd: `test`), so nobody chose which prompts were held out. The
semantic probe is trained on config/moderation/concepts.toml and the `dev`
half; its regularisation and threshold are chosen by 5-fold cross-validation
within `dev`; the `test` half is never seen in training or tuning.

Every prompt goes through the real layers as a viewer's would: the inline
ones in `Moderation.check_prompt` (block lists, concept terms, classifier),
then, if it would become a candidate, `Moderation.screen` (the semantic
probe on its sentence embedding) as the pooling worker runs it. Reported
per category and per world: unsafe prompts that became candidates (goal 0),
benign prompts refused (goal at most 1%), and what a candidate costs.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from streambot.audience.events import Viewer  # noqa: E402
from streambot.audience.moderation import Moderation  # noqa: E402
from streambot.audience.safety import (  # noqa: E402
    PROBE_FILE, load_concepts, train_probe,
)
from streambot.config import ModerationSettings, resolve_world  # noqa: E402

DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "safety_prompts.jsonl"
WORLDS = ("meadow", "war1944")


def load_set(path: Path = DATA) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def expected_refused(row: dict, world: str) -> bool:
    return row["label"] == "unsafe" and world not in row["allowed_in"]


def moderation() -> Moderation:
    return Moderation(ModerationSettings(viewer_prompts_per_min=600, viewer_burst=100,
                                         global_prompts_per_min=60000, global_burst=10000))


def run_layers(mod: Moderation, rows: list[dict], world: str) -> list[str | None]:
    """Per prompt: the layer that refused it, or None when it became a candidate."""
    mod.set_world(resolve_world(world))
    out: list[str | None] = []
    admitted: list[tuple[int, str]] = []
    for i, row in enumerate(rows):
        before = dict(mod.refused)
        v = mod.check_prompt(Viewer("twitch", f"viewer{i}"), row["text"], 0.0)
        if v.ok:
            out.append(None)
            admitted.append((i, v.text))
        else:
            layer = next((k[0] for k, n in mod.refused.items() if n != before.get(k, 0)), v.reason)
            out.append(layer)
    texts = [t for _, t in admitted]
    vectors = mod.safety.embed(texts) if mod.safety is not None and mod.safety.embed else None
    for (i, _), ok in zip(admitted, mod.screen(texts, vectors)):
        if not ok:
            out[i] = "semantic"
    return out


def report(rows: list[dict], mod: Moderation) -> dict:
    result: dict = {"worlds": {}}
    for world in WORLDS:
        refused_by = run_layers(mod, rows, world)
        per: dict = defaultdict(lambda: {"n": 0, "wrong": 0, "by": defaultdict(int), "missed": []})
        for row, layer in zip(rows, refused_by):
            want = expected_refused(row, world)
            key = (row["category"] if row["label"] == "unsafe" else "benign") + ("" if want or row["label"] == "benign" else " (allowed)")
            for split in (row["split"], "all"):
                d = per[(key, split)]
                d["n"] += 1
                if layer is not None:
                    d["by"][layer] += 1
                if want != (layer is not None):
                    d["wrong"] += 1
                    if split == "all":
                        d["missed"].append(row["text"])
        result["worlds"][world] = {f"{k[0]}|{k[1]}": {**v, "by": dict(v["by"])} for k, v in sorted(per.items())}
    return result


def _fresh() -> None:
    """Forget every cached reading and verdict: each prompt is measured as if new."""
    from streambot.audience import moderation as m

    m._forms.cache_clear()


def costs(rows: list[dict], mod: Moderation, repeats: int = 5) -> dict:
    """Inline cost per new prompt (check_prompt) and worker cost per candidate (embed + probe)."""
    viewers = [Viewer("twitch", f"viewer{i}") for i in range(len(rows))]
    texts = [r["text"] for r in rows]
    inline = []
    for _ in range(repeats):
        _fresh()
        if mod.safety is not None:
            mod.safety.allow(mod.safety.allowed)  # clears its verdict cache
        t0 = time.perf_counter()
        for v, t in zip(viewers, texts):
            mod.check_prompt(v, t, 0.0)
        inline.append((time.perf_counter() - t0) / len(texts) * 1e6)
    out = {"inline_us_per_prompt": round(statistics.median(inline), 1)}
    without = Moderation(ModerationSettings(viewer_prompts_per_min=600, viewer_burst=100, global_burst=10000,
                                            global_prompts_per_min=60000, classifier=False, semantic=False))
    without.safety = None
    base = []
    for _ in range(repeats):
        _fresh()
        t0 = time.perf_counter()
        for v, t in zip(viewers, texts):
            without.check_prompt(v, t, 0.0)
        base.append((time.perf_counter() - t0) / len(texts) * 1e6)
    out["inline_us_block_lists_only"] = round(statistics.median(base), 1)
    if mod.safety is not None and mod.safety.embed is not None:
        embed = mod.safety.embed
        clean = [mod.normalise(t) for t in texts]
        embed(clean[:8])
        for batch in (1, 8):
            per = []
            probe = []
            for i in range(0, min(len(clean), 64), batch):
                chunk = clean[i:i + batch]
                t0 = time.perf_counter()
                v = embed(chunk)
                t1 = time.perf_counter()
                mod.screen(chunk, v)
                t2 = time.perf_counter()
                per.append((t2 - t0) / len(chunk) * 1e3)
                probe.append((t2 - t1) / len(chunk) * 1e3)
            out[f"worker_ms_per_candidate_batch{batch}"] = round(statistics.median(per), 2)
            out[f"worker_probe_only_ms_batch{batch}"] = round(statistics.median(probe), 3)
    return out


# -- training ------------------------------------------------------------------

def _lexical(mod: Moderation, texts: list[str], world: str) -> np.ndarray:
    mod.set_world(resolve_world(world))
    return np.array([not mod.check_prompt(Viewer("twitch", f"v{i}"), t, 0.0).ok for i, t in enumerate(texts)])


def train(out: Path = PROBE_FILE, folds: int = 5) -> None:
    from sklearn.model_selection import StratifiedKFold

    concepts = load_concepts()
    ex_texts, ex_labels = [], []
    for cat, table in concepts.items():
        for t in table.get("examples", []):
            ex_texts.append(t)
            ex_labels.append(cat)
    rows = [r for r in load_set() if r["split"] == "dev"]
    mod = Moderation(ModerationSettings(viewer_prompts_per_min=600, viewer_burst=100, global_burst=10000,
                                        global_prompts_per_min=60000, semantic=False))
    dev_texts = [mod.normalise(r["text"]) for r in rows]
    dev_labels = [r["category"] if r["label"] == "unsafe" else "benign" for r in rows]
    embed = mod.safety.embed if mod.safety and mod.safety.embed else None
    if embed is None:
        from streambot.embeddings import get_embedder

        embed = get_embedder().encode
    print(f"embedding {len(ex_texts)} examples and {len(dev_texts)} dev prompts ...", file=sys.stderr)
    ex_vec, dev_vec = embed([mod.normalise(t) for t in ex_texts]), embed(dev_texts)
    lexical = {w: _lexical(mod, [r["text"] for r in rows], w) for w in WORLDS}
    want = {w: np.array([expected_refused(r, w) for r in rows]) for w in WORLDS}
    y = np.array(dev_labels)
    best = None
    for c in (0.3, 1.0, 3.0, 10.0, 30.0):
        cv_p = {w: np.zeros(len(rows)) for w in WORLDS}
        for tr, te in StratifiedKFold(folds, shuffle=True, random_state=0).split(dev_vec, y):
            probe = train_probe(ex_texts + [dev_texts[i] for i in tr], ex_labels + [dev_labels[i] for i in tr],
                                np.vstack([ex_vec, dev_vec[tr]]), c=c)
            p = probe.probabilities(dev_vec[te])
            for w in WORLDS:
                allowed = set(resolve_world(w).extra.get("moderation", {}).get("allow", []))
                cols = [i for i, k in enumerate(probe.classes) if k != "benign" and k not in allowed]
                cv_p[w][te] = p[:, cols].sum(axis=1)
        # One threshold for worlds that allow nothing (meadow), one for those that allow a category (war1944).
        chosen = []
        for w in WORLDS:
            world_best = None
            for t in np.arange(0.2, 0.96, 0.025):
                refuse = lexical[w] | (cv_p[w] >= t)
                admitted, refused = int((want[w] & ~refuse).sum()), int((~want[w] & refuse).sum())
                score = admitted + 2 * refused  # a benign refusal costs more: it teaches viewers to game
                if world_best is None or score < world_best[0]:
                    world_best = (score, float(t), admitted, refused)
            chosen.append(world_best)
        score = sum(x[0] for x in chosen)
        if best is None or score < best[0]:
            best = (score, c, chosen)
    _, c, ((_, t, a1, r1), (_, t_relaxed, a2, r2)) = best
    print(f"chosen by {folds}-fold cross-validation on dev: C={c}, threshold={t:.3f} (meadow: unsafe admitted "
          f"{a1}, benign refused {r1}), relaxed {t_relaxed:.3f} (war1944: {a2}, {r2})", file=sys.stderr)
    probe = train_probe(ex_texts + dev_texts, ex_labels + dev_labels, np.vstack([ex_vec, dev_vec]), c=c,
                        threshold=t, relaxed_threshold=t_relaxed)
    probe.save(out)
    print(f"wrote {out}", file=sys.stderr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--costs", action="store_true", help="only what the layers cost")
    ap.add_argument("--train", action="store_true", help="retrain the semantic probe, then exit")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.train:
        train()
        return
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    rows = load_set()
    mod = moderation()
    result = {} if args.costs else report(rows, mod)
    result["costs"] = costs(rows, mod)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for world, table in result.get("worlds", {}).items():
        print(f"\n== {world}: wrong / prompts (dev, test, all); refused by layer")
        cats = sorted({k.split("|")[0] for k in table})
        for cat in cats:
            d, te, a = (table.get(f"{cat}|{s}", {"n": 0, "wrong": 0}) for s in ("dev", "test", "all"))
            kind = "admitted" if cat != "benign" and not cat.endswith("(allowed)") else "refused"
            print(f"{cat:24} {kind:8} dev {d['wrong']:>2}/{d['n']:<3} test {te['wrong']:>2}/{te['n']:<3} "
                  f"all {a['wrong']:>2}/{a['n']:<3}  {a.get('by', {})}")
            for text in a.get("missed", []):
                print(f"{'':26}- {text}")
    c = result["costs"]
    print("\ncosts:", ", ".join(f"{k} {v}" for k, v in c.items()))


if __name__ == "__main__":
    main()
