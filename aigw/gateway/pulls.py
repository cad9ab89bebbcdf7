"""Pulling and deleting local models from the API (Ollama's /api/pull and /api/delete): aigw's own
pull (aigw.local.pull: resumable, checksum-verified), run off the event loop, its progress handed
back as the bytes arrive and as each file is verified. A pull whose caller stops waiting (its
client left) stops at its next chunk, as do all of them when the daemon stops."""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aigw.engine.engine import Engine
from aigw.errors import AigwError, ModelNotFound, quoted
from aigw.local.library import ModelLibrary, Pulled

if TYPE_CHECKING:
    from aigw.local.pull import PullTarget

log = logging.getLogger("aigw.pull")
Progress = Callable[[dict[str, Any]], None]


@dataclass(frozen=True, slots=True)
class Planned:
    target: PullTarget
    where: Pulled


class ModelPulls:
    def __init__(self, library: ModelLibrary, engine: Engine) -> None:
        self.library = library
        self.engine = engine
        self._running: set[threading.Event] = set()
        """The stop events of the pulls under way."""

    def plan(self, name: str) -> Planned:
        """What pulling `name` (a catalog name, HF_REPO/FILE.gguf or an MLX repo) would fetch and
        where it would go: a clear error now, before any progress is promised."""
        from aigw.local.catalog import load_catalog
        from aigw.local.pull import PullError, hub_missing, resolve

        refusal = hub_missing()
        if refusal is not None:
            raise PullError(refusal)
        target = resolve(name, load_catalog(self.library.models_dir), None)
        where = self.library.destination(self.library.kind_for(target.format), target.name)
        return Planned(target, where)

    async def pull(self, planned: Planned, progress: Progress) -> str:
        """Download a planned model into the models dir; `progress` hears of each file as it is
        verified. The name a request then uses."""
        from aigw.local.pull import PullError
        from aigw.local.pull import pull as do_pull

        loop = asyncio.get_running_loop()

        def on_bytes(file: str, done: int, total: int | None) -> None:
            event = {"status": f"pulling {file}", "digest": file, "total": total or done, "completed": done}
            loop.call_soon_threadsafe(progress, event)

        def on_file(file: str, size: int) -> None:
            on_bytes(file, size, size)

        target, where = planned.target, planned.where
        stop = threading.Event()
        self._running.add(stop)
        try:
            run = functools.partial(do_pull, progress=False, on_file=on_file, on_bytes=on_bytes, stop=stop)
            await asyncio.to_thread(run, target, where.path.parent)
        except asyncio.CancelledError:  # nobody waits for it any more: it stops at its next chunk
            stop.set()
            raise
        except AigwError:
            raise
        except Exception as e:  # the Hub library's own surprises: one line, logged in full
            log.exception("pulling %s failed", target.repo)
            raise PullError(f"pulling {target.repo} failed: {type(e).__name__}: {e}") from None
        finally:
            self._running.discard(stop)
        return where.model

    def stop(self) -> None:
        """Stop every pull under way (the daemon is stopping): each at its next chunk."""
        for stop in self._running:
            stop.set()

    async def delete(self, name: str, provider: str | None = None) -> int:
        """Delete a pulled model (of `provider`, when given; unloaded first; a busy one is
        refused); the bytes freed."""
        found = [p for p in self.library.pulled(name) if provider is None or p.provider == provider]
        if not found:
            why = f"model {quoted(name)} not found (no pulled model by that name)"
            raise ModelNotFound(why, param="model")
        freed = 0
        for pulled in found:
            if self.engine.knows(pulled.model):
                await self.engine.unload(pulled.model)
            freed += await asyncio.to_thread(self.library.remove, pulled)
        return freed
