"""Who may see and change a RAG collection.

A collection belongs to the API key that made it (its id is stored as the owner); one made with
the admin token or without a key belongs to nobody (owner NULL). A caller reads and writes its own
collections, reads those its key was granted (`aigw keys create --collections`), and the admin
reads and writes all. A collection a caller may not read does not exist for it: searching,
listing its files or dropping it is a 404, and listing collections leaves it out.
"""

from __future__ import annotations

from dataclasses import dataclass

from aigw.rag.schema import CollectionInfo, CollectionStats


@dataclass(frozen=True, slots=True)
class Viewer:
    owner: str | None
    """Whose a new collection is: the caller's key id; None for the admin or an anonymous caller."""
    admin: bool = False
    granted: frozenset[str] = frozenset()
    """Collections of others this caller may read."""

    def may_read(self, info: CollectionInfo | CollectionStats) -> bool:
        return self.admin or info.owner == self.owner or info.name in self.granted

    def may_write(self, info: CollectionInfo | CollectionStats) -> bool:
        return self.admin or info.owner == self.owner


ADMIN = Viewer(None, admin=True)
