"""Stored Responses: per key, bounded by count and age, deleted on request."""

from __future__ import annotations

from pathlib import Path

from aigw.state.db import open_db
from aigw.state.responses import StoredResponses


def store(tmp_path: Path, **kw: float) -> tuple[StoredResponses, list[float]]:
    open_db(tmp_path / "aigw.db").close()
    now = [1000.0]
    return StoredResponses(tmp_path / "aigw.db", clock=lambda: now[0], **kw), now  # type: ignore[arg-type]


def test_a_response_belongs_to_its_key(tmp_path: Path) -> None:
    s, _ = store(tmp_path)
    s.put("resp_1", "k1", [{"role": "user", "content": "hi"}], {"id": "resp_1"})
    assert s.messages("resp_1", "k1") == [{"role": "user", "content": "hi"}]
    assert s.response("resp_1", "k1") == {"id": "resp_1"}
    assert s.messages("resp_1", "k2") is None and s.response("resp_1", None) is None
    assert s.response("resp_1", None, admin=True) == {"id": "resp_1"}
    assert not s.delete("resp_1", "k2")
    assert s.delete("resp_1", "k1") and s.response("resp_1", "k1") is None
    s.close()


def test_retention_is_bounded_by_count_and_age(tmp_path: Path) -> None:
    s, now = store(tmp_path, max_rows=3, max_age_s=100, prune_every=1)
    for i in range(5):
        now[0] += 1
        s.put(f"r{i}", None, [], {"n": i})
    kept = [i for i in range(5) if s.response(f"r{i}", None) is not None]
    assert kept == [2, 3, 4]  # the newest max_rows
    now[0] += 1000
    s.put("last", None, [], {})
    assert s.response("last", None) == {}
    assert all(s.response(f"r{i}", None) is None for i in range(5))  # older than max_age_s
    s.close()
