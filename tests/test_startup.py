"""Start-up: nothing heavy is waited for. The sketch world goes on air on its
keyword matching while the sentence model loads in a process of its own,
then maps prompts by meaning; torch never loads in the broadcast's process."""
from __future__ import annotations

import json
import subprocess
import sys

from .conftest import ROOT

PROBE = r"""
import json, sys, threading, time
from streambot import embeddings
from streambot.config import resolve_world
from streambot.world.sketch import SketchWorld

world = SketchWorld(wait_for_model=False, background=False)
t = time.perf_counter()
world.start(resolve_world("meadow"), (320, 180), 30)
start_s = time.perf_counter() - t
# A paraphrase with none of the concept table's keywords: only the model knows it.
text = "the sun sinks below the horizon"
before = world.target_for(text)
keywords_only = world._mapper.embedder is None
ready = threading.Event()
# Called after the world's own callback (registered in start()), which embeds
# the concept table: once this is set, the world maps by meaning.
embeddings.when_ready(lambda e: ready.set())
frames = 0
while not ready.wait(1 / 30):  # the world keeps rendering meanwhile, at its frame rate
    world.render()
    frames += 1
    if frames > 30 * 600:
        break
after = world.target_for(text)
print(json.dumps({
    "keywords_first": keywords_only, "model_later": world._mapper.embedder is not None,
    "torch_here": "torch" in sys.modules, "frames_while_loading": frames, "start_s": start_s,
    "changed": {k: (round(before[k], 3), round(after[k], 3)) for k in before if abs(before[k] - after[k]) > 0.05},
}))
world.close()
embeddings.close()
"""


def test_the_world_starts_on_keywords_and_the_model_steers_once_loaded(cli_env):
    r = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=cli_env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["keywords_first"] and out["model_later"], out
    assert not out["torch_here"], "the model must load in its own process, not the broadcast's"
    assert out["frames_while_loading"] > 0
    # by meaning the paraphrase brings the sunset (time of day, warmth); by keywords nothing
    assert {"tod", "warmth"} <= set(out["changed"]), out
