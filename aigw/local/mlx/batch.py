"""Continuous batching on MLX through mlx-lm's BatchGenerator: up to `parallel` requests decode
together; a new request joins at the next step (its prompt read in chunks alongside the others'
decoding) and a finished one leaves without waiting for the others.

Each request brings its own KV cache: the saved state (aigw.local.prefixes) sharing the longest
prefix with its prompt, trimmed to that prefix — taken over when the request continues that
conversation, copied otherwise — so it reads only the rest. When a request ends, its cache is
saved for the conversation's next turn.

Runs on the model's owner thread only.
"""

from __future__ import annotations

import copy
import secrets
from dataclasses import dataclass, field
from typing import Any, cast

from aigw.engine.backend import GenParams
from aigw.local.prefixes import WORTH_SHARING, Saved, SavedPrefixes, continues
from aigw.local.run import Run


def make_sampler(params: GenParams) -> Any:
    """mlx-lm's sampling for these parameters, with the request's own random key when it samples
    (a batch's requests each keep their seed; the global generator is shared)."""
    import mlx.core as mx
    from mlx_lm.sample_utils import apply_min_p, apply_top_k, apply_top_p, greedy_sampler

    if params.temperature <= 0:
        return greedy_sampler
    extra = params.extra
    top_p, min_p, top_k = params.top_p, float(extra.get("min_p", 0.0)), int(extra.get("top_k", 0))
    seed = params.seed if params.seed is not None else secrets.randbelow(2**31)
    key = mx.random.key(seed)
    scale = 1 / params.temperature

    def sample(logprobs: Any) -> Any:
        nonlocal key
        key, now = mx.random.split(key)
        if 0 < top_p < 1:
            logprobs = apply_top_p(logprobs, top_p)
        if min_p:
            logprobs = apply_min_p(logprobs, min_p, 1)
        if top_k > 0:
            logprobs = apply_top_k(logprobs, top_k)
        return mx.random.categorical(logprobs * scale, key=now)

    return sample


class TextDetok:
    """Tokens to text through the model's tokenizer, each token's text released as soon as it is
    whole characters (mlx-lm's own streaming detokenizer releases a word at a time)."""

    def __init__(self, tokenizer: Any) -> None:
        from mlx_lm.tokenizer_utils import NaiveStreamingDetokenizer

        self._detok: Any = cast(Any, NaiveStreamingDetokenizer)(getattr(tokenizer, "_tokenizer", tokenizer))

    def add(self, token: int) -> str:
        self._detok.add_token(token)
        return str(self._detok.last_segment)

    def finish(self) -> str:
        self._detok.finalize()
        return str(self._detok.last_segment)


def _nbytes(cache: list[Any]) -> int:
    return sum(int(getattr(c, "nbytes", 0)) for c in cache)


@dataclass(eq=False, slots=True)
class _Live:
    run: Run
    known: list[int]
    """The prompt, then every token generated: what the cache holds, up to its offset."""
    prompt_len: int
    key: str | None
    made: list[int] = field(default_factory=list)
    reading: bool = False
    """The generator has begun reading its prompt (its slot's clock runs)."""


class MlxBatcher:
    def __init__(self, model: Any, parallel: int, saved: SavedPrefixes[list[Any]]) -> None:
        self.parallel = parallel
        self._model = model
        self._gen: Any = self._new_generator()
        self._live: dict[int, _Live] = {}
        self._saved = saved

    def _new_generator(self) -> Any:
        from mlx_lm.generate import BatchGenerator

        n = self.parallel
        return BatchGenerator(
            self._model, completion_batch_size=n, prefill_batch_size=n, prefill_step_size=512
        )

    @property
    def pending(self) -> int:
        return len(self._live)

    @property
    def saved_bytes(self) -> int:
        return self._saved.nbytes

    def drop_saved(self) -> int:
        return self._saved.drop()

    def add(self, run: Run, processors: list[Any]) -> None:
        """The run joins at the next step, reading only what no saved state covers."""
        prompt = run.prompt
        sampler = make_sampler(run.params)  # first: a bad parameter fails before any state moves
        cache, same = self._cache_for(prompt, run.key)
        (uid,) = self._gen.insert(
            [prompt[same:]],
            max_tokens=[run.max_tokens],
            caches=[cache],
            all_tokens=[list(prompt[:same])],  # what the penalties look back on, as from cold
            samplers=[sampler],
            logits_processors=[processors],
        )
        run.begin(same)
        self._live[uid] = _Live(run, list(prompt), len(prompt), run.key)

    def _cache_for(self, prompt: list[int], key: str | None) -> tuple[list[Any], int]:
        from mlx_lm.models.cache import can_trim_prompt_cache, make_prompt_cache, trim_prompt_cache

        entry, same = self._saved.nearest(prompt)
        if entry is None or not can_trim_prompt_cache(entry.state):
            return make_prompt_cache(self._model), 0
        going_on = continues(entry.prompt_len, same, entry.key, key)
        if not going_on and same < WORTH_SHARING:  # a chat header is not worth copying a state
            return make_prompt_cache(self._model), 0
        if going_on:
            self._saved.take(entry)  # this conversation goes on here
            cache = entry.state
        else:
            self._saved.touch(entry)
            cache = copy.deepcopy(entry.state)
        same = min(same, len(prompt) - 1)  # at least one token is read: the next one's logits
        trim_prompt_cache(cache, len(entry.tokens) - same)
        return cache, same

    def step(self) -> None:
        """Drop the runs whose callers left, then one step of the batch."""
        for uid in [u for u, live in self._live.items() if not live.run.alive()]:
            self._live[uid].run.cancel()
            self._leave(uid, None)
        if not self._live:
            return
        try:
            reading, responses = self._gen.next()
        except Exception as e:
            self._abort(e)
            return
        for r in reading:  # a run's prefill starts when the generator first reads its prompt
            live = self._live.get(r.uid)
            if live is not None and not live.reading:
                live.reading = True
                live.run.begin(live.run.cached)
        for r in responses:
            live = self._live.get(r.uid)
            if live is None:
                continue
            live.made.append(int(r.token))
            ended = live.run.accept(int(r.token))
            if r.finish_reason is not None and not ended:  # the generator's max_tokens: the run's
                live.run.cancel()
            if ended or r.finish_reason is not None:  # a finished one brings its cache along
                self._leave(r.uid, r.prompt_cache)

    def _abort(self, error: Exception) -> None:
        """Every run in the batch fails with `error`; a new generator takes the batch's place."""
        for live in self._live.values():
            live.run.fail(error)
        self._live.clear()
        self._gen.close()
        self._gen = self._new_generator()

    def _leave(self, uid: int, cache: list[Any] | None) -> None:
        """The run is over: its cache is saved for its conversation's next turn."""
        from mlx_lm.models.cache import trim_prompt_cache

        live = self._live.pop(uid)
        if cache is None:
            got = self._gen.remove([uid], return_prompt_caches=True).get(uid)
            if got is None:
                return
            cache = got[0]
        known = live.known + live.made
        offset = int(getattr(cache[0], "offset", 0)) if cache else 0
        if offset > len(known):  # never seen (mlx-lm reads each token it returns): kept safe
            trim_prompt_cache(cache, offset - len(known))
            offset = len(known)
        if offset > 1:  # a run cut short in its prompt saved what it read
            prompt_len = min(live.prompt_len, offset)
            self._saved.put(Saved(known[:offset], prompt_len, cache, _nbytes(cache), live.key))

    def close(self) -> None:
        for uid in list(self._live):
            self._live[uid].run.cancel()
            self._live.pop(uid)
        self._gen.close()
