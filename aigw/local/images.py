"""Images for local models: an `image_url` part's bytes, from a data: URL or a local file.

Local models do not fetch from the network (a gateway that did would let any client make it
reach any URL); an http(s) image is refused naming the part. Files are read only when they are
images (by their first bytes) and at most MAX_BYTES long.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from aigw.errors import InvalidRequest

MAX_BYTES = 20 * 1024 * 1024
_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM")
_IMAGE_PARTS = frozenset({"image_url", "input_image"})


def image_urls(messages: list[dict[str, Any]]) -> list[str]:
    """Every image part's URL, in message order."""
    out: list[str] = []
    for m in messages:
        content = m.get("content")
        for part in content if isinstance(content, list) else []:
            if isinstance(part, dict) and part.get("type") in _IMAGE_PARTS:
                out.append(url_of(part))
    return out


def url_of(part: dict[str, Any]) -> str:
    raw = part.get("image_url")
    url = raw.get("url") if isinstance(raw, dict) else raw
    if not isinstance(url, str) or not url:
        raise InvalidRequest("an image_url part needs a url", param="messages")
    return url


def _is_image(data: bytes) -> bool:
    return data.startswith(_MAGIC) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")


def image_bytes(url: str, index: int) -> bytes:
    """The bytes of image number `index` (for messages naming it)."""
    where = f"image {index + 1}"
    if url.startswith("data:"):
        header, sep, payload = url[5:].partition(",")
        if not sep or "base64" not in header.split(";"):
            raise InvalidRequest(f"{where}: a data URL must be data:<type>;base64,...", param="messages")
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequest(f"{where}: the data URL is not valid base64", param="messages") from None
    else:
        parsed = urlparse(url)
        if parsed.scheme in ("http", "https"):
            raise InvalidRequest(
                f"{where}: local models take images as data: URLs or local files, not web URLs",
                param="messages",
            )
        path = Path(unquote(parsed.path) if parsed.scheme == "file" else url).expanduser()
        if not path.is_absolute():
            raise InvalidRequest(f"{where}: a local image needs an absolute path", param="messages")
        try:
            with open(path, "rb") as f:
                data = f.read(MAX_BYTES + 1)
        except OSError as e:
            raise InvalidRequest(f"{where}: cannot read {path}: {e.strerror}", param="messages") from None
    if len(data) > MAX_BYTES:
        raise InvalidRequest(f"{where} is over {MAX_BYTES // (1024 * 1024)} MB", param="messages")
    if not _is_image(data):
        raise InvalidRequest(f"{where} is not a PNG, JPEG, GIF, BMP or WebP image", param="messages")
    return data
