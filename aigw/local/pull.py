"""`aigw models pull`: download a GGUF through huggingface_hub into the models dir, verified.

Downloads resume where an interrupted one stopped (huggingface_hub keeps the partial file); the
file is checked against the catalog's sha256, or else the Hub's LFS checksum (its ETag), and
refused — deleted, with a clear error — when it does not match. HF_ENDPOINT selects a mirror and
HF_HUB_OFFLINE is honoured, as everywhere huggingface_hub is used.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from aigw.errors import AigwError, InvalidRequest
from aigw.local.catalog import Catalog

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class PullError(AigwError):
    """A download failed or was refused."""


@dataclass(frozen=True, slots=True)
class PullTarget:
    name: str
    repo: str
    file: str
    sha256: str | None


def resolve(spec: str, catalog: Catalog) -> PullTarget:
    """A catalog name, or HF_REPO/FILE.gguf (as in bartowski/Llama-3.2-1B-Instruct-GGUF/FILE.gguf)."""
    entry = catalog.get(spec)
    if entry is not None:
        if entry.gguf is None or entry.gguf.file is None:
            raise InvalidRequest(f"{spec} has no GGUF form in the catalog")
        return PullTarget(spec, entry.gguf.repo, entry.gguf.file, entry.gguf.sha256)
    parts = spec.split("/")
    if len(parts) >= 3 and parts[-1].endswith(".gguf"):
        file = "/".join(parts[2:])
        return PullTarget(Path(parts[-1]).stem.lower(), "/".join(parts[:2]), file, None)
    known = ", ".join(sorted(catalog.entries))
    raise InvalidRequest(f"unknown model {spec!r}: use a catalog name ({known}) or HF_REPO/FILE.gguf")


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def pull(target: PullTarget, models_dir: Path, *, progress: bool = True) -> Path:
    """Download (or resume) the file; verify it; return its final path in the models dir."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, RepositoryNotFoundError

    endpoint = os.environ.get("HF_ENDPOINT") or None
    models_dir.mkdir(parents=True, exist_ok=True)
    dest = models_dir / f"{target.name}.gguf"
    staging = models_dir / ".downloads" / target.repo.replace("/", "--")
    expected = target.sha256
    try:
        if expected is None:
            meta = get_hf_file_metadata(hf_hub_url(target.repo, target.file, endpoint=endpoint))
            expected = meta.etag if meta.etag and _SHA256.match(meta.etag) else None
        if dest.exists() and expected is not None and sha256_of(dest) == expected:
            return dest  # already here and intact
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "0" if progress else "1")
        downloaded = Path(hf_hub_download(target.repo, target.file, local_dir=staging, endpoint=endpoint))
    except (RepositoryNotFoundError, EntryNotFoundError):
        raise PullError(f"{target.repo}/{target.file} does not exist on the Hub") from None
    except HfHubHTTPError as e:
        raise PullError(f"download of {target.repo}/{target.file} failed: {e}") from None
    except OSError as e:
        raise PullError(f"download of {target.repo}/{target.file} failed: {e}") from None
    if expected is not None:
        actual = sha256_of(downloaded)
        if actual != expected:
            downloaded.unlink(missing_ok=True)
            raise PullError(
                f"{target.file} failed its checksum (sha256 {actual[:12]}…, expected {expected[:12]}…): "
                "refused and deleted"
            )
    os.replace(downloaded, dest)
    return dest
