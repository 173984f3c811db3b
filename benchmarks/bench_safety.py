"""On-air safety measured on the labelled set, per category and per layer.

    python benchmarks/bench_safety.py            # the figures the README quotes
    python benchmarks/bench_safety.py --json     # the same, machine-readable
    python benchmarks/bench_safety.py --train    # retrain config/moderation/concepts.npz
    python benchmarks/bench_safety.py --batch 3  # only the prompts added in batch 3

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
import itertools
import json
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from streambot.audience.moderation import Moderation  # noqa: E402
from streambot.audience.safety import (  # noqa: E402
    PROBE_FILE,
    load_concepts,
    train_probe,
)
from streambot.config import ModerationSettings, resolve_world  # noqa: E402
from streambot.viewer import Viewer  # noqa: E402

DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "safety_prompts.jsonl"
WORLDS = ("meadow", "war1944")


def load_set(path: Path = DATA) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def expected_refused(row: dict, world: str) -> bool:
    return row["label"] == "unsafe" and world not in row["allowed_in"]


def moderation(**kw) -> Moderation:
    return Moderation(
        ModerationSettings(
            viewer_prompts_per_min=600, viewer_burst=100, global_prompts_per_min=60000, global_burst=10000, **kw
        )
    )


def run_layers(mod: Moderation, rows: list[dict], world: str) -> list[tuple[str, str]]:
    """Per prompt: ("admitted" | "held" | "refused", the layer that decided it, or "")."""
    mod.set_world(resolve_world(world))
    out: list[tuple[str, str]] = []
    candidates: list[tuple[int, str]] = []
    for i, row in enumerate(rows):
        before, held_before = dict(mod.refused), dict(mod.held)
        v = mod.check_prompt(Viewer("twitch", f"viewer{i}"), row["text"], 0.0)
        if v.ok:
            layer = next((k[0] for k, n in mod.held.items() if n != held_before.get(k, 0)), "")
            out.append(("held" if v.held else "admitted", layer))
            candidates.append((i, v.text))
        else:
            layer = next((k[0] for k, n in mod.refused.items() if n != before.get(k, 0)), v.reason)
            out.append(("refused", layer))
    texts = [t for _, t in candidates]
    vectors = mod.safety.embed(texts) if mod.safety is not None and mod.safety.embed else None
    for (i, _), verdict in zip(candidates, mod.screen(texts, vectors)):
        if verdict == "refuse":
            out[i] = ("refused", "semantic")
        elif verdict == "hold" and out[i][0] == "admitted":
            out[i] = ("held", "semantic")
    return out


def report(rows: list[dict], mod: Moderation) -> dict:
    """Per world, per category and split: how many prompts, and how many admitted, held, refused.

    Benign prompts count under their trap ("benign trap.words") and under "benign" (all of them);
    unsafe ones the world must refuse under their category and under "unsafe" (all of them)."""
    result: dict = {"worlds": {}}
    for world in WORLDS:
        outcomes = run_layers(mod, rows, world)
        per: dict = defaultdict(
            lambda: {"n": 0, "admitted": 0, "held": 0, "refused": 0, "by": defaultdict(int), "wrong": []}
        )
        for row, (outcome, layer) in zip(rows, outcomes):
            want = expected_refused(row, world)
            if row["label"] == "benign":
                keys = [f"benign {row['category']}", "benign"]
            else:
                keys = [row["category"] + ("" if want else " (allowed)")] + (["unsafe"] if want else [])
            for key in keys:
                for split in (row["split"], "all"):
                    d = per[(key, split)]
                    d["n"] += 1
                    d[outcome] += 1
                    if outcome != "admitted":
                        d["by"][f"{outcome} {layer}"] += 1
                    if (want and outcome == "admitted") or (not want and outcome != "admitted"):
                        d["wrong"].append(f"{outcome}: {row['text']}")
        result["worlds"][world] = {f"{k[0]}|{k[1]}": {**v, "by": dict(v["by"])} for k, v in sorted(per.items())}
    return result


def _fresh() -> None:
    """Forget every cached reading and verdict: each prompt is measured as if new."""
    from streambot import blocklist

    blocklist._forms.cache_clear()


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
    without = Moderation(
        ModerationSettings(
            viewer_prompts_per_min=600,
            viewer_burst=100,
            global_burst=10000,
            global_prompts_per_min=60000,
            classifier=False,
            semantic=False,
        )
    )
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
                chunk = clean[i : i + batch]
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

# What each outcome costs when the band is chosen: an unsafe prompt on air is the
# failure that suspends a channel; a refused harmless one teaches viewers to game the
# filter; a held harmless one costs a moderator a click; a held unsafe one, less.
COSTS = {"unsafe admitted": 20.0, "benign refused": 6.0, "benign held": 1.0, "unsafe held": 0.1}
# A harmless idea held costs a moderator a click, and a streamer without one a refusal: the band is
# also chosen with that click weighed double, and the choice (with C) is the one that, on dev
# cross-validated, admits the fewest unsafe prompts, then refuses the fewest harmless ones, then
# holds the fewest harmless ones.
HELD_COSTS = (1.0, 2.0)
# The neighbours' share of the probe's vote (ConceptProbe.memory_weight): on dev, cross-validated,
# an even share held the fewest harmless prompts for as few unsafe ones admitted (0.3 and 0.7 did worse).
MEMORY_WEIGHT = 0.5


def _inline(mod: Moderation, texts: list[str], world: str) -> tuple[np.ndarray, np.ndarray]:
    """Per prompt: refused inline, held inline."""
    mod.set_world(resolve_world(world))
    verdicts = [mod.check_prompt(Viewer("twitch", f"v{i}"), t, 0.0) for i, t in enumerate(texts)]
    return np.array([not v.ok for v in verdicts]), np.array([v.ok and v.held for v in verdicts])


def _counts(want: np.ndarray, refuse: np.ndarray, hold: np.ndarray) -> dict:
    admit = ~refuse & ~hold
    return {
        "unsafe admitted": int((want & admit).sum()),
        "benign refused": int((~want & refuse).sum()),
        "benign held": int((~want & hold).sum()),
        "unsafe held": int((want & hold).sum()),
    }


def _cost(n: dict) -> float:
    return sum(COSTS[k] * v for k, v in n.items())


GRID = np.round(np.arange(0.05, 1.0001, 0.025), 3)


def choose_band(mass: np.ndarray, refused: np.ndarray, held: np.ndarray, want: np.ndarray) -> tuple[float, float, dict]:
    """The (hold, refuse) thresholds on the probe's unsafe mass with the lowest `COSTS`."""
    best = None
    for r in GRID:
        for h in GRID[GRID <= r]:
            refuse = refused | (mass >= r)
            n = _counts(want, refuse, ~refuse & (held | (mass >= h)))
            if best is None or _cost(n) < best[0] - 1e-9:
                best = (_cost(n), float(h), float(r), n)
    assert best is not None
    return best[1], best[2], best[3]


def choose_minor(
    sexual: np.ndarray, minor: np.ndarray, refuse: np.ndarray, hold: np.ndarray, want: np.ndarray
) -> tuple[float, dict]:
    """The sexual share from which a prompt naming a minor is held, with the lowest `COSTS`
    (the lowest such threshold: this is the category that must never air)."""
    best = None
    for t in GRID[::-1]:
        n = _counts(want, refuse, ~refuse & (hold | (minor & (sexual >= t))))
        if best is None or _cost(n) <= best[0] + 1e-9:
            best = (_cost(n), float(t), n)
    assert best is not None
    return best[1], best[2]


def near_duplicate_groups(vectors: np.ndarray, at: float = 0.85) -> np.ndarray:
    """Prompts that say nearly the same thing (cosine >= `at`), one group each: cross-validation
    keeps a group in one fold, or "a threesome in the hotel room" would be judged by a probe
    trained on "a threesome in a hotel room"."""
    parent = np.arange(len(vectors))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    sims = vectors @ vectors.T
    for i, j in zip(*np.nonzero(np.triu(sims, 1) >= at)):
        parent[root(i)] = root(j)
    return np.array([root(i) for i in range(len(vectors))])


MARGINS = np.round(np.arange(0.0, 0.3001, 0.02), 3)


def choose_release_margin(
    gap: np.ndarray,
    mass: dict[str, np.ndarray],
    bands: dict[str, tuple[float, float, dict]],
    inline: dict[str, tuple[np.ndarray, np.ndarray]],
    minor_held: np.ndarray,
    want: dict[str, np.ndarray],
    outcomes: dict[str, list[str]],
) -> float | None:
    """The margin for the neighbours' second opinion (ConceptProbe.release_margin): on dev
    cross-validated, one step above the smallest at which it admits no unsafe prompt that the
    band alone held, in any world (a step of room: the set is small); None (off) when that frees
    no harmless prompt. Every margin tried is printed; `outcomes` gets the chosen one's."""
    band_only = {
        w: (mass[w] >= h) & (mass[w] < r) & ~inline[w][0] & ~inline[w][1] & ~minor_held
        for w, (h, r, _) in bands.items()
    }
    safe: list[float] = []
    for margin in MARGINS[::-1]:
        freed = sum(int((band_only[w] & (gap >= margin) & ~want[w]).sum()) for w in bands)
        unsafe = [t for w in bands for t in np.nonzero(band_only[w] & (gap >= margin) & want[w])[0]]
        print(f"  release margin {margin:.2f}: harmless freed {freed}, unsafe admitted {len(unsafe)}", file=sys.stderr)
        if unsafe:
            break
        safe.append(float(margin))
    if len(safe) < 2:
        return None
    chosen = safe[-2]
    if not any((band_only[w] & (gap >= chosen) & ~want[w]).any() for w in bands):
        return None
    for w in bands:
        for i in np.nonzero(band_only[w] & (gap >= chosen))[0]:
            outcomes[w][i] = "admitted"
    print(f"  release margin chosen: {chosen:.2f}", file=sys.stderr)
    return chosen


def _cv_table(rows: list[dict], outcomes: dict[str, list[str]]) -> None:
    for world, outs in outcomes.items():
        per: dict = defaultdict(lambda: [0, 0, 0, 0])
        for r, o in zip(rows, outs):
            key = r["category"] if r["label"] == "unsafe" else "benign"
            key += "" if r["label"] == "benign" or expected_refused(r, world) else " (allowed)"
            per[key][("admitted", "held", "refused").index(o)] += 1
            per[key][3] += 1
        print(
            f"  {world}, dev cross-validated (admitted/held/refused of prompts): "
            + ", ".join(f"{k} {v[0]}/{v[1]}/{v[2]} of {v[3]}" for k, v in sorted(per.items())),
            file=sys.stderr,
        )
        for r, o in zip(rows, outs):
            want = expected_refused(r, world)
            if (want and o == "admitted") or (not want and o != "admitted"):
                print(f"    {o}: {r['text']}", file=sys.stderr)


def train(out: Path = PROBE_FILE, folds: int = 5) -> None:
    """Fit the probe on concepts.toml's examples and `dev`; choose C, the bands and the minors
    threshold by cross-validation within `dev` (near-duplicates kept in one fold)."""
    from sklearn.model_selection import StratifiedGroupKFold

    from streambot.audience.safety import load_senses

    concepts = load_concepts()
    ex_texts, ex_labels = [], []
    for cat, table in concepts.items():
        for t in table.get("examples", []):
            ex_texts.append(t)
            ex_labels.append(cat)
    rows = [r for r in load_set() if r["split"] == "dev"]
    mod = moderation(semantic=False)
    senses = load_senses(concepts)
    if senses is None or mod.safety is None:
        sys.exit("WordNet is needed to train the probe (apt-get install wordnet-base).")
    dev_texts = [mod.normalise(r["text"]) for r in rows]
    dev_labels = [r["category"] if r["label"] == "unsafe" else "benign" for r in rows]
    from streambot.embeddings import get_embedder

    embed = get_embedder().encode
    print(f"embedding {len(ex_texts)} examples and {len(dev_texts)} dev prompts ...", file=sys.stderr)
    # the probe reads what the screen reads: slang with its meaning (Safety.read)
    ex_clean = [mod.safety.read(mod.normalise(t)) for t in ex_texts]
    dev_read = [mod.safety.read(t) for t in dev_texts]
    ex_e, dev_e = embed(ex_clean), embed(dev_read)
    ex_x = np.hstack([ex_e, np.stack([senses.features(t) for t in ex_clean])])
    dev_x = np.hstack([dev_e, np.stack([senses.features(t) for t in dev_read])])
    minor = np.array([mod.safety.names_minor(t) for t in dev_read])
    civilian = np.array([mod.safety.targets_civilians(t) for t in dev_read])  # war not relaxed (Safety.screen)
    inline = {w: _inline(mod, [r["text"] for r in rows], w) for w in WORLDS}
    want = {w: np.array([expected_refused(r, w) for r in rows]) for w in WORLDS}
    allowed = {w: frozenset(resolve_world(w).extra.get("moderation", {}).get("allow", [])) for w in WORLDS}
    split = list(
        StratifiedGroupKFold(folds, shuffle=True, random_state=0).split(dev_x, dev_labels, near_duplicate_groups(dev_e))
    )
    best = None
    runs = []
    gap = np.zeros(len(rows))  # the neighbours' second opinion, cross-validated (ConceptProbe.neighbour_gap)
    for c in (1.0, 3.0, 10.0):
        cv_p = None
        for tr, te in split:
            probe = train_probe(
                ex_texts + [dev_texts[i] for i in tr],
                ex_labels + [dev_labels[i] for i in tr],
                np.vstack([ex_x, dev_x[tr]]),
                c=c,
                senses=True,
                memory=np.vstack([ex_e, dev_e[tr]]),
                memory_weight=MEMORY_WEIGHT,
            )
            p = probe.probabilities(dev_x[te])
            gap[te] = probe.neighbour_gap(dev_e[te])
            cv_p = np.zeros((len(rows), p.shape[1])) if cv_p is None else cv_p
            cv_p[te] = p
        assert cv_p is not None
        runs.append((c, cv_p, probe))
    for held_cost, (c, cv_p, probe) in itertools.product(HELD_COSTS, runs):
        COSTS["benign held"] = held_cost
        strict = probe.unsafe(dev_x, frozenset(), cv_p)[0]
        mass = {w: np.where(civilian, strict, probe.unsafe(dev_x, allowed[w], cv_p)[0]) for w in WORLDS}
        # One band for worlds that allow nothing (meadow), one for those that allow a category (war1944).
        bands = {w: choose_band(mass[w], *inline[w], want[w]) for w in WORLDS}
        sexual = probe.sexual(cv_p)
        decided = {}
        for w, (h, r, _) in bands.items():
            refuse = inline[w][0] | (mass[w] >= r)
            decided[w] = (refuse, ~refuse & (inline[w][1] | (mass[w] >= h)))
        # Minors are refused everywhere alike: one threshold, chosen on the strict world.
        m, n_minor = choose_minor(sexual, minor, *decided[WORLDS[0]], want[WORLDS[0]])
        counts = [_counts(want[w], ref, hold | (~ref & minor & (sexual >= m))) for w, (ref, hold) in decided.items()]
        cost = tuple(sum(n[k] for n in counts) for k in ("unsafe admitted", "benign refused", "benign held"))
        print(
            f"  held cost {held_cost}, C={c}: {cost}; "
            + "; ".join(f"{w} hold {h:.3f} refuse {r:.3f} {n}" for w, (h, r, n) in bands.items())
            + f"; minors held from sexual {m:.3f} {n_minor}",
            file=sys.stderr,
        )
        if best is None or cost < best[0]:
            outcomes = {}
            for w, (ref, hold) in decided.items():
                hold = hold | (~ref & minor & (sexual >= m))
                outcomes[w] = ["refused" if a else "held" if b else "admitted" for a, b in zip(ref, hold)]
            best = (cost, c, bands, m, outcomes, held_cost, mass, sexual)
    COSTS["benign held"] = HELD_COSTS[0]
    assert best is not None
    _, c, bands, m, outcomes, held_cost, mass, sexual = best
    margin = choose_release_margin(gap, mass, bands, inline, minor & (sexual >= m), want, outcomes)
    (h, t, _), (h_relaxed, t_relaxed, _) = bands[WORLDS[0]], bands[WORLDS[1]]
    print(
        f"chosen by {folds}-fold cross-validation on dev: held cost {held_cost}, C={c}; "
        f"meadow hold {h:.3f} refuse {t:.3f}; "
        f"war1944 hold {h_relaxed:.3f} refuse {t_relaxed:.3f}; minors held from {m:.3f}",
        file=sys.stderr,
    )
    _cv_table(rows, outcomes)
    probe = train_probe(
        ex_texts + dev_texts,
        ex_labels + dev_labels,
        np.vstack([ex_x, dev_x]),
        c=c,
        senses=True,
        threshold=t,
        relaxed_threshold=t_relaxed,
        hold_threshold=h,
        relaxed_hold_threshold=h_relaxed,
        minor_hold_threshold=m,
        memory=np.vstack([ex_e, dev_e]),
        memory_weight=MEMORY_WEIGHT,
        release_margin=margin,
    )
    probe.save(out)
    print(f"wrote {out}", file=sys.stderr)


def _print(result: dict, splits: tuple[str, ...], listed: set[str]) -> None:
    for world, table in result.get("worlds", {}).items():
        print(f"\n== {world}: admitted / held / refused of prompts, per split; by layer")
        cats = sorted({k.split("|")[0] for k in table}, key=lambda c: (c in ("unsafe", "benign"), c))
        for cat in cats:
            cells = []
            for sp in splits:
                d = table.get(f"{cat}|{sp}", {"n": 0, "admitted": 0, "held": 0, "refused": 0})
                cells.append(f"{sp} {d['admitted']:>3}/{d['held']:>3}/{d['refused']:>3} of {d['n']:<3}")
            last = table.get(f"{cat}|{splits[-1]}", {})
            print(f"{cat:26} " + "  ".join(cells) + f"  {last.get('by', {})}")
            if cat in ("unsafe", "benign"):
                continue
            for sp in splits:
                if sp in listed:
                    for text in table.get(f"{cat}|{sp}", {}).get("wrong", []):
                        print(f"{'':28}- {sp} {text}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--costs", action="store_true", help="only what the layers cost")
    ap.add_argument("--train", action="store_true", help="retrain the semantic probe, then exit")
    ap.add_argument(
        "--split",
        choices=("dev", "test", "all"),
        default="all",
        help="only this half of the set (tune on dev; look at test once)",
    )
    ap.add_argument(
        "--batch",
        type=int,
        action="append",
        help="only prompts of this batch (repeatable): the set grew in batches, each written "
        "before the layers were changed for it",
    )
    ap.add_argument(
        "--list-test", action="store_true", help="also list the test half's mistakes (by default only dev's are shown)"
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.train:
        train()
        return
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    rows = [
        r
        for r in load_set()
        if args.split in ("all", r["split"]) and (not args.batch or r.get("batch", 1) in args.batch)
    ]
    mod = moderation()
    result = {} if args.costs else report(rows, mod)
    result["costs"] = costs(rows, mod)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    splits = ("dev", "test", "all") if args.split == "all" else (args.split,)
    _print(result, splits, {"dev"} | ({"test"} if args.list_test else set()))
    c = result["costs"]
    print("\ncosts:", ", ".join(f"{k} {v}" for k, v in c.items()))


if __name__ == "__main__":
    main()
