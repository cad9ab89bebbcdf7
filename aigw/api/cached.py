"""Answers served from the response cache: the stored JSON, or the stored completion replayed
as an SSE stream."""

from __future__ import annotations

import time

import orjson
from starlette.responses import Response

from aigw.access.meter import Meter, Ticket
from aigw.api import sse
from aigw.api.headers import JSONBytes, proxy_headers
from aigw.cache.store import CachedAnswer
from aigw.cache.streams import replay
from aigw.domain import Target
from aigw.routing.router import Trace

_NO_TRACE = Trace()


def from_cache(
    answer: CachedAnswer, meter: Meter, ticket: Ticket, started: float, *, stream: bool, include_usage: bool
) -> Response:
    target = Target(answer.provider, answer.model)
    meter.hit(ticket, target, answer.prompt_tokens, answer.completion_tokens)
    headers = proxy_headers(target, time.perf_counter() - started, _NO_TRACE, "hit")
    headers.update(ticket.headers)
    if not stream:
        return JSONBytes(answer.body, headers)
    chunks = replay(orjson.loads(answer.body), include_usage)
    body = b"".join(sse.event(c) for c in chunks) + sse.DONE
    return JSONBytes(body, {"cache-control": "no-cache", **headers}, media_type=b"text/event-stream")
