"""A cheap, stable fingerprint of a local model's weights, for cache keys.

Hashing a multi-gigabyte GGUF on a request path is out of the question, so the fingerprint is the
SHA-256 of each file's name, size and modification time plus its first and last MiB (a GGUF's
header holds its architecture, quantization and tensor layout; the tail, the last weights).
Replacing or re-pulling a model changes it; it is recomputed only when a file's size or mtime
changes, and files are re-examined at most once per `recheck_s`.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path

_EDGE = 1024 * 1024


def _files(path: Path) -> list[Path]:
    if path.is_dir():  # an MLX model directory
        return sorted(p for p in path.iterdir() if p.is_file())
    return [path]


def _stamp(files: list[Path]) -> tuple[tuple[str, int, int], ...]:
    out = []
    for f in files:
        st = f.stat()
        out.append((f.name, st.st_size, st.st_mtime_ns))
    return tuple(out)


def _digest(files: list[Path], stamp: tuple[tuple[str, int, int], ...]) -> str:
    h = hashlib.sha256()
    for f, (name, size, mtime) in zip(files, stamp, strict=True):
        h.update(f"{name}\0{size}\0{mtime}\0".encode())
        with f.open("rb") as fh:
            h.update(fh.read(_EDGE))
            if size > 2 * _EDGE:
                fh.seek(size - _EDGE)
                h.update(fh.read(_EDGE))
    return h.hexdigest()[:32]


class Fingerprints:
    """Memoized fingerprints of model paths (one instance per provider)."""

    def __init__(self, recheck_s: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._recheck_s = recheck_s
        self._clock = clock
        self._known: dict[Path, tuple[float, tuple[tuple[str, int, int], ...], str]] = {}

    def of(self, path: Path) -> str | None:
        """The fingerprint, or None when the model's files cannot be read."""
        now = self._clock()
        known = self._known.get(path)
        if known is not None and now - known[0] < self._recheck_s:
            return known[2]
        try:
            files = _files(path)
            stamp = _stamp(files)
            digest = known[2] if known is not None and known[1] == stamp else _digest(files, stamp)
        except OSError:
            self._known.pop(path, None)
            return None
        self._known[path] = (now, stamp, digest)
        return digest
