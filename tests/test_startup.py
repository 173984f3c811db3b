"""Start-up: nothing heavy is waited for. The sketch world goes on air on its
keyword matching while the sentence model loads in a process of its own,
then maps prompts by meaning; torch never loads in the broadcast's process."""

from __future__ import annotations

import json
import subprocess
import sys

from .conftest import ROOT


def run_probe(program: str, *args: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run a probe program in a fresh interpreter, which must succeed."""
    r = subprocess.run(
        [sys.executable, "-c", program, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert r.returncode == 0, r.stderr[-2000:]
    return r


def probe(program: str, *args: str, env: dict[str, str], timeout: float) -> dict:
    """`run_probe`, and the JSON object the program printed last."""
    r = run_probe(program, *args, env=env, timeout=timeout)
    return json.loads(r.stdout.strip().splitlines()[-1])


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
    out = probe(PROBE, env=cli_env, timeout=300)
    assert out["keywords_first"] and out["model_later"], out
    assert not out["torch_here"], "the model must load in its own process, not the broadcast's"
    assert out["frames_while_loading"] > 0
    # by meaning the paraphrase brings the sunset (time of day, warmth); by keywords nothing
    assert {"tod", "warmth"} <= set(out["changed"]), out


SHOW_PROBE = r"""
import json, sys, threading
from streambot.app import Show, ShowOptions, build_world
from streambot.config import load_settings, resolve_world

settings = load_settings(None)
settings.stream.size = "320x180"
out = sys.argv[1]
show = Show(settings, resolve_world("meadow"), build_world(settings), ShowOptions(outputs=[out], chat_source=None))
show.open()
safety = show.audience.moderation.safety
from streambot.pooling import lemma
from PIL import Image
opened = {
    "torch_here": "torch" in sys.modules, "model_pending": safety.model_pending,
    # loaded before the first tick, not by the first prompt or preview on air
    "lemmas_ready": lemma.cache_info().currsize > 0, "jpeg_ready": "JPEG" in Image.SAVE,
}
# The streamer's own prompt does not wait for the model (it runs on the event loop).
opened["streamer_prompt"] = show.audience.moderation.check_text("a hot air balloon over the valley")
opened["pending_after_streamer_prompt"] = safety.model_pending
# Two viewers' prompts: only the semantic layer refuses the first.
aud = show.audience
aud.chat("twitch", "viewer1", "!p someone jumps off a bridge to end their life")
aud.chat("twitch", "viewer2", "!p a lantern festival on the river")
pooled = threading.Thread(target=aud.engine.pool)  # as Audience.run does, off the loop
pooled.start()
shown_while_loading = [c.text for c in aud.snapshot().candidates]
pooled.join(600)
after = {
    "shown": [c.text for c in aud.snapshot().candidates],
    "refused": {f"{k[0]}:{k[1]}": v for k, v in aud.moderation.refused.items()},
    "torch_here": "torch" in sys.modules, "model_pending": safety.model_pending,
}
show.close()
print(json.dumps({"opened": opened, "shown_while_loading": shown_while_loading, "after": after}))
"""


def test_the_show_opens_without_the_model_and_holds_candidates_for_the_safety_screen(cli_env, tmp_path):
    """`streambot run`'s Show opens with the sentence model still loading in
    its own process (torch never here): the streamer's own prompt goes through
    at once, viewers' candidates stay hidden until the semantic safety layer
    can judge them, and then it refuses what only it can see."""
    out = probe(SHOW_PROBE, str(tmp_path / "out.flv"), env=cli_env, timeout=900)
    opened, after = out["opened"], out["after"]
    assert not opened["torch_here"] and opened["model_pending"], out
    assert opened["lemmas_ready"] and opened["jpeg_ready"], "the word tools and codecs load before the first tick"
    assert opened["streamer_prompt"] == "a hot air balloon over the valley"
    assert opened["pending_after_streamer_prompt"], "the streamer's prompt must not wait for the model"
    assert out["shown_while_loading"] == [], "candidates stay hidden until screened"
    assert not after["model_pending"] and not after["torch_here"], after
    assert after["shown"] == ["a lantern festival on the river"], after
    assert after["refused"] == {"semantic:self_harm": 1}, after


VOICE_PROBE = r"""
import asyncio, json, logging, sys
from streambot.app import Show, ShowOptions, build_world
from streambot.config import load_settings, resolve_world

settings = load_settings(None, {
    "stream": {"size": "320x180", "fps": 15},
    "world": {"sketch": {"embedder": None}}, "moderation": {"semantic": False},  # no sentence model: voice alone
    "voting": {"pool_embeddings": False, "timeline": sys.argv[2]},
})
options = ShowOptions(outputs=[sys.argv[1]], chat_source=None)
show = Show(settings, resolve_world("meadow"), build_world(settings), options)
logging.basicConfig(level=logging.INFO)

async def main():
    await asyncio.to_thread(show.open)
    opened = {"voice": show.voice is not None}  # nothing of voice before the show is on air
    running = asyncio.create_task(show.run())
    while show.voice is None and not running.done():
        await asyncio.sleep(0.01)
    on_air = {"state": show.voice.state, "ticks": show.broadcast.health().ticks}
    ready = await asyncio.to_thread(show.voice.wait_ready, 600)
    heavy = ("ctranslate2", "faster_whisper", "onnxruntime", "tokenizers")
    after = {"ready": ready, "ticks": show.broadcast.health().ticks, "here": [m for m in heavy if m in sys.modules]}
    show.stop()
    await running
    print(json.dumps({"opened": opened, "on_air": on_air, "after": after}))

asyncio.run(main())
"""


def test_the_speech_model_loads_in_its_own_process_once_on_air(cli_env, tmp_path):
    """Voice is built once the show is on air, and its model (faster-whisper, ctranslate2)
    loads in a process of its own: the show's clock runs while it loads, and none of it is
    imported into the broadcast's process."""
    r = run_probe(VOICE_PROBE, str(tmp_path / "out.flv"), str(tmp_path / "timeline.sqlite3"), env=cli_env, timeout=900)
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert not out["opened"]["voice"], out
    assert out["on_air"]["state"] == "loading", out
    after = out["after"]
    assert after["ready"] and after["ticks"] > out["on_air"]["ticks"], out
    assert after["here"] == [], "the speech model must load in its own process, not the broadcast's"
    assert "the speech model is ready" in r.stderr, r.stderr[-2000:]


LEAN_PROBE = r"""
import importlib.util, json, multiprocessing as mp, sys, types

# the command line as `python -m streambot.cli` leaves it: its module is __main__
spec = importlib.util.find_spec("streambot.cli")
main = types.ModuleType("__main__")
main.__spec__, main.__file__, main.__package__ = spec, spec.origin, "streambot"
sys.modules["__main__"] = main
from streambot.children import lean_children

seen = {}
ctx = mp.get_context("spawn")
for lean in (False, True):
    if lean:
        lean_children()
    with ctx.Pool(1) as pool:
        seen["lean" if lean else "plain"] = pool.apply(eval, ("sorted(__import__('sys').modules)",))
print(json.dumps(seen))
"""


def test_children_do_not_run_the_command_line_again(cli_env):
    """A spawned child imports the parent's main module first; the command line's (click,
    every setting's model) is left out of the show's children, which start with the show."""
    seen = probe(LEAN_PROBE, env=cli_env, timeout=120)
    assert "click" in seen["plain"] and "streambot.config" in seen["plain"]  # what a plain spawn costs
    assert "click" not in seen["lean"] and "streambot.config" not in seen["lean"], seen["lean"]
