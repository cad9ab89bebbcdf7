"""The Hamming first pass of a search, in memory.

A collection's sign bits (what `vec_quantize_binary` makes of each vector: 48 bytes for 384
dimensions) are loaded once from its `rag_bits_N` table into one numpy array of 64-bit words;
a query's distance to all of them is one XOR and one popcount per word. At 100,000 chunks that is
4.8 MB and a few milliseconds, where sqlite-vec's `bit[]` KNN, which reads and compares every
stored vector through SQLite on each query, took several times as long. The exact re-rank of the
candidates on the full vectors stays in SQL.

The owner (RagStore) drops a collection's index whenever the database changes (its own writes,
or another connection's, seen through `PRAGMA data_version`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt


class BitIndex:
    def __init__(self, ids: npt.NDArray[np.int64], words: npt.NDArray[np.uint64]) -> None:
        self.ids = ids
        self.words = words

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @staticmethod
    def words_of(blob: bytes) -> npt.NDArray[np.uint64]:
        """A packed bit vector as 64-bit words (zero-padded to a multiple of 8 bytes)."""
        import numpy as np

        pad = (-len(blob)) % 8
        return np.frombuffer(blob + b"\0" * pad, dtype=np.uint64)

    @classmethod
    def build(cls, rows: Iterable[tuple[int, bytes]]) -> BitIndex:
        """From (rowid, packed bits) rows, all of one collection (hence one length)."""
        import numpy as np

        ids: list[int] = []
        blobs: list[bytes] = []
        for rowid, blob in rows:
            ids.append(rowid)
            blobs.append(blob)
        if not blobs:
            return cls(np.zeros(0, dtype=np.int64), np.zeros((0, 1), dtype=np.uint64))
        width = len(blobs[0])
        pad = (-width) % 8
        raw = b"".join(b + b"\0" * pad for b in blobs)
        words = np.frombuffer(raw, dtype=np.uint64).reshape(len(blobs), (width + pad) // 8)
        return cls(np.asarray(ids, dtype=np.int64), words)

    def nearest(self, query_bits: bytes, n: int) -> list[int]:
        """The rowids of the `n` vectors nearest the query by Hamming distance (unordered)."""
        import numpy as np

        if len(self) == 0:
            return []
        q = self.words_of(query_bits)
        distance = np.bitwise_count(self.words ^ q).sum(axis=1, dtype=np.int32)
        if n >= len(self):
            return [int(i) for i in self.ids]
        picked = np.argpartition(distance, n)[:n]
        return [int(i) for i in self.ids[picked]]
