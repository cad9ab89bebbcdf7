"""aigw.cache.store: the response store (diskcache on disk, an LRU in memory) with an injected clock."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import diskcache  # type: ignore[import-untyped]
import pytest

from aigw.cache.store import CachedAnswer, ResponseStore, open_store
from aigw.config import CacheConfig

TTL = 3600.0
BIG = 10 * 1024 * 1024


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def stores() -> Iterator[list[ResponseStore]]:
    """Every store a test opens, closed at the end."""
    opened: list[ResponseStore] = []
    yield opened
    for s in opened:
        s.close()


def open_at(
    stores: list[ResponseStore], directory: Path, clock: FakeClock, *, memory_bytes: int = BIG
) -> ResponseStore:
    s = ResponseStore(directory, ttl_s=TTL, max_size_bytes=BIG, memory_bytes=memory_bytes, clock=clock)
    stores.append(s)
    return s


def answer(
    store: ResponseStore, body: bytes = b'{"id":"x"}', target: tuple[str, str] = ("openai", "gpt-4o")
) -> CachedAnswer:
    return store.answer("chat", target, body, (11, 7))


def test_answer_is_stamped_with_the_clock_and_ttl(
    tmp_path: Path, clock: FakeClock, stores: list[ResponseStore]
) -> None:
    s = open_at(stores, tmp_path / "c", clock)
    a = s.answer("embed", ("p", "m"), b"[]", (3, 0))
    assert a == CachedAnswer("embed", "p", "m", b"[]", 3, 0, clock.now, clock.now + TTL)
    assert a.size == 2 + 200


def test_encode_decode_round_trip_keeps_every_field() -> None:
    a = CachedAnswer("chat", "openai", "gpt-4o", b'{"a":1}\n{"b":"\\n"}\n', 12, 34, 1.5, 3601.5)
    assert CachedAnswer.decode(a.encode()) == a


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"garbage", id="no-newline"),
        pytest.param(b"\xff\xfe\x00\n", id="binary-head"),
        pytest.param(b"not json\nbody", id="head-not-json"),
        pytest.param(b"[1,2]\nbody", id="head-not-object"),
        pytest.param(b"{}\nbody", id="head-empty"),
        pytest.param(
            b'{"v":2,"kind":"chat","provider":"p","model":"m","prompt_tokens":1,'
            b'"completion_tokens":1,"stored_at":1,"expires_at":2}\nbody',
            id="other-format-version",
        ),
        pytest.param(b'{"v":1,"kind":"chat"}\nbody', id="missing-fields"),
        pytest.param(
            b'{"v":1,"kind":"chat","provider":"p","model":"m","prompt_tokens":"many",'
            b'"completion_tokens":1,"stored_at":1,"expires_at":2}\nbody',
            id="bad-int",
        ),
        pytest.param(
            b'{"v":1,"kind":"chat","provider":"p","model":"m","prompt_tokens":1,'
            b'"completion_tokens":null,"stored_at":1,"expires_at":2}\nbody',
            id="null-int",
        ),
        pytest.param(
            b'{"v":1,"kind":"chat","provider":"p","model":"m","prompt_tokens":1,'
            b'"completion_tokens":1,"stored_at":1,"expires_at":[]}\nbody',
            id="bad-float",
        ),
    ],
)
def test_decode_of_garbage_is_none(raw: bytes) -> None:
    assert CachedAnswer.decode(raw) is None


def test_put_get_round_trip_from_memory(
    tmp_path: Path, clock: FakeClock, stores: list[ResponseStore]
) -> None:
    s = open_at(stores, tmp_path / "c", clock)
    a = answer(s, b'{"id":"chatcmpl-1","choices":[]}')
    s.put("k1", a, "openai/gpt-4o")
    got = s.get("k1")
    assert got == a
    assert s.get("k2") is None


def test_put_get_round_trip_from_disk(tmp_path: Path, clock: FakeClock, stores: list[ResponseStore]) -> None:
    s = open_at(stores, tmp_path / "c", clock, memory_bytes=0)
    a = answer(s, b'{"id":"chatcmpl-1"}\n')
    s.put("k1", a, "openai/gpt-4o")
    s.flush()
    assert s.stats().memory_entries == 0  # memory_bytes=0: nothing kept in memory, the read is from disk
    assert s.get("k1") == a
    assert s.stats().memory_entries == 0


@pytest.mark.parametrize("memory_bytes", [BIG, 0], ids=["memory", "disk"])
def test_entry_expires_after_ttl(
    tmp_path: Path, clock: FakeClock, stores: list[ResponseStore], memory_bytes: int
) -> None:
    s = open_at(stores, tmp_path / "c", clock, memory_bytes=memory_bytes)
    a = answer(s)
    s.put("k", a, "openai/gpt-4o")
    s.flush()
    clock.now += TTL - 1
    assert s.get("k") == a
    clock.now += 1  # exactly at expires_at: expired
    assert s.get("k") is None
    clock.now += 1000
    assert s.get("k") is None


def test_entries_persist_across_reopen_and_expire_by_the_clock(
    tmp_path: Path, clock: FakeClock, stores: list[ResponseStore]
) -> None:
    d = tmp_path / "c"
    s = open_at(stores, d, clock)
    a = answer(s, b'{"first":1}')
    b = answer(s, b'{"second":2}', ("anthropic", "claude"))
    s.put("a", a, "openai/gpt-4o")
    s.put("b", b, "anthropic/claude")
    s.flush()
    s.close()
    assert (d / "cache.db").is_file()

    fresh = open_at(stores, d, clock, memory_bytes=0)
    assert fresh.available
    assert fresh.get("a") == a
    assert fresh.get("b") == b
    assert fresh.stats().entries == 2
    clock.now += TTL
    assert fresh.get("a") is None


def test_flush_then_a_second_store_on_the_same_directory_sees_the_entry(
    tmp_path: Path, clock: FakeClock, stores: list[ResponseStore]
) -> None:
    d = tmp_path / "c"
    writer = open_at(stores, d, clock)
    reader = open_at(stores, d, clock, memory_bytes=0)
    a = answer(writer)
    writer.put("k", a, "openai/gpt-4o")
    writer.flush()
    assert reader.get("k") == a


def test_memory_lru_evicts_the_least_recently_used_but_disk_still_answers(
    tmp_path: Path, clock: FakeClock, stores: list[ResponseStore]
) -> None:
    d = tmp_path / "c"
    s = open_at(stores, d, clock, memory_bytes=3000)  # ten entries of 300 bytes fit
    answers = {f"k{i}": answer(s, b"x" * 98 + f"{i:02d}".encode()) for i in range(10)}
    for k, a in answers.items():
        s.put(k, a, "openai/gpt-4o")
    s.flush()
    assert s.stats().memory_entries == 10
    assert s.get("k0") == answers["k0"]  # k0 is now the most recently used; k1 the least
    extra = {f"e{i}": answer(s, b"e" * 98 + f"{i:02d}".encode()) for i in range(2)}
    for k, a in extra.items():
        s.put(k, a, "openai/gpt-4o")
    s.flush()
    st = s.stats()
    assert st.memory_entries == 10
    assert st.memory_bytes == 3000
    assert st.entries == 12

    # Empty the disk behind the store's back: now only what memory holds can answer.
    raw = diskcache.Cache(str(d))
    try:
        assert raw.clear() == 12
    finally:
        raw.close()
    in_memory = {k for k in [*answers, *extra] if s.get(k) is not None}
    assert in_memory == {"k0", *[f"k{i}" for i in range(3, 10)], "e0", "e1"}


def test_evicted_entries_are_read_back_from_disk(
    tmp_path: Path, clock: FakeClock, stores: list[ResponseStore]
) -> None:
    s = open_at(stores, tmp_path / "c", clock, memory_bytes=3000)
    answers = {f"k{i}": answer(s, b"y" * 98 + f"{i:02d}".encode()) for i in range(25)}
    for k, a in answers.items():
        s.put(k, a, "openai/gpt-4o")
    s.flush()
    assert s.stats().memory_entries == 10
    for k, a in answers.items():
        assert s.get(k) == a, k
    assert s.stats().memory_entries == 10


def test_an_answer_too_big_for_memory_goes_only_to_disk(
    tmp_path: Path, clock: FakeClock, stores: list[ResponseStore]
) -> None:
    s = open_at(stores, tmp_path / "c", clock, memory_bytes=8000)  # at most 1000 bytes per entry
    small = answer(s, b"s" * 100)
    huge = answer(s, b"h" * 5000)
    s.put("small", small, "p/m")
    s.put("huge", huge, "p/m")
    s.flush()
    assert s.stats().memory_entries == 1
    assert s.get("huge") == huge
    assert s.get("small") == small


def test_put_replaces_an_entry_even_when_the_new_answer_is_too_big_for_memory(
    tmp_path: Path, clock: FakeClock, stores: list[ResponseStore]
) -> None:
    s = open_at(stores, tmp_path / "c", clock, memory_bytes=8000)
    old = answer(s, b"old")
    s.put("k", old, "p/m")
    s.flush()
    clock.now += 10
    new = answer(s, b"n" * 5000)
    s.put("k", new, "p/m")
    s.flush()
    assert s.get("k") == new


def test_put_replaces_an_entry(tmp_path: Path, clock: FakeClock, stores: list[ResponseStore]) -> None:
    d = tmp_path / "c"
    s = open_at(stores, d, clock)
    s.put("k", answer(s, b"old"), "p/m")
    clock.now += 10
    new = answer(s, b"new")
    s.put("k", new, "p/m")
    s.flush()
    assert s.get("k") == new
    assert open_at(stores, d, clock, memory_bytes=0).get("k") == new
    assert s.stats().entries == 1


def _fill(s: ResponseStore) -> dict[str, tuple[CachedAnswer, str]]:
    entries = {
        "a1": (answer(s, b"1", ("openai", "gpt-4o")), "openai/gpt-4o"),
        "a2": (answer(s, b"2", ("openai", "gpt-4o")), "openai/gpt-4o"),
        "b1": (answer(s, b"3", ("openai", "gpt-4o-mini")), "openai/gpt-4o-mini"),
        "c1": (answer(s, b"4", ("anthropic", "claude")), "anthropic/claude"),
    }
    for k, (a, tag) in entries.items():
        s.put(k, a, tag)
    s.flush()
    return entries


@pytest.mark.parametrize("memory_bytes", [BIG, 0], ids=["memory", "disk"])
def test_clear_by_tag_removes_only_that_tag(
    tmp_path: Path, clock: FakeClock, stores: list[ResponseStore], memory_bytes: int
) -> None:
    d = tmp_path / "c"
    s = open_at(stores, d, clock, memory_bytes=memory_bytes)
    entries = _fill(s)
    assert s.clear({"openai/gpt-4o"}) == 2
    assert s.get("a1") is None
    assert s.get("a2") is None
    assert s.get("b1") == entries["b1"][0]
    assert s.get("c1") == entries["c1"][0]
    assert s.stats().entries == 2
    # the disk agrees
    other = open_at(stores, d, clock, memory_bytes=0)
    assert other.get("a1") is None
    assert other.get("b1") == entries["b1"][0]

    assert s.clear(["openai/gpt-4o-mini", "anthropic/claude", "nobody/none"]) == 2
    assert s.stats().entries == 0
    assert s.get("b1") is None
    assert s.get("c1") is None


def test_clear_by_bare_model_name_matches_any_provider(
    tmp_path: Path, clock: FakeClock, stores: list[ResponseStore]
) -> None:
    s = open_at(stores, tmp_path / "c", clock)
    entries = _fill(s)
    also = answer(s, b"5", ("azure", "gpt-4o"))
    s.put("d1", also, "azure/gpt-4o")
    assert s.clear(["gpt-4o"]) == 3  # openai's two and azure's one; not gpt-4o-mini
    for k in ("a1", "a2", "d1"):
        assert s.get(k) is None, k
    assert s.get("b1") == entries["b1"][0]
    assert s.get("c1") == entries["c1"][0]
    assert s.stats().entries == 2
    assert s.clear(["claude-unknown", "openai"]) == 0  # neither a model nor a tag
    assert s.stats().entries == 2


def test_clear_by_model_in_another_process_after_the_writer_is_gone(
    tmp_path: Path, clock: FakeClock, stores: list[ResponseStore]
) -> None:
    """`aigw cache clear --model` without a daemon opens the store afresh: it learns which models
    have entries from what the daemon's writer recorded, not from memory."""
    d = tmp_path / "c"
    s = open_at(stores, d, clock)
    _fill(s)
    s.close()
    fresh = open_at(stores, d, clock, memory_bytes=0)
    assert fresh.clear(["gpt-4o"]) == 2
    assert fresh.stats().entries == 2
    again = open_at(stores, d, clock, memory_bytes=0)
    assert again.clear(["anthropic/claude"]) == 1 and again.stats().entries == 1


def test_clear_all(tmp_path: Path, clock: FakeClock, stores: list[ResponseStore]) -> None:
    s = open_at(stores, tmp_path / "c", clock)
    entries = _fill(s)
    assert s.stats().memory_entries == 4
    assert s.clear() == 4
    st = s.stats()
    assert (st.entries, st.memory_entries, st.memory_bytes) == (0, 0, 0)
    for k in entries:
        assert s.get(k) is None
    assert s.clear() == 0


def test_clear_waits_for_pending_writes(
    tmp_path: Path, clock: FakeClock, stores: list[ResponseStore]
) -> None:
    s = open_at(stores, tmp_path / "c", clock)
    for i in range(50):
        s.put(f"k{i}", answer(s, str(i).encode()), "p/m")
    assert s.clear({"p/m"}) == 50  # no flush(): clear() itself waits for the writer
    assert s.stats().entries == 0


def test_stats(tmp_path: Path, clock: FakeClock, stores: list[ResponseStore]) -> None:
    s = open_at(stores, tmp_path / "c", clock)
    empty = s.stats()
    assert (empty.entries, empty.memory_entries, empty.memory_bytes) == (0, 0, 0)
    assert empty.available is True
    assert empty.max_size_bytes == BIG
    body = b"z" * 40_000  # large enough for diskcache to keep it in a file of its own
    for i in range(3):
        s.put(f"k{i}", answer(s, body + str(i).encode()), "p/m")
    s.flush()
    st = s.stats()
    assert st.entries == 3
    assert st.memory_entries == 3
    assert st.memory_bytes == 3 * (len(body) + 1 + 200)
    assert st.size_bytes >= empty.size_bytes + 3 * len(body)


def test_corrupt_cache_file_is_moved_aside_and_replaced(
    tmp_path: Path, clock: FakeClock, stores: list[ResponseStore], caplog: pytest.LogCaptureFixture
) -> None:
    d = tmp_path / "respcache"
    d.mkdir()
    garbage = b"this is not an SQLite database\x00\xff" * 512
    (d / "cache.db").write_bytes(garbage)
    with caplog.at_level(logging.ERROR, logger="aigw.cache"):
        s = open_at(stores, d, clock)
    assert s.available
    assert s.stats().entries == 0
    assert s.get("anything") is None
    aside = sorted(tmp_path.glob("respcache.corrupt-*"))
    assert len(aside) == 1
    assert aside[0].is_dir()
    assert aside[0].name.removeprefix("respcache.corrupt-").isdigit()
    assert (aside[0] / "cache.db").read_bytes() == garbage
    errors = [r for r in caplog.records if r.name == "aigw.cache" and r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "damaged" in errors[0].getMessage()
    assert str(aside[0]) in errors[0].getMessage()
    # and the new one works
    a = answer(s)
    s.put("k", a, "p/m")
    s.flush()
    assert open_at(stores, d, clock, memory_bytes=0).get("k") == a


def test_corruption_found_at_run_time_is_recovered(
    tmp_path: Path, clock: FakeClock, stores: list[ResponseStore], caplog: pytest.LogCaptureFixture
) -> None:
    d = tmp_path / "respcache"
    s = open_at(stores, d, clock, memory_bytes=0)
    s.put("k", answer(s), "p/m")
    s.flush()
    for f in d.glob("cache.db*"):
        f.write_bytes(b"garbage!" * 1024)
    with caplog.at_level(logging.ERROR, logger="aigw.cache"):
        assert s.get("k") is None  # a miss, not an exception
    assert s.available
    assert len(list(tmp_path.glob("respcache.corrupt-*"))) == 1
    assert any("damaged" in r.getMessage() for r in caplog.records if r.name == "aigw.cache")
    a = answer(s, b"after")
    s.put("k2", a, "p/m")
    s.flush()
    assert s.get("k2") == a


def _unusable_store_checks(s: ResponseStore, caplog: pytest.LogCaptureFixture) -> None:
    assert s.available is False
    assert s.get("k") is None
    s.put("k2", CachedAnswer("chat", "p", "m", b"{}", 1, 1, 0.0, 1e12), "p/m")  # must not raise
    s.flush()
    assert s.clear() == 0
    assert s.clear({"p/m"}) == 0
    st = s.stats()
    assert (st.available, st.entries, st.size_bytes) == (False, 0, 0)
    errors = [r for r in caplog.records if r.name == "aigw.cache" and r.levelno == logging.ERROR]
    assert any("cannot be opened" in r.getMessage() for r in errors)


def test_cache_path_that_is_a_regular_file_leaves_the_store_unavailable(
    tmp_path: Path, clock: FakeClock, stores: list[ResponseStore], caplog: pytest.LogCaptureFixture
) -> None:
    f = tmp_path / "not-a-dir"
    f.write_bytes(b"keep me")
    with caplog.at_level(logging.ERROR, logger="aigw.cache"):
        s = open_at(stores, f, clock)
    _unusable_store_checks(s, caplog)
    assert f.read_bytes() == b"keep me"  # not treated as corruption: nothing moved aside
    assert list(tmp_path.glob("not-a-dir.corrupt-*")) == []


def test_cache_path_inside_a_regular_file_leaves_the_store_unavailable(
    tmp_path: Path, clock: FakeClock, stores: list[ResponseStore], caplog: pytest.LogCaptureFixture
) -> None:
    f = tmp_path / "a-file"
    f.write_bytes(b"keep me")
    with caplog.at_level(logging.ERROR, logger="aigw.cache"):
        s = open_at(stores, f / "cache", clock)  # cannot even be created
    _unusable_store_checks(s, caplog)
    assert f.read_bytes() == b"keep me"


@pytest.mark.skipif(os.geteuid() == 0, reason="root can open a directory with mode 0")
def test_cache_directory_without_permissions_leaves_the_store_unavailable(
    tmp_path: Path, clock: FakeClock, stores: list[ResponseStore], caplog: pytest.LogCaptureFixture
) -> None:
    d = tmp_path / "locked"
    d.mkdir()
    d.chmod(0)
    try:
        with caplog.at_level(logging.ERROR, logger="aigw.cache"):
            s = open_at(stores, d, clock)
        _unusable_store_checks(s, caplog)
        assert list(tmp_path.glob("locked.corrupt-*")) == []
    finally:
        d.chmod(0o700)


def test_open_store_uses_the_config(tmp_path: Path, clock: FakeClock, stores: list[ResponseStore]) -> None:
    s = open_store(tmp_path / "c", CacheConfig(ttl_s=60, max_size_mb=2, memory_mb=0.5), clock)
    stores.append(s)
    assert s.ttl_s == 60.0
    assert s.max_size_bytes == 2 * 1024 * 1024
    assert s.stats().max_size_bytes == 2 * 1024 * 1024
    a = s.answer("chat", ("p", "m"), b"{}", (0, 0))
    assert a.expires_at - a.stored_at == 60.0
