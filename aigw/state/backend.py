"""Which state backend a config names, built: API keys, rate limits and budgets in this machine's
SQLite and memory (the default), or in a Redis several instances share (`[state] backend = "redis"`)."""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

from aigw.access.budget import Budgets
from aigw.access.keys import Keys, KeyStore
from aigw.access.ratelimit import RateLimiter
from aigw.cache.store import ResponseStore, open_store
from aigw.errors import ConfigError
from aigw.state.db import open_db

if TYPE_CHECKING:
    from pathlib import Path

    from aigw.config.model import CacheConfig, StateConfig
    from aigw.state.redis.busy import SharedBusy
    from aigw.state.redis.conn import SharedState


def shared_state(cfg: StateConfig) -> SharedState | None:
    """The shared Redis, or None for the embedded backend."""
    if cfg.backend != "redis":
        return None
    if importlib.util.find_spec("redis") is None:
        from aigw.extras import install_hint

        raise ConfigError(f'[state] backend "redis" needs the redis package: {install_hint("team")}')
    from aigw.state.redis.conn import SharedState

    return SharedState(cfg)


def key_store(state: SharedState | None, database: Path) -> Keys:
    if state is None:
        return KeyStore(open_db(database))
    from aigw.state.redis.keys import RedisKeyStore

    return RedisKeyStore(state)


def budgets(state: SharedState | None, spent: dict[str, float]) -> Budgets:
    """Each key's spend and holds: `spent` from this machine's usage log, or the shared figures."""
    if state is None:
        return Budgets(spent)
    from aigw.state.redis.budgets import SharedBudgets

    return SharedBudgets(state)


def response_store(state: SharedState | None, directory: Path, cfg: CacheConfig) -> ResponseStore | None:
    """The response cache's store (None when the cache is off): local memory and disk, with the
    shared Redis behind them for a team."""
    if cfg.mode == "off":
        return None
    if state is None:
        return open_store(directory, cfg)
    from aigw.state.redis.cache import SharedResponseStore

    return SharedResponseStore(
        state, directory, ttl_s=float(cfg.ttl_s), max_size_bytes=int(cfg.max_size_mb * 1024 * 1024),
        memory_bytes=int(cfg.memory_mb * 1024 * 1024),
    )  # fmt: skip


def shared_busy(state: SharedState | None) -> SharedBusy | None:
    """least_busy's counts across instances (None: the router counts this instance's own)."""
    if state is None:
        return None
    from aigw.state.redis.busy import SharedBusy

    return SharedBusy(state)


def rate_limiter(state: SharedState | None) -> RateLimiter:
    if state is None:
        return RateLimiter()
    from aigw.state.redis.limits import SharedLimiter

    return SharedLimiter(state)
