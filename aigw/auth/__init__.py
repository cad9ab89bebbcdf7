"""API keys made by `aigw keys create`: generated, hashed, stored, looked up by hash.

Only the sha256 of a key is stored; the plain key is shown once, at creation.
"""

from __future__ import annotations

from aigw.auth.keys import KEY_PREFIX, ApiKey, KeyStore, generate_key, hash_key

__all__ = ["KEY_PREFIX", "ApiKey", "KeyStore", "generate_key", "hash_key"]
