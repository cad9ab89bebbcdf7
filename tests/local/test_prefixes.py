"""The saved prompt states' LRU (aigw.local.prefixes): pure rules, no model."""

from __future__ import annotations

from aigw.local.prefixes import Saved, SavedPrefixes, continues, shared


def entry(
    tokens: list[int], nbytes: int = 10, prompt_len: int | None = None, key: str | None = None
) -> Saved[str]:
    return Saved(tokens, len(tokens) if prompt_len is None else prompt_len, f"state{tokens[:3]}", nbytes, key)


def test_shared_prefix_lengths() -> None:
    assert shared([1, 2, 3], [1, 2, 3, 4]) == 3
    assert shared([1, 2, 3], [1, 9, 3]) == 1
    assert shared([], [1]) == 0
    assert shared([5, 2, 3], [1, 2, 3]) == 0
    assert shared([1, 2, 3, 4], [1, 2, 7, 4]) == 2  # same last token, different middle


def test_nearest_is_the_longest_shared_prefix() -> None:
    lru: SavedPrefixes[str] = SavedPrefixes(100)
    a, b = entry([1, 2, 3, 4]), entry([1, 2, 9, 9, 9])
    lru.put(a)
    lru.put(b)
    assert lru.nearest([1, 2, 3, 4, 5]) == (a, 4)
    assert lru.nearest([1, 2, 9, 9]) == (b, 4)
    assert lru.nearest([7]) == (None, 0)


def test_bounded_in_bytes_least_recently_used_goes_first() -> None:
    lru: SavedPrefixes[str] = SavedPrefixes(30)
    a, b, c = entry([1, 1], 10), entry([2, 2], 10), entry([3, 3], 10)
    for e in (a, b, c):
        assert lru.put(e)
    lru.touch(a)  # a is now more recent than b
    lru.put(entry([4, 4], 10))
    assert lru.nbytes == 30 and len(lru) == 3
    assert lru.nearest([2, 2]) == (None, 0)  # b went
    assert lru.nearest([1, 1])[0] is a
    assert not lru.put(entry([5, 5], 31))  # larger than the whole limit: not kept
    assert lru.nbytes == 30


def test_an_entry_that_extends_another_supersedes_it() -> None:
    lru: SavedPrefixes[str] = SavedPrefixes(100)
    lru.put(entry([1, 2]))
    longer = entry([1, 2, 3])
    lru.put(longer)
    assert len(lru) == 1 and lru.nearest([1, 2])[0] is longer
    assert lru.holds([1, 2, 3]) and not lru.holds([1, 2])


def test_take_and_drop_free_the_bytes() -> None:
    lru: SavedPrefixes[str] = SavedPrefixes(100)
    a, b = entry([1, 1], 10), entry([2, 2], 20)
    lru.put(a)
    lru.put(b)
    lru.take(a)
    assert lru.nbytes == 20
    assert lru.drop() == 20 and lru.nbytes == 0 and len(lru) == 0


def test_a_request_continues_a_state_when_it_reads_all_of_its_prompt_and_names_no_other_key() -> None:
    assert continues(10, 12, None, None)  # the next turn: the whole earlier prompt, then more
    assert not continues(10, 6, None, None)  # shares only a system prompt: another conversation
    assert continues(10, 12, "a", "a")
    assert not continues(10, 12, "a", "b")  # another prompt_cache_key never takes it over
    assert continues(10, 12, None, "b")
