"""One generation on llama.cpp: its sampler, its stops and grammar, its text, its outcome.

A run is fed tokens by the batcher (aigw.local.llama_cpp.batch) and handed each step's logits;
everything that belongs to the request alone lives here, so requests decoded in one batch keep
their own sampling parameters, stop sequences, grammar and cancellation.
"""

from __future__ import annotations

import codecs
import ctypes
import time
from collections.abc import Callable
from typing import Any

from aigw.engine.backend import Emit, GenParams, GenResult
from aigw.local.constrain import Guide
from aigw.local.textstream import TextStream

PENALTY_LAST_N = 64  # llama-cpp-python's default window for repeat/presence/frequency penalties


def make_sampler(params: GenParams, n_vocab: int) -> Any:
    """llama.cpp's sampler chain for these parameters (as llama-cpp-python builds it)."""
    import llama_cpp as ll

    extra = params.extra
    chain = ll.llama_sampler_chain_init(ll.llama_sampler_chain_default_params())

    def add(sampler: Any) -> None:
        ll.llama_sampler_chain_add(chain, sampler)

    add(
        ll.llama_sampler_init_penalties(
            n_vocab,
            PENALTY_LAST_N,
            float(extra.get("repeat_penalty", 1.0)),
            float(extra.get("frequency_penalty", 0.0)),
            float(extra.get("presence_penalty", 0.0)),
        )
    )
    if params.temperature <= 0:
        add(ll.llama_sampler_init_greedy())
        return chain
    add(ll.llama_sampler_init_top_k(int(extra.get("top_k", 40))))
    add(ll.llama_sampler_init_top_p(params.top_p, 1))
    add(ll.llama_sampler_init_min_p(float(extra.get("min_p", 0.05)), 1))
    add(ll.llama_sampler_init_temp(params.temperature))
    seed = params.seed if params.seed is not None else ll.LLAMA_DEFAULT_SEED
    add(ll.llama_sampler_init_dist(seed & 0xFFFFFFFF))
    return chain


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
        piece: Callable[[int], bytes],
        is_eog: Callable[[int], bool],
        guide: Guide | None,
        n_vocab: int,
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
        self._params = params
        self._n_vocab = n_vocab
        self._sampler: Any = None
        self._guide = guide
        self._piece = piece
        self._is_eog = is_eog
        self._out = TextStream(stops, emit)
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
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

    def sample(self, ctx: Any, index: int) -> int:
        """The next token from the batch's logits at `index` (the grammar's mask applied first)."""
        import llama_cpp as ll
        import numpy as np

        if self._sampler is None:
            self._sampler = make_sampler(self._params, self._n_vocab)
        if self._guide is not None:
            ptr = ctypes.cast(ll.llama_get_logits_ith(ctx, index), ctypes.POINTER(ctypes.c_float))
            self._guide.mask(np.ctypeslib.as_array(ptr, (self._n_vocab,)))  # in place
        return int(ll.llama_sampler_sample(self._sampler, ctx, index))

    def accept(self, token: int) -> bool:
        """Take a sampled token; True when the run is over (it is not to be fed)."""
        now = time.perf_counter()
        if not self._first:
            self._first = now
        self._last = now
        if self._is_eog(token):
            return self._end("stop")
        self._count += 1
        if self._out.add(self._decoder.decode(self._piece(token))):
            return self._end("stop")
        if self._guide is not None:
            self._guide.take(token)
            if self._guide.done:
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
        text = self._out.finish(self._decoder.decode(b"", final=True))
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
        if self._sampler is not None:
            import llama_cpp as ll

            ll.llama_sampler_free(self._sampler)
            self._sampler = None

    def outcome(self) -> GenResult:
        """The run's result (once `done`); raises what made it fail."""
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result
