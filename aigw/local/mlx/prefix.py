"""Prompt-cache reuse on MLX: a loaded model keeps its KV cache between requests, with the tokens
it holds, so a request re-reads only what comes after the longest prefix it shares with them (an
agent resends its whole conversation every turn). Runs on the model's owner thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def _shared(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class PrefixCache:
    """One model's KV cache and the tokens it holds."""

    def __init__(self, model: Any) -> None:
        self._model = model
        self._cache: list[Any] | None = None
        self._tokens: list[int] = []

    def start(self, prompt: list[int]) -> tuple[list[int], list[Any], int]:
        """The tokens still to read, the cache to read them into, and how many prompt tokens it
        already covers (at least one token is always read: the next one's logits come from it)."""
        from mlx_lm.models.cache import can_trim_prompt_cache, make_prompt_cache, trim_prompt_cache

        if self._cache is None or not can_trim_prompt_cache(self._cache):
            self._cache, self._tokens = make_prompt_cache(self._model), []
        same = min(_shared(self._tokens, prompt), len(prompt) - 1)
        trim_prompt_cache(self._cache, len(self._tokens) - same)
        self._tokens = prompt[:same]
        return prompt[same:], self._cache, same

    def settle(self, fed: list[int], generated: list[int]) -> None:
        """After a run: the cache holds the prefix, what was fed and what was generated, up to
        what the model actually read (a generation stopped early read one token less, or, run
        ahead, one more)."""
        from mlx_lm.models.cache import trim_prompt_cache

        assert self._cache is not None
        known = self._tokens + fed + generated
        offset = int(getattr(self._cache[0], "offset", len(known)))
        if offset > len(known):
            trim_prompt_cache(self._cache, offset - len(known))
            offset = len(known)
        self._tokens = known[:offset]

    def forget(self) -> None:
        self._cache, self._tokens = None, []


def cached_steps(prefix: PrefixCache, prompt: list[int], run: Any) -> tuple[int, Any]:
    """(the prompt tokens the cache covers, a steps function running `run(tokens, cache, ...)`
    over the rest and keeping the cache's account)."""
    feed, cache, same = prefix.start(prompt)

    def steps(max_tokens: int, sampler: Any, processors: list[Any]) -> Iterator[int]:
        got: list[int] = []
        inner = run(feed, cache, max_tokens, sampler, processors)
        ok = False
        try:
            for token in inner:
                got.append(token)
                yield token
            ok = True
        except GeneratorExit:
            ok = True
            raise
        finally:
            inner.close()
            if ok:
                prefix.settle(feed, got)
            else:
                prefix.forget()

    return same, steps
