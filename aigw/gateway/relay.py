"""Relaying a routed stream to its client while keeping its books: what reached the client (for
the charge when the upstream reports no usage), the usage, the completion for the usage log when
content is logged, and the cache entry when the stream ends normally and completely.

However the stream ends (finished, broken by the upstream, cut by the client), the request is
accounted once: done, or failed after content (charged for what was delivered). A failure is
re-raised for the dialect to render.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator

import orjson

from aigw.access.meter import Meter, Ticket
from aigw.cache.service import AnswerCache, Plan
from aigw.cache.streams import Assembler
from aigw.domain import ChatChunk, Target, Usage
from aigw.errors import AigwError
from aigw.routing.router import RoutedStream

log = logging.getLogger("aigw.gateway")


def delivered(chunk: ChatChunk, text: list[str] | None) -> int:
    """The characters of content and tool-call arguments in a chunk (kept in `text` when logging)."""
    n = 0
    for choice in chunk.choices:
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            completed = choice.get("text")  # a legacy completion's chunk
            if isinstance(completed, str):
                n += len(completed)
                if text is not None:
                    text.append(completed)
            continue
        content = delta.get("content")
        if isinstance(content, str):
            n += len(content)
            if text is not None:
                text.append(content)
        for call in delta.get("tool_calls") or ():
            fn = call.get("function") if isinstance(call, dict) else None
            if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
                n += len(fn["arguments"])
    return n


class Saver:
    """Folds a stream as it passes; stores it when it ended normally and completely."""

    __slots__ = ("assembler", "cache", "plan")

    def __init__(self, cache: AnswerCache, plan: Plan) -> None:
        self.cache = cache
        self.plan = plan
        self.assembler = Assembler()

    def finish(self, target: Target, ended: bool) -> None:
        a = self.assembler
        if ended and a.complete:
            self.cache.save(self.plan, target, orjson.dumps(a.completion()), a.usage)
        else:
            self.plan.publish(None)


async def relay(
    stream: RoutedStream,
    meter: Meter,
    ticket: Ticket,
    overhead_s: float,
    *,
    saver: Saver | None,
    cache: str,
) -> AsyncGenerator[ChatChunk, None]:
    usage: Usage | None = None
    failure: AigwError | None = None
    ended = False
    text: list[str] | None = [] if ticket.content is not None else None
    chars = 0  # what reached the client: charged when the stream ends without usage
    fold = saver.assembler.add if saver is not None else None

    def take(chunk: ChatChunk) -> ChatChunk:
        nonlocal usage, chars
        usage = chunk.usage or usage
        chars += delivered(chunk, text)
        if fold is not None:
            fold(chunk)
        return chunk

    try:
        for chunk in stream.head:
            yield take(chunk)
        async for chunk in stream.rest:
            yield take(chunk)
        ended = True
    except AigwError as e:
        log.warning("stream from %s broke: %s", stream.target.provider, e.message)
        failure = e
        raise
    finally:
        await stream.aclose()
        if saver is not None:
            saver.finish(stream.target, ended)
        if failure is not None:
            meter.failed(ticket, failure, stream.target, delivered_chars=chars)
        else:
            meter.done(
                ticket,
                stream.target,
                usage,
                overhead_s=overhead_s,
                fallbacks=stream.trace.fallbacks,
                cache=cache,
                completion="".join(text) if text is not None else None,
                completion_chars=chars,
                retries=stream.trace.retries,
            )
