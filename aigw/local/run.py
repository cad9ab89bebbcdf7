"""One generation on a local model, as a batcher runs it: the tokens it is given become its text,
held to its stops, grammar, length and caller (aigw.local.llama_cpp.batch, aigw.local.mlx.batch).

Everything that belongs to the request alone lives here, so requests decoded in one batch keep
their own stop sequences, grammar, length and cancellation; each engine adds its own sampling.
"""

from __future__ import annotations

import codecs
import time
from collections.abc import Callable
from typing import Protocol

from aigw.engine.backend import Emit, GenParams, GenResult
from aigw.local.constrain import Guide
from aigw.local.textstream import TextStream


class Detok(Protocol):
    """A generation's tokens to text, as each token comes (whole characters only)."""

    def add(self, token: int) -> str: ...

    def finish(self) -> str:
        """What is left once generation ends."""
        ...


class ByteDetok:
    """Tokens whose pieces are bytes (llama.cpp): decoded as UTF-8, split characters held."""

    def __init__(self, piece: Callable[[int], bytes]) -> None:
        self._piece = piece
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def add(self, token: int) -> str:
        return self._decoder.decode(self._piece(token))

    def finish(self) -> str:
        return self._decoder.decode(b"", final=True)


class Run:
    """One request in a batch. The batcher owns its slot; the run owns its output."""

    def __init__(
        self,
        *,
        prompt: list[int],
        max_tokens: int,
        params: GenParams,
        stops: list[str],
        emit: Emit,
        alive: Callable[[], bool],
        detok: Detok,
        is_eog: Callable[[int], bool],
        guide: Guide | None = None,
        key: str | None = None,
        vision: Callable[[int, int], list[int]] | None = None,
    ) -> None:
        self.prompt = prompt
        self.max_tokens = max_tokens
        self.key = key
        self.vision = vision
        """For a prompt with images: evaluates it into a sequence (seq_id, n_batch) before the
        batch runs, returning its tokens (-1 where images are), the last one not yet evaluated."""
        self.alive = alive
        self.cached = 0
        self.params = params
        self.guide = guide
        self._detok = detok
        self._is_eog = is_eog
        self._out = TextStream(stops, emit)
        self._count = 0
        self._finish = "length"
        self._started = self._first = self._last = 0.0
        self.done = False
        self._result: GenResult | None = None
        self._error: BaseException | None = None

    def begin(self, cached: int) -> None:
        """The run enters a slot whose state covers `cached` of its prompt tokens."""
        self.cached = cached
        self._started = time.perf_counter()

    def accept(self, token: int) -> bool:
        """Take a sampled token; True when the run is over (it is not to be fed)."""
        if self._is_eog(token):
            return self._end("stop")
        now = time.perf_counter()  # decode time spans the counted tokens: count - 1 intervals
        self._first = self._first or now
        self._last = now
        self._count += 1
        if self._out.add(self._detok.add(token)):
            return self._end("stop")
        if self.guide is not None:
            self.guide.take(token)
            if self.guide.done:
                return self._end("stop")
        if self._out.cancelled or not self.alive():
            return self._end("length")
        if self._count >= self.max_tokens:
            return self._end("length")
        return False

    def cancel(self) -> None:
        """The caller went away before the run produced anything more."""
        self._end("length")

    def _end(self, finish: str) -> bool:
        self._finish = finish
        ended = self._out.stopped or self._out.cancelled  # nothing may follow a stop
        text = self._out.finish("" if ended else self._detok.finish())
        first = self._first or time.perf_counter()
        self._result = GenResult(
            text,
            "stop" if self._out.stopped else finish,
            len(self.prompt),
            self._count,
            self.cached,
            prefill_s=max(0.0, first - self._started) if self._started else 0.0,
            decode_s=max(0.0, self._last - first),
        )
        self._close()
        return True

    def fail(self, error: BaseException) -> None:
        self._error = error
        self._close()

    def _close(self) -> None:
        self.done = True

    def outcome(self) -> GenResult:
        """The run's result (once `done`); raises what made it fail."""
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result
