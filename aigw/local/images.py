"""Images for local models: an `image_url` part's bytes, from a data: URL or a local file.

Local models do not fetch from the network (a gateway that did would let any client make it
reach any URL); an http(s) image is refused naming the part. Local files are read only from the
folders `[local] image_dirs` names (none by default), only when they are regular files and
images (by their first bytes), and at most MAX_BYTES long.
"""

from __future__ import annotations

import base64
import binascii
import os
import stat
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


def _decoded(url: str, where: str) -> bytes:
    header, sep, payload = url[5:].partition(",")
    if not sep or "base64" not in header.split(";"):
        raise InvalidRequest(f"{where}: a data URL must be data:<type>;base64,...", param="messages")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(f"{where}: the data URL is not valid base64", param="messages") from None


def _read(url: str, where: str, dirs: tuple[Path, ...]) -> bytes:
    """A local file's bytes, when it is a regular file inside one of `dirs`. Whatever else is
    wrong (outside them, missing, not a file) gets one answer, so a caller learns nothing of the
    disk beyond them."""
    parsed = urlparse(url)
    path = Path(unquote(parsed.path) if parsed.scheme == "file" else url).expanduser()
    if not dirs:
        raise InvalidRequest(
            f"{where}: local image files are off ([local] image_dirs names the folders they may "
            "come from); send the image as a data: URL",
            param="messages",
        )
    refused = InvalidRequest(f"{where}: no such image in [local] image_dirs", param="messages")
    if not path.is_absolute() or parsed.netloc not in ("", "localhost"):
        raise refused
    real = Path(os.path.realpath(path))
    if not any(real.is_relative_to(d) for d in dirs):
        raise refused
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        raise refused from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise refused
        with os.fdopen(os.dup(fd), "rb") as f:
            return f.read(MAX_BYTES + 1)
    except OSError:
        raise refused from None
    finally:
        os.close(fd)


def image_bytes(url: str, index: int, dirs: tuple[Path, ...] = ()) -> bytes:
    """The bytes of image number `index` (for messages naming it); local files only from `dirs`
    (real paths, symlinks resolved)."""
    where = f"image {index + 1}"
    if url.startswith("data:"):
        data = _decoded(url, where)
    elif urlparse(url).scheme in ("http", "https"):
        raise InvalidRequest(
            f"{where}: local models take images as data: URLs or local files, not web URLs",
            param="messages",
        )
    else:
        data = _read(url, where, dirs)
    if len(data) > MAX_BYTES:
        raise InvalidRequest(f"{where} is over {MAX_BYTES // (1024 * 1024)} MB", param="messages")
    if not _is_image(data):
        raise InvalidRequest(f"{where} is not a PNG, JPEG, GIF, BMP or WebP image", param="messages")
    return data


def load_images(messages: list[dict[str, Any]], dirs: tuple[Path, ...]) -> tuple[bytes, ...]:
    """Every image of these messages, in order (blocking I/O: run it off the event loop)."""
    return tuple(image_bytes(url, i, dirs) for i, url in enumerate(image_urls(messages)))
