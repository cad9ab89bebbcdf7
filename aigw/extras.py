"""How to add an optional extra (local, mlx, rag, tui) to this installation.

From a clone (an editable install: `pip install -e .`), the hint names the clone's folder, so it
works from any directory: `pip install -e '/path/to/aigw[local]'`; from an installed package it is
`pip install 'aigw[local]'`. Which one is read from the distribution's `direct_url.json`
(PEP 610: `dir_info.editable`), never guessed from where the code happens to be.
"""

from __future__ import annotations

import importlib.metadata
import json
import shlex
from pathlib import Path
from urllib.parse import unquote, urlparse

DISTRIBUTION = "aigw"


def clone_of(direct_url: str | None) -> Path | None:
    """The source folder of an editable install described by `direct_url` (the text of
    direct_url.json), or None for any other kind of install."""
    if not direct_url:
        return None
    try:
        data = json.loads(direct_url)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    dir_info = data.get("dir_info")
    url = data.get("url")
    if not isinstance(dir_info, dict) or not dir_info.get("editable") or not isinstance(url, str):
        return None
    parsed = urlparse(url)
    if parsed.scheme != "file" or not parsed.path:
        return None
    return Path(unquote(parsed.path))


def direct_url() -> str | None:
    """This installation's direct_url.json, when pip wrote one."""
    try:
        return importlib.metadata.distribution(DISTRIBUTION).read_text("direct_url.json")
    except importlib.metadata.PackageNotFoundError:
        return None


def hint_for(extra: str, clone: Path | None) -> str:
    if clone is not None:
        return f"pip install -e {shlex.quote(f'{clone}[{extra}]')}"
    return f"pip install {shlex.quote(f'{DISTRIBUTION}[{extra}]')}"


def install_hint(extra: str) -> str:
    """The one-line command that adds `extra` to this installation (see the module docstring)."""
    return hint_for(extra, clone_of(direct_url()))
