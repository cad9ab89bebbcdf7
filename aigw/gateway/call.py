"""What goes into a gateway operation besides the request, and what comes out: the caller, and the
answer with the facts of how it was served. Dialect-neutral: an API module renders these in its
own wire format and headers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import orjson

from aigw.access.keys import ApiKey
from aigw.domain import ChatChunk, Target, Usage

Gone = Callable[[], Awaitable[None]]
"""Returns once the client has disconnected (never, while it is there)."""


@dataclass(frozen=True, slots=True)
class Caller:
    """Who asks, as the HTTP layer saw them."""

    key: ApiKey | None
    """The API key the request authenticated with (None: anonymous)."""
    address: str
    """The client's address: its rate-limit subject when it has no key."""
    cache_control: str | None = None
    """The request's Cache-Control header (no-cache, no-store)."""
    gone: Gone | None = None
    """How to notice the client leaving: work on this machine's own models stops when it does."""
    admin: bool = False
    """Authenticated with the admin token (sees every RAG collection; limits as anonymous)."""
    request_id: str | None = None
    """The x-request-id of the response (its usage row keeps it)."""
    dialect: str | None = None
    """The API the request spoke (its usage row keeps it)."""


@dataclass(frozen=True, slots=True)
class Facts:
    """How a request was served: what the x-aigw-* headers say, and the rate-limit headers."""

    target: Target
    overhead_s: float
    """Time aigw itself added (the upstream's time excluded)."""
    fallbacks: int = 0
    retries: int = 0
    cache: str = "bypass"
    """hit, miss or bypass."""
    limits: dict[str, str] = field(default_factory=dict)
    """The caller's rate-limit state as x-ratelimit-* headers."""


class Wire(Protocol):
    """A response with usage and an OpenAI-shaped JSON form (what the cache stores)."""

    @property
    def usage(self) -> Usage | None: ...

    def to_wire(self) -> dict[str, Any]: ...


W = TypeVar("W", bound=Wire)


class Answer(Generic[W]):
    """A whole answer: the neutral response, and its OpenAI JSON bytes, each made when first
    asked for (a cache hit has only the bytes; a fresh answer only the response)."""

    __slots__ = ("_parse", "_value", "_wire", "facts")

    def __init__(
        self,
        facts: Facts,
        *,
        value: W | None = None,
        wire: bytes | None = None,
        parse: Callable[[dict[str, Any]], W] | None = None,
    ) -> None:
        self.facts = facts
        self._value = value
        self._wire = wire
        self._parse = parse

    @property
    def value(self) -> W:
        if self._value is None:
            assert self._wire is not None and self._parse is not None
            self._value = self._parse(orjson.loads(self._wire))
        return self._value

    def wire(self) -> bytes:
        """The answer as OpenAI JSON bytes."""
        if self._wire is None:
            assert self._value is not None
            self._wire = orjson.dumps(self._value.to_wire())
        return self._wire


class StreamReply:
    """A streamed answer whose first content has arrived (or a cached one, replayed).

    Iterate `chunks` to relay it; accounting happens as it ends, however it ends. A reply that is
    never iterated (the client left first) must be `abandon()`ed instead.
    """

    __slots__ = ("_abandon", "chunks", "facts")

    def __init__(
        self, facts: Facts, chunks: AsyncIterator[ChatChunk], abandon: Callable[[], Awaitable[None]]
    ) -> None:
        self.facts = facts
        self.chunks = chunks
        self._abandon = abandon

    async def abandon(self) -> None:
        await self._abandon()
