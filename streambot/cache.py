"""Arrays that start-up work computes the same way every time, kept on disk.

Some of what a show builds before its first frame depends only on its inputs
(the sketch world's textures on the seed, WordNet's index on its files, the
offensive-language classifier's weights on the installed package), yet costs
seconds of pure-Python or numpy work in the broadcast's process. Here each
such result is a `.npz` file in the cache folder (`paths.cache_dir()`), named
after what it is and a key: a hash of everything the result is made from (the
generating code's own source, the versions of the libraries whose output it
holds, the parameters). Whatever changes the result changes the key, so a
stale file is never read; it is simply not found, rebuilt, and written beside
the others (the oldest of a name are removed, `KEEP` stay).

A file is written whole or not at all (a temporary file renamed into place),
loaded with pickling off, and one that cannot be read (cut short, corrupt, the
wrong key inside) is removed and rebuilt: the cache only ever saves time.
Deleting the folder is always safe. A folder that cannot be written is not an
error either: the result is used and the next start builds it again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from . import paths

log = logging.getLogger(__name__)

KEEP = 4  # files kept per name: a few seeds, sizes or versions side by side
_KEY = "__key__"  # the whole key, stored inside: the file name holds only its start

Arrays = dict[str, np.ndarray]


def folder() -> Path:
    return paths.cache_dir()


def source_of(*modules: ModuleType) -> str:
    """A digest of these modules' source files: any edit to them changes it."""
    h = hashlib.sha256()
    for m in modules:
        assert m.__file__ is not None, f"{m.__name__} has no source file"
        h.update(Path(m.__file__).read_bytes())
    return h.hexdigest()


def key(*parts: object) -> str:
    """A key from the parts' reprs (strings, numbers, tuples of them)."""
    return hashlib.sha256(repr(parts).encode("utf-8")).hexdigest()


def _path(name: str, k: str) -> Path:
    return folder() / f"{name}-{k[:24]}.npz"


def load(name: str, k: str) -> Arrays | None:
    """The arrays stored under (name, key), or None when there are none or they cannot be read."""
    path = _path(name, k)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {n: z[n] for n in z.files}
    except FileNotFoundError:
        return None
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:
        log.warning("cache file %s cannot be read (%s); building it again", path, e)
        _remove(path)
        return None
    stored = arrays.pop(_KEY, None)
    if stored is None or str(stored) != k:
        log.warning("cache file %s holds something else; building it again", path)
        _remove(path)
        return None
    try:
        os.utime(path)  # recently used: kept when old ones are pruned
    except OSError:
        pass
    return arrays


def store(name: str, k: str, arrays: Mapping[str, np.ndarray]) -> Path | None:
    """Write the arrays under (name, key), whole or not at all; None when the folder is not writable."""
    path = _path(name, k)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{name}-", suffix=".tmp", dir=path.parent)
        members: dict[str, Any] = {_KEY: np.array(k), **arrays}
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **members)
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        log.warning("cannot write the cache file %s (%s); the next start builds it again", path, e)
        return None
    finally:
        if tmp is not None:
            _remove(Path(tmp))
    _prune(name)
    return path


def cached(name: str, k: str, build: Callable[[], Mapping[str, np.ndarray]]) -> Arrays:
    """The arrays under (name, key), built (and stored) when there are none."""
    arrays = load(name, k)
    if arrays is not None:
        return arrays
    t0 = time.perf_counter()
    built = dict(build())
    store(name, k, built)
    log.info("built %s in %.2f s and cached it in %s", name, time.perf_counter() - t0, folder())
    return built


def _prune(name: str) -> None:
    try:
        files = sorted(folder().glob(f"{name}-*.npz"), key=lambda p: p.stat().st_mtime, reverse=True)
    except OSError:
        return
    for old in files[KEEP:]:
        _remove(old)


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass
