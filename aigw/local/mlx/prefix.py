"""Prompt-cache reuse on MLX: a loaded model keeps its KV cache between requests, with the tokens
it holds, so a request re-reads only what comes after the longest prefix it shares with them (an
agent resends its whole conversation every turn); other conversations' caches wait in a bounded
LRU (aigw.local.prefixes). Runs on the model's owner thread.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

from aigw.local.prefixes import Saved, SavedPrefixes, continues, shared


def _nbytes(cache: list[Any]) -> int:
    return sum(int(getattr(c, "nbytes", 0)) for c in cache)


class PrefixCache:
    """One model's live KV cache and the tokens it holds, and its saved states (an LRU): a
    conversation about to be overwritten by another is saved, and found again by its next turn."""

    def __init__(self, model: Any, saved: SavedPrefixes[list[Any]]) -> None:
        self._model = model
        self._saved = saved
        self._cache: list[Any] | None = None
        self._tokens: list[int] = []
        self._prompt_len = 0
        self._key: str | None = None

    @property
    def saved_bytes(self) -> int:
        return self._saved.nbytes

    def drop_saved(self) -> int:
        return self._saved.drop()

    def start(self, prompt: list[int], key: str | None = None) -> tuple[list[int], list[Any], int]:
        """The tokens still to read, the cache to read them into, and how many prompt tokens it
        already covers (at least one token is always read: the next one's logits come from it)."""
        from mlx_lm.models.cache import can_trim_prompt_cache, make_prompt_cache, trim_prompt_cache

        if self._cache is not None and not can_trim_prompt_cache(self._cache):
            self.forget()
        same = shared(self._tokens, prompt) if self._cache is not None else 0
        entry, saved_same = self._saved.nearest(prompt)
        if entry is not None and saved_same > same:
            self._stash()
            if continues(entry.prompt_len, saved_same, entry.key, key):
                self._saved.take(entry)  # this conversation goes on here
                self._cache = entry.state
            else:
                self._saved.touch(entry)
                self._cache = copy.deepcopy(entry.state)
            self._tokens, same = list(entry.tokens), saved_same
        elif same and not continues(self._prompt_len, same, self._key, key):
            assert self._cache is not None  # the live conversation would be cut: keep a copy
            self._keep(copy.deepcopy(self._cache))
        elif not same:
            self._stash()
        if self._cache is None:
            self._cache, self._tokens = make_prompt_cache(self._model), []
        same = min(same, len(prompt) - 1)
        trim_prompt_cache(self._cache, len(self._tokens) - same)
        self._tokens = prompt[:same]
        self._prompt_len, self._key = len(prompt), key
        return prompt[same:], self._cache, same

    def _keep(self, cache: list[Any]) -> None:
        if len(self._tokens) > 1:
            self._saved.put(Saved(list(self._tokens), self._prompt_len, cache, _nbytes(cache), self._key))

    def _stash(self) -> None:
        """The live state goes to the saved ones (another conversation takes its place)."""
        if self._cache is not None:
            self._keep(self._cache)
        self._cache, self._tokens = None, []

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


def cached_steps(
    prefix: PrefixCache, prompt: list[int], run: Any, key: str | None = None
) -> tuple[int, Any]:
    """(the prompt tokens the cache covers, a steps function running `run(tokens, cache, ...)`
    over the rest and keeping the cache's account)."""
    feed, cache, same = prefix.start(prompt, key)

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
