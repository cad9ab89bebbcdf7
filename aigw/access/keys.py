"""API keys: generation, hashing and the `api_keys` table.

The plain key is returned once by `KeyStore.create` and never stored or logged: the table
keeps its sha256 (to authenticate) and its first 12 characters (to recognise it in a list).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import sqlite_utils

from aigw.errors import InvalidRequest

KEY_PREFIX = "aigw-"
_KEY_BODY_CHARS = 40
PREFIX_CHARS = 12
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
_ID = re.compile(r"key_[0-9a-f]{12}")
_COLUMNS = "id, name, prefix, rpm, tpm, budget_usd, models, created_at, revoked_at, collections"


def generate_key() -> str:
    """A new key: "aigw-" and 40 URL-safe characters (240 random bits)."""
    body = ""
    while len(body) < _KEY_BODY_CHARS:
        body += secrets.token_urlsafe(_KEY_BODY_CHARS)
    return KEY_PREFIX + body[:_KEY_BODY_CHARS]


def hash_key(plain: str) -> str:
    """The stored form of a key: hex sha256.

    A fast hash is enough here: keys carry 240 random bits, so there is nothing to brute-force
    and a slow KDF (bcrypt, scrypt) would only add latency to every authenticated request.
    """
    return hashlib.sha256(plain.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    name: str
    prefix: str
    rpm: int
    tpm: int
    budget_usd: float | None
    models: tuple[str, ...] | None
    created_at: float
    revoked_at: float | None
    collections: tuple[str, ...] = ()
    """RAG collections of others this key may read (its own it may always use)."""

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (never the key itself, which is not kept)."""
        return {
            "id": self.id,
            "name": self.name,
            "prefix": self.prefix,
            "rpm": self.rpm,
            "tpm": self.tpm,
            "budget_usd": self.budget_usd,
            "models": list(self.models) if self.models is not None else None,
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
            "collections": list(self.collections),
        }


def _row_to_key(row: Sequence[Any]) -> ApiKey:
    models = tuple(json.loads(row[6])) if row[6] is not None else None
    return ApiKey(
        id=row[0],
        name=row[1],
        prefix=row[2],
        rpm=int(row[3]),
        tpm=int(row[4]),
        budget_usd=row[5],
        models=models,
        created_at=row[7],
        revoked_at=row[8],
        collections=tuple(json.loads(row[9])) if row[9] else (),
    )


def _check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise InvalidRequest(
            f"key name {name!r} must be 1-64 letters, digits or ._@- and start with a letter or digit",
            param="name",
        )
    if _ID.fullmatch(name):
        raise InvalidRequest(f"key name {name!r} looks like a key id; pick another name", param="name")
    return name


def _check_limit(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidRequest(f"{what} must be a whole number >= 0 (0: unlimited), not {value!r}", param=what)
    return value


def _check_budget(value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise InvalidRequest(f"budget_usd must be a number >= 0, not {value!r}", param="budget_usd")
    return float(value)


def _check_models(models: Iterable[str] | None) -> tuple[str, ...] | None:
    if models is None:
        return None
    if isinstance(models, str):
        raise InvalidRequest("models must be a list of model names, not one string", param="models")
    out: list[str] = []
    for m in models:
        if not isinstance(m, str) or not m.strip():
            raise InvalidRequest(f"models: {m!r} is not a model name", param="models")
        if m.strip() not in out:
            out.append(m.strip())
    if not out:
        raise InvalidRequest("models must name at least one model (omit it to allow all)", param="models")
    return tuple(out)


_COLLECTION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def _check_collections(names: Iterable[str]) -> tuple[str, ...]:
    if isinstance(names, str):
        raise InvalidRequest("collections must be a list of names, not one string", param="collections")
    out: list[str] = []
    for n in names:
        if not isinstance(n, str) or not _COLLECTION.fullmatch(n.strip()):
            raise InvalidRequest(f"collections: {n!r} is not a collection name", param="collections")
        if n.strip() not in out:
            out.append(n.strip())
    return tuple(out)


class Keys(Protocol):
    """Where API keys live: this machine's SQLite (`KeyStore`) or a Redis every instance shares
    (`aigw.state.redis.keys.RedisKeyStore`)."""

    def create(  # noqa: PLR0917
        self,
        name: str,
        rpm: int = 0,
        tpm: int = 0,
        budget_usd: float | None = None,
        models: Iterable[str] | None = None,
        collections: Iterable[str] = (),
    ) -> tuple[ApiKey, str]: ...

    def list(self, include_revoked: bool = False) -> list[ApiKey]: ...

    def get(self, name_or_id: str) -> ApiKey | None: ...

    def revoke(self, name_or_id: str) -> ApiKey: ...

    def by_hash(self, key_hash: str) -> ApiKey | None: ...

    def count_active(self) -> int: ...


def new_key(  # noqa: PLR0917  (the key's fields, as KeyStore.create takes them)
    name: str,
    rpm: int,
    tpm: int,
    budget_usd: float | None,
    models: Iterable[str] | None,
    collections: Iterable[str],
    now: float,
) -> tuple[ApiKey, str]:
    """A new key, its fields checked (each bad one a 400 naming it), and its plain form."""
    plain = generate_key()
    key = ApiKey(
        id="key_" + secrets.token_hex(6),
        name=_check_name(name),
        prefix=plain[:PREFIX_CHARS],
        rpm=_check_limit(rpm, "rpm"),
        tpm=_check_limit(tpm, "tpm"),
        budget_usd=_check_budget(budget_usd),
        models=_check_models(models),
        created_at=now,
        revoked_at=None,
        collections=_check_collections(collections),
    )
    return key, plain


class KeyStore:
    """The `api_keys` table. Safe to share between threads (one lock around the connection)."""

    def __init__(self, db: sqlite_utils.Database, *, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock
        self._lock = threading.Lock()

    def create(  # noqa: PLR0917  (the key's fields, in the order `aigw keys create` shows them)
        self,
        name: str,
        rpm: int = 0,
        tpm: int = 0,
        budget_usd: float | None = None,
        models: Iterable[str] | None = None,
        collections: Iterable[str] = (),
    ) -> tuple[ApiKey, str]:
        """Make a key; return it with the plain key, which cannot be recovered later."""
        key, plain = new_key(name, rpm, tpm, budget_usd, models, collections, self._clock())
        row = (
            key.id,
            key.name,
            hash_key(plain),
            key.prefix,
            key.rpm,
            key.tpm,
            key.budget_usd,
            json.dumps(list(key.models)) if key.models is not None else None,
            key.created_at,
            json.dumps(list(key.collections)) if key.collections else None,
        )
        with self._lock:
            try:
                with self._db.atomic():
                    self._db.execute(
                        "INSERT INTO api_keys (id, name, key_hash, prefix, rpm, tpm, budget_usd, models,"
                        " created_at, collections) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        row,
                    )
            except sqlite3.IntegrityError:
                existing = self._find(name)
                if existing is None:  # an id or hash collision: astronomically unlikely
                    raise
                state = " (revoked; names are not reused)" if existing.revoked_at is not None else ""
                raise InvalidRequest(f"a key named {name!r} already exists{state}", param="name") from None
        return key, plain

    def list(self, include_revoked: bool = False) -> list[ApiKey]:
        where = "" if include_revoked else " WHERE revoked_at IS NULL"
        with self._lock:
            rows = self._db.execute(f"SELECT {_COLUMNS} FROM api_keys{where} ORDER BY created_at, name")
            return [_row_to_key(r) for r in rows.fetchall()]

    def get(self, name_or_id: str) -> ApiKey | None:
        with self._lock:
            return self._find(name_or_id)

    def revoke(self, name_or_id: str) -> ApiKey:
        """Revoke a key by name or id; revoking a revoked key changes nothing."""
        with self._lock:
            key = self._find(name_or_id)
            if key is None:
                raise InvalidRequest(f"no key named {name_or_id!r}", param="name")
            if key.revoked_at is not None:
                return key
            now = self._clock()
            with self._db.atomic():
                self._db.execute(
                    "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (now, key.id)
                )
            found = self._find(key.id)
        assert found is not None
        return found

    def by_hash(self, key_hash: str) -> ApiKey | None:
        """The active key with this hash (see `hash_key`), or None."""
        with self._lock:
            row = self._db.execute(
                f"SELECT {_COLUMNS} FROM api_keys WHERE key_hash = ? AND revoked_at IS NULL", (key_hash,)
            ).fetchone()
        return _row_to_key(row) if row is not None else None

    def count_active(self) -> int:
        with self._lock:
            (n,) = self._db.execute("SELECT COUNT(*) FROM api_keys WHERE revoked_at IS NULL").fetchone()
        return int(n)

    def _find(self, name_or_id: str) -> ApiKey | None:
        row = self._db.execute(
            f"SELECT {_COLUMNS} FROM api_keys WHERE id = ? OR name = ? ORDER BY id = ? DESC LIMIT 1",
            (name_or_id, name_or_id, name_or_id),
        ).fetchone()
        return _row_to_key(row) if row is not None else None
