"""API keys every instance shares, in Redis: `aigw keys create` on any instance (or its machine)
makes a key every instance accepts, and revoking it anywhere stops it everywhere at once (a message
on the keys channel clears each instance's key cache).

Each key is a JSON record under `{prefix:keys}:id:ID`; `...:name:NAME` and `...:hash:SHA256` find
it (the hash entry exists only while the key is active); `...:all` lists the ids. One hash tag, so
a Redis Cluster keeps them in one slot. Plain keys are never stored (see `aigw.access.keys`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from aigw.access.keys import ApiKey, hash_key, new_key
from aigw.errors import InvalidRequest, ServiceUnavailable

if TYPE_CHECKING:
    import redis

    from aigw.state.redis.conn import SharedState

log = logging.getLogger("aigw.state")


def _text(value: bytes | str | None) -> str | None:
    """A Redis reply as text (the client decodes replies; bytes only from another client's setup)."""
    return value.decode() if isinstance(value, bytes) else value


def _from_json(raw: str) -> ApiKey:
    d = json.loads(raw)
    models = d.get("models")
    return ApiKey(
        id=d["id"], name=d["name"], prefix=d["prefix"], rpm=int(d["rpm"]), tpm=int(d["tpm"]),
        budget_usd=d.get("budget_usd"), models=tuple(models) if models is not None else None,
        created_at=float(d["created_at"]), revoked_at=d.get("revoked_at"),
        collections=tuple(d.get("collections") or ()),
    )  # fmt: skip


class RedisKeyStore:
    """The KeyStore interface (`aigw.access.keys.KeyStore`) on the shared Redis."""

    def __init__(self, state: SharedState, *, clock: Callable[[], float] = time.time) -> None:
        self._state = state
        self._r = state.client
        self._clock = clock
        self.channel = state.name("keys", "changed")

    def _n(self, *rest: str) -> str:
        return self._state.name("keys", *rest)

    def _do(self, fn: Callable[[redis.Redis], Any]) -> Any:
        """`fn(client)`, a Redis failure a 503 (keys have no local copy to fall back on)."""
        try:
            return fn(self._r)
        except self._state.errors as e:
            raise ServiceUnavailable(
                f"the shared state (Redis) is unreachable ({type(e).__name__}): API keys cannot be read",
                retry_after=1,
            ) from None

    def create(  # noqa: PLR0917  (as KeyStore.create)
        self,
        name: str,
        rpm: int = 0,
        tpm: int = 0,
        budget_usd: float | None = None,
        models: Iterable[str] | None = None,
        collections: Iterable[str] = (),
    ) -> tuple[ApiKey, str]:
        key, plain = new_key(name, rpm, tpm, budget_usd, models, collections, self._clock())
        record = json.dumps(key.to_dict())

        def write(r: redis.Redis) -> bool:
            if not r.set(self._n("name", key.name), key.id, nx=True):
                return False
            pipe = r.pipeline(transaction=True)
            pipe.set(self._n("id", key.id), record)
            pipe.set(self._n("hash", hash_key(plain)), record)
            pipe.set(self._n("idhash", key.id), hash_key(plain))
            pipe.sadd(self._n("all"), key.id)
            pipe.publish(self.channel, key.id)
            pipe.execute()
            return True

        if not self._do(write):
            existing = self.get(name)
            state = " (revoked; names are not reused)" if existing is not None and existing.revoked_at else ""
            raise InvalidRequest(f"a key named {name!r} already exists{state}", param="name")
        return key, plain

    def list(self, include_revoked: bool = False) -> list[ApiKey]:
        def read(r: redis.Redis) -> list[str | None]:
            ids = sorted(str(_text(i)) for i in r.smembers(self._n("all")))
            return [_text(v) for v in r.mget([self._n("id", i) for i in ids])] if ids else []

        keys = [_from_json(raw) for raw in self._do(read) if raw]
        keys = [k for k in keys if include_revoked or k.revoked_at is None]
        return sorted(keys, key=lambda k: (k.created_at, k.name))

    def get(self, name_or_id: str) -> ApiKey | None:
        def read(r: redis.Redis) -> str | None:
            raw = _text(r.get(self._n("id", name_or_id)))
            if raw is None and (key_id := _text(r.get(self._n("name", name_or_id)))) is not None:
                raw = _text(r.get(self._n("id", key_id)))
            return raw

        raw = self._do(read)
        return _from_json(raw) if raw else None

    def revoke(self, name_or_id: str) -> ApiKey:
        key = self.get(name_or_id)
        if key is None:
            raise InvalidRequest(f"no key named {name_or_id!r}", param="name")
        if key.revoked_at is not None:
            return key
        revoked = replace(key, revoked_at=self._clock())

        def write(r: redis.Redis) -> None:
            digest = _text(r.get(self._n("idhash", key.id)))
            pipe = r.pipeline(transaction=True)
            pipe.set(self._n("id", key.id), json.dumps(revoked.to_dict()))
            if digest is not None:
                pipe.delete(self._n("hash", digest))
            pipe.publish(self.channel, key.id)
            pipe.execute()

        self._do(write)
        return revoked

    def by_hash(self, key_hash: str) -> ApiKey | None:
        """The active key with this hash, or None (one GET)."""
        raw = self._do(lambda r: _text(r.get(self._n("hash", key_hash))))
        return _from_json(raw) if raw else None

    def count_active(self) -> int:
        return len(self.list())

    def watch(self, changed: Callable[[], None]) -> Callable[[], None]:
        """Call `changed` (on a thread of its own) whenever any instance creates or revokes a key,
        and when the watch (re)starts; returns how to stop watching."""
        return self._state.subscribe(self.channel, lambda _message: changed())
