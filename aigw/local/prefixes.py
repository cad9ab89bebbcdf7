"""Saved prompt states of a local model: a bounded (bytes) LRU, so several conversations
interleaved on one model each find their own earlier state again (an agent resends its whole
conversation every turn, and a subagent's turns come between the main agent's).

Each engine keeps its live states (a llama.cpp sequence, an MLX KV cache) itself and saves one here
when another conversation is about to overwrite it; a request takes back the saved state that
shares the longest prefix with its prompt. Entries are copies the engine can restore: the engine
decides what an entry's `state` is (bytes of a sequence's KV cells, a deep copy of a KV cache).

Thread-safe: the model's owner thread saves and takes; the scheduler may `drop` from the event loop
to free memory before it unloads a model.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
WORTH_SHARING = 64
"""A prefix shorter than this (a chat template's header) is not worth restoring or copying a
saved state for, nor taking over another conversation's slot while an empty one is free."""


def shared(a: Sequence[int], b: Sequence[int]) -> int:
    """The length of the longest common prefix of two token sequences."""
    n = min(len(a), len(b))
    if n and a[n - 1] == b[n - 1] and list(a[:n]) == list(b[:n]):
        return n  # the common case (a continued conversation), at C speed
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


@dataclass(eq=False, slots=True)
class Saved(Generic[T]):
    tokens: list[int]
    """The tokens the state holds, in order."""
    prompt_len: int
    """How many of them were its request's prompt (the rest it generated)."""
    state: T
    nbytes: int
    key: str | None = None
    """The caller's prompt_cache_key, when it gave one."""


def continues(entry_prompt_len: int, same: int, entry_key: str | None, key: str | None) -> bool:
    """A request that shares `same` tokens with a state continues its conversation (and may take
    the state over instead of copying it) when it reads all of that state's prompt again — an
    agent's next turn — and names no other prompt_cache_key."""
    if key is not None and entry_key is not None and key != entry_key:
        return False
    return same >= entry_prompt_len


class SavedPrefixes(Generic[T]):
    """A least-recently-used set of saved states, at most `limit_bytes` together."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self._entries: OrderedDict[int, Saved[T]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def nearest(self, prompt: Sequence[int]) -> tuple[Saved[T] | None, int]:
        """The saved state sharing the longest prefix with `prompt`, and that length."""
        best: Saved[T] | None = None
        most = 0
        with self._lock:
            entries = list(self._entries.values())
        for entry in entries:
            n = shared(entry.tokens, prompt)
            if n > most:
                best, most = entry, n
        return best, most

    def holds(self, tokens: Sequence[int]) -> bool:
        """An entry already holds exactly these tokens (saving them again would add nothing)."""
        with self._lock:
            return any(e.tokens == list(tokens) for e in self._entries.values())

    def put(self, entry: Saved[T]) -> bool:
        """Keep `entry` (most recently used); evicts the least recently used beyond the limit.
        An entry larger than the whole limit is not kept (False). Entries whose tokens the new
        one extends are superseded and go."""
        if entry.nbytes > self.limit_bytes or not entry.tokens:
            return False
        with self._lock:
            for k, old in list(self._entries.items()):
                same_owner = old.key is None or entry.key is None or old.key == entry.key
                if same_owner and shared(old.tokens, entry.tokens) == len(old.tokens):
                    self._remove(k)  # the new one extends it
            self._entries[id(entry)] = entry
            self._bytes += entry.nbytes
            while self._bytes > self.limit_bytes:
                self._remove(next(iter(self._entries)))
        return True

    def take(self, entry: Saved[T]) -> None:
        """The entry becomes a live state again: no longer saved here."""
        with self._lock:
            if id(entry) in self._entries:
                self._remove(id(entry))

    def touch(self, entry: Saved[T]) -> None:
        with self._lock:
            if id(entry) in self._entries:
                self._entries.move_to_end(id(entry))

    def drop(self) -> int:
        """Forget every saved state; the bytes freed."""
        with self._lock:
            freed = self._bytes
            self._entries.clear()
            self._bytes = 0
        return freed

    def _remove(self, k: int) -> None:
        self._bytes -= self._entries.pop(k).nbytes
