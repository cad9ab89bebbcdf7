"""aigw.access.keys: generating, hashing, storing, revoking and finding API keys."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlite_utils

from aigw.access.keys import KeyStore, generate_key, hash_key
from aigw.errors import InvalidRequest
from aigw.state.db import open_db


@pytest.fixture
def db(tmp_path: Path) -> Iterator[sqlite_utils.Database]:
    d = open_db(tmp_path / "aigw.db")
    yield d
    d.close()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        self.now += 1
        return self.now


def test_generate_key_shape_and_uniqueness() -> None:
    keys = {generate_key() for _ in range(200)}
    assert len(keys) == 200
    for k in keys:
        assert re.fullmatch(r"aigw-[A-Za-z0-9_-]{40}", k), k


def test_hash_key_is_hex_sha256() -> None:
    assert hash_key("aigw-x") == hashlib.sha256(b"aigw-x").hexdigest()


def test_create_and_find_by_hash(db: sqlite_utils.Database) -> None:
    store = KeyStore(db, clock=FakeClock())
    key, plain = store.create("ci", rpm=60, tpm=10_000, budget_usd=5, models=["gpt-4o", "smart", "gpt-4o"])
    assert re.fullmatch(r"key_[0-9a-f]{12}", key.id)
    assert key.prefix == plain[:12] and plain.startswith("aigw-")
    assert (key.rpm, key.tpm, key.budget_usd, key.models) == (60, 10_000, 5.0, ("gpt-4o", "smart"))
    assert key.created_at == 1_700_000_001.0 and key.revoked_at is None and key.active
    assert store.by_hash(hash_key(plain)) == key
    assert store.by_hash(hash_key(plain + "x")) is None
    assert db.table("api_keys").get(key.id)["key_hash"] == hash_key(plain)


def test_defaults_allow_everything(db: sqlite_utils.Database) -> None:
    key, _ = KeyStore(db).create("dev")
    assert (key.rpm, key.tpm, key.budget_usd, key.models) == (0, 0, None, None)


def test_list_revoke_and_count(db: sqlite_utils.Database) -> None:
    store = KeyStore(db, clock=FakeClock())
    a, plain_a = store.create("a")
    b, _ = store.create("b")
    assert [k.name for k in store.list()] == ["a", "b"]
    assert store.count_active() == 2
    revoked = store.revoke("a")
    assert revoked.revoked_at is not None and not revoked.active
    assert store.by_hash(hash_key(plain_a)) is None
    assert [k.name for k in store.list()] == ["b"]
    assert [k.name for k in store.list(include_revoked=True)] == ["a", "b"]
    assert store.count_active() == 1
    # Idempotent: the first revocation time stays.
    assert store.revoke("a").revoked_at == revoked.revoked_at
    assert store.revoke(b.id).revoked_at is not None
    assert store.count_active() == 0
    assert store.get(a.id) == revoked


def test_revoke_unknown(db: sqlite_utils.Database) -> None:
    with pytest.raises(InvalidRequest, match="no key named 'ghost'"):
        KeyStore(db).revoke("ghost")


def test_duplicate_names_are_refused(db: sqlite_utils.Database) -> None:
    store = KeyStore(db)
    store.create("ci")
    with pytest.raises(InvalidRequest, match="a key named 'ci' already exists"):
        store.create("ci")
    store.revoke("ci")
    with pytest.raises(InvalidRequest, match="revoked"):
        store.create("ci")
    assert len(store.list(include_revoked=True)) == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": ""}, "key name"),
        ({"name": "has space"}, "key name"),
        ({"name": "x" * 65}, "key name"),
        ({"name": "key_0123456789ab"}, "looks like a key id"),
        ({"name": "ok", "rpm": -1}, "rpm must be"),
        ({"name": "ok", "tpm": 1.5}, "tpm must be"),
        ({"name": "ok", "budget_usd": -0.01}, "budget_usd must be"),
        ({"name": "ok", "budget_usd": float("nan")}, "budget_usd must be"),
        ({"name": "ok", "models": []}, "at least one model"),
        ({"name": "ok", "models": ["a", " "]}, "not a model name"),
        ({"name": "ok", "models": "gpt-4o"}, "not one string"),
    ],
)
def test_bad_values_are_clear_errors(
    db: sqlite_utils.Database, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidRequest, match=message):
        KeyStore(db).create(**kwargs)  # type: ignore[arg-type]
    assert KeyStore(db).list(include_revoked=True) == []


def test_plain_key_is_never_in_the_database_file(tmp_path: Path) -> None:
    path = tmp_path / "aigw.db"
    db = open_db(path)
    store = KeyStore(db)
    plains = [store.create(f"k{i}", models=["m"])[1] for i in range(5)]
    store.revoke("k0")

    def all_bytes() -> bytes:
        return b"".join(p.read_bytes() for p in tmp_path.glob("aigw.db*"))

    for plain in plains:
        assert plain.encode() not in all_bytes()  # WAL included, while open
        assert plain[:12].encode() in all_bytes()  # the display prefix is kept
    db.close()
    data = path.read_bytes()
    for plain in plains:
        assert plain.encode() not in data
        assert plain[5:].encode() not in data
        assert hash_key(plain).encode() in data
