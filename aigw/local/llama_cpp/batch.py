"""Continuous batching on llama.cpp: up to `parallel` requests decode together, one sequence per
slot of one context, through the low-level batch API.

Each step decodes one batch: a token for every run that is generating, then prompt chunks of runs
that are still reading their prompt, up to the context's batch size. A new request takes a free
slot at the next step and a finished one leaves, without waiting for the others.

A slot keeps its sequence's KV cells after its run ends, so the next request re-reads only what
comes after the longest prefix it shares with a slot's tokens — or with a saved state: before a
conversation's cells are overwritten they are saved (llama_state_seq_get_data) to a bounded LRU
(aigw.local.prefixes), from which a later turn of that conversation restores them.

Runs on the model's owner thread only.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aigw.engine.backend import GenParams
from aigw.local.prefixes import WORTH_SHARING, Saved, SavedPrefixes, continues, shared
from aigw.local.run import Run

log = logging.getLogger("aigw.local")


class DecodeError(RuntimeError):
    """llama.cpp could not decode a batch."""


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


@dataclass(eq=False, slots=True)
class _Slot:
    seq: int
    tokens: list[int] = field(default_factory=list)
    """The tokens whose KV cells the sequence holds, in position order."""
    prompt_len: int = 0
    key: str | None = None
    run: Run | None = None
    feed: list[int] = field(default_factory=list)
    """Tokens of the run still to decode (its prompt's rest, then each sampled token)."""
    sampler: Any = None
    """The run's llama.cpp sampler chain."""
    used: int = 0
    """When it was last given a run (a counter): the least recently used free slot goes first."""


def make_context(llm: Any, parallel: int, context: int) -> Any:
    """A context for `parallel` sequences of `context` positions each (their own KV cells), put in
    place of the one llama-cpp-python made, so its tokenizer and helpers keep working."""
    import llama_cpp as ll
    from llama_cpp import _internals

    params = type(llm.context_params).from_buffer_copy(llm.context_params)
    params.n_ctx = context * parallel
    params.n_seq_max = parallel
    params.kv_unified = False
    ctx = _internals.LlamaContext(model=llm._model, params=params, verbose=False)
    old, llm._ctx = llm._ctx, ctx
    llm._stack.enter_context(contextlib.closing(ctx))
    old.close()
    ll.llama_set_n_threads(ctx.ctx, params.n_threads, params.n_threads_batch)
    return ctx


class Batcher:
    def __init__(self, llm: Any, parallel: int, context: int, saved: SavedPrefixes[Any]) -> None:
        import llama_cpp as ll
        import numpy as np

        self._ll = ll
        self.context = context
        self.parallel = parallel
        self._ctx = make_context(llm, parallel, context)
        self._mem = ll.llama_get_memory(self._ctx.ctx)
        self.n_batch = int(llm.n_batch)
        self.n_vocab = int(llm.n_vocab())
        self._batch = ll.llama_batch_init(self.n_batch, 0, 1)
        b = self._batch
        self._token = np.ctypeslib.as_array(b.token, (self.n_batch,))
        self._pos = np.ctypeslib.as_array(b.pos, (self.n_batch,))
        self._logits = np.ctypeslib.as_array(b.logits, (self.n_batch,))
        np.ctypeslib.as_array(b.n_seq_id, (self.n_batch,))[:] = 1
        self._seq_ptrs = [b.seq_id[i] for i in range(self.n_batch)]
        self._slots = [_Slot(i) for i in range(parallel)]
        self._waiting: deque[Run] = deque()
        self._saved = saved
        self._uses = 0

    # -- the engine's side ----------------------------------------------------------------------

    def add(self, run: Run) -> None:
        self._waiting.append(run)

    @property
    def active(self) -> int:
        """Runs in slots."""
        return sum(1 for s in self._slots if s.run is not None)

    @property
    def pending(self) -> int:
        """Runs in slots or waiting for one."""
        return self.active + len(self._waiting)

    def step(self) -> None:
        """Admit waiting runs into free slots, then decode one batch."""
        self._drop_cancelled()
        self._admit()
        planned = self._plan()
        if not planned:
            return
        rc = self._ll.llama_decode(self._ctx.ctx, self._batch)
        if rc != 0:
            self._failed(planned, rc)
            return
        for slot, fed, out in planned:
            slot.tokens.extend(fed)
            run = slot.run
            if out < 0 or run is None:
                continue
            try:
                token = self._sample(slot, run, out)
                ended = run.accept(token)
            except Exception as e:
                run.fail(e)
                ended = True
            if ended:
                self._release(slot)
            else:
                slot.feed = [token]

    def close(self) -> None:
        for slot in self._slots:
            if slot.run is not None:
                slot.run.cancel()
            self._release(slot)
        while self._waiting:
            self._waiting.popleft().cancel()
        self._ll.llama_batch_free(self._batch)

    # -- slots and saved states -------------------------------------------------------------------

    def _drop_cancelled(self) -> None:
        for run in [r for r in self._waiting if not r.alive()]:
            self._waiting.remove(run)
            run.cancel()
        for slot in self._slots:
            if slot.run is not None and not slot.run.alive():
                slot.run.cancel()
                self._release(slot)

    def _admit(self) -> None:
        while self._waiting and (free := [s for s in self._slots if s.run is None]):
            run = self._waiting.popleft()
            try:
                self._place(run, free)
            except Exception as e:
                run.fail(e)

    def _place(self, run: Run, free: list[_Slot]) -> None:
        sampler = make_sampler(run.params, self.n_vocab)  # first: a bad parameter fails alone
        try:
            slot, feed = self._prepare(run, free)
        except BaseException:
            self._ll.llama_sampler_free(sampler)
            raise
        self._uses += 1
        slot.run, slot.feed, slot.used, slot.sampler = run, feed, self._uses, sampler
        slot.prompt_len, slot.key = len(run.prompt), run.key

    def _prepare(self, run: Run, free: list[_Slot]) -> tuple[_Slot, list[int]]:
        """The slot the run takes, holding as much of its prompt as can be reused, and the
        tokens it still has to read."""
        if run.vision is not None:
            slot = min(free, key=lambda s: s.used)
            self._save(slot)
            self._clear(slot)
            run.begin(0)
            tokens = run.vision(slot.seq, self.n_batch)
            # its last token is read again in the batch: its logits give the first new token
            if not self._trim(slot, len(tokens) - 1):
                raise DecodeError("llama.cpp cannot re-read the prompt's last token on this model")
            run.prompt, slot.tokens = tokens, tokens[:-1]
            return slot, tokens[-1:]
        prompt = run.prompt
        slot, same = self._choose(free, prompt, run.key)
        entry, saved_same = self._saved.nearest(prompt)
        if entry is not None and saved_same - same >= WORTH_SHARING:
            slot = min(free, key=lambda s: (shared(s.tokens, prompt) > 0, s.used))
            self._save(slot)
            same = saved_same if self._restore(slot, entry, run.key, saved_same) else 0
        elif not continues(slot.prompt_len, same, slot.key, run.key):
            self._save(slot)  # the slot's own conversation stays findable
        same = min(same, len(prompt) - 1)  # the last token is read again: its logits are next
        if not self._trim(slot, same):
            same = 0
        run.begin(same)
        return slot, prompt[same:]

    def _trim(self, slot: _Slot, keep: int) -> bool:
        """Keep the slot's first `keep` cells; a model that cannot cut a sequence (recurrent,
        hybrid) has it cleared instead (False)."""
        if self._ll.llama_memory_seq_rm(self._mem, slot.seq, keep, -1):
            del slot.tokens[keep:]
            return True
        self._clear(slot)
        return False

    def _choose(self, free: list[_Slot], prompt: list[int], key: str | None) -> tuple[_Slot, int]:
        """The free slot for a prompt, and the prefix it shares: one whose conversation the prompt
        continues; else one that shares a long prefix (a system prompt) if no empty one is left
        or the prefix is worth more than a chat header; else an empty one, or the least
        recently used."""
        scored = [(s, shared(s.tokens, prompt)) for s in free]
        going_on = [x for x in scored if x[1] and continues(x[0].prompt_len, x[1], x[0].key, key)]
        if going_on:
            return max(going_on, key=lambda x: x[1])
        best = max(scored, key=lambda x: (x[1], -x[0].used))
        empty = [s for s in free if not s.tokens]
        if best[1] >= WORTH_SHARING or not empty:
            return best
        return empty[0], 0

    def _save(self, slot: _Slot) -> None:
        """Keep a copy of the slot's cells in the LRU of saved states (unless already there)."""
        ll = self._ll
        if len(slot.tokens) < 2 or -1 in slot.tokens or self._saved.holds(slot.tokens):
            return
        size = int(ll.llama_state_seq_get_size(self._ctx.ctx, slot.seq))
        if size > self._saved.limit_bytes:
            return
        buf = (ctypes.c_uint8 * size)()
        n = int(ll.llama_state_seq_get_data(self._ctx.ctx, buf, size, slot.seq))
        if n:
            prompt_len = min(slot.prompt_len, len(slot.tokens))  # a run cut short in its prompt
            self._saved.put(Saved(list(slot.tokens), prompt_len, (buf, n), n, slot.key))

    def _restore(self, slot: _Slot, entry: Saved[Any], key: str | None, same: int) -> bool:
        """The saved state into the slot's sequence (False, the slot cleared, if llama.cpp refuses)."""
        buf, n = entry.state
        self._clear(slot)
        if int(self._ll.llama_state_seq_set_data(self._ctx.ctx, buf, n, slot.seq)) != n:
            self._clear(slot)
            return False
        slot.tokens = list(entry.tokens)
        slot.prompt_len, slot.key = entry.prompt_len, entry.key
        if continues(entry.prompt_len, same, entry.key, key):
            self._saved.take(entry)  # this conversation goes on in the slot
        else:
            self._saved.touch(entry)
        return True

    def _clear(self, slot: _Slot) -> None:
        self._ll.llama_memory_seq_rm(self._mem, slot.seq, -1, -1)
        slot.tokens = []

    def _release(self, slot: _Slot) -> None:
        slot.run, slot.feed = None, []
        if slot.sampler is not None:
            self._ll.llama_sampler_free(slot.sampler)
            slot.sampler = None

    def _sample(self, slot: _Slot, run: Run, index: int) -> int:
        """The run's next token from the batch's logits at `index` (its grammar's mask first)."""
        import numpy as np

        ctx = self._ctx.ctx
        if run.guide is not None:
            logits = self._ll.llama_get_logits_ith(ctx, index)
            ptr = ctypes.cast(logits, ctypes.POINTER(ctypes.c_float))
            run.guide.mask(np.ctypeslib.as_array(ptr, (self.n_vocab,)))  # in place
        return int(self._ll.llama_sampler_sample(slot.sampler, ctx, index))

    def drop_saved(self) -> int:
        return self._saved.drop()

    @property
    def saved_bytes(self) -> int:
        return self._saved.nbytes

    # -- one batch ------------------------------------------------------------------------------

    def _plan(self) -> list[tuple[_Slot, list[int], int]]:
        """Fill the batch: generating runs first (one token each), then prompt chunks. Returns, per
        slot in the batch, the tokens it fed and the batch index of its logits (-1: none yet)."""
        room = self.n_batch
        planned: list[tuple[_Slot, list[int], int]] = []
        n = 0
        busy = [s for s in self._slots if s.run is not None and s.feed]
        for slot in sorted(busy, key=lambda s: len(s.feed) > 1):
            if room <= 0:
                break
            take = slot.feed[:room]
            del slot.feed[: len(take)]
            pos = len(slot.tokens)
            last = -1
            for j, token in enumerate(take):
                self._token[n] = token
                self._pos[n] = pos + j
                self._seq_ptrs[n][0] = slot.seq
                self._logits[n] = 0
                n += 1
            if not slot.feed:  # its last token: the next one is sampled from its logits
                self._logits[n - 1] = 1
                last = n - 1
            room -= len(take)
            planned.append((slot, take, last))
        self._batch.n_tokens = n
        return planned

    def _failed(self, planned: list[tuple[_Slot, list[int], int]], rc: int) -> None:
        """A batch llama.cpp refused: its runs fail, their cells are cleared; the others go on."""
        log.warning("llama_decode failed (%d) for a batch of %d runs", rc, len(planned))
        for slot, _, _ in planned:
            if slot.run is not None:
                slot.run.fail(DecodeError(f"llama.cpp could not decode (code {rc})"))
            self._clear(slot)
            self._release(slot)
