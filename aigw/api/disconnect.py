"""Stop work whose client has gone: for non-streaming requests to local models.

A local generation costs this machine's own compute for as long as it runs, so when the client
of a non-streaming request disconnects, the work is cancelled (the engine then stops the
generation at its next token). Cloud calls are left alone: watching costs a task per request on
the hot path, and the upstream bills the call either way.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any, TypeVar

from starlette.requests import Request

from aigw.errors import InvalidRequest

T = TypeVar("T")


class ClientGone(InvalidRequest):
    """The client disconnected before its answer was ready; nobody will read this error."""


async def unless_disconnected(request: Request, work: Coroutine[Any, Any, T]) -> T:
    task = asyncio.ensure_future(work)

    async def gone() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(gone())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():  # the client left, or this handler itself was cancelled
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            raise ClientGone("the client disconnected")
    return task.result()
