"""Local model fingerprints: stable for the same weights, different for replaced ones."""

from __future__ import annotations

import os
from pathlib import Path

from aigw.local.fingerprint import Fingerprints


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_same_file_same_fingerprint_and_a_replaced_file_a_new_one(tmp_path: Path) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF" + os.urandom(3 * 1024 * 1024))
    clock = Clock()
    fp = Fingerprints(recheck_s=1.0, clock=clock)
    first = fp.of(model)
    assert first is not None and first == fp.of(model)
    model.write_bytes(b"GGUF" + os.urandom(3 * 1024 * 1024))  # re-pulled: same name, new weights
    assert fp.of(model) == first  # re-examined at most once per recheck_s
    clock.t = 2.0
    second = fp.of(model)
    assert second is not None and second != first
    assert Fingerprints().of(model) == second  # a fresh memo agrees: it depends on the file only


def test_a_tail_change_is_seen_even_with_the_same_size_and_mtime(tmp_path: Path) -> None:
    model = tmp_path / "m.gguf"
    data = bytearray(os.urandom(5 * 1024 * 1024))
    model.write_bytes(bytes(data))
    st = model.stat()
    before = Fingerprints().of(model)
    data[-10] ^= 0xFF
    model.write_bytes(bytes(data))
    os.utime(model, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert Fingerprints().of(model) != before


def test_model_directories_and_missing_files(tmp_path: Path) -> None:
    d = tmp_path / "mlx-model"
    d.mkdir()
    (d / "config.json").write_text('{"a": 1}')
    (d / "model.safetensors").write_bytes(os.urandom(1000))
    before = Fingerprints().of(d)
    assert before is not None
    (d / "config.json").write_text('{"a": 2}')
    assert Fingerprints().of(d) != before
    assert Fingerprints().of(tmp_path / "nope.gguf") is None
