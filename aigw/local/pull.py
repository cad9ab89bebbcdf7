"""`aigw models pull`: download a model through huggingface_hub into the models dir, verified.

A GGUF is one file; an MLX model is a directory (config, tokenizer, safetensors weights, sharded
or not). Every file is checked against the catalog's sha256 when it gives one, or else the Hub's
LFS checksum (the ETag), and a file that fails is deleted and the pull refused. A transfer the
network cuts resumes where it stopped (huggingface_hub retries with a Range). HF_ENDPOINT selects a
mirror and HF_HUB_OFFLINE is honoured, as everywhere huggingface_hub is used.

A pull run for the API reports its bytes as they arrive (`on_bytes`, at each chunk
huggingface_hub reads) and each file once verified (`on_file`), and stops at the next chunk once
its `stop` event is set (its client left, or the daemon is stopping). Files already fetched are
kept for the next pull; the one in progress starts over (huggingface_hub resumes a transfer only
within one download).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import platform
import re
import shutil
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aigw.errors import AigwError, InvalidRequest
from aigw.local.catalog import GGUF, MLX, Catalog

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
MLX_REQUIRED = ("config.json", "tokenizer_config.json")
MLX_OPTIONAL = (
    "tokenizer.json", "tokenizer.model", "special_tokens_map.json", "generation_config.json",
    "chat_template.jinja", "chat_template.json",  # a template kept apart from tokenizer_config.json
    "preprocessor_config.json", "processor_config.json",  # a vision model's image processor
)  # fmt: skip


class PullError(AigwError):
    """A download failed or was refused."""


class PullStopped(PullError):
    """A pull stopped before its end because it was asked to."""


OnBytes = Callable[[str, int, "int | None"], None]
"""Called with a file's name, its bytes so far and its size (None: unknown) as they arrive."""


def _progress_class(file: str, on_bytes: OnBytes | None, stop: threading.Event | None) -> type[Any]:
    """A tqdm class for huggingface_hub's download of `file`: silent, it counts the bytes for
    `on_bytes` and ends the download when `stop` is set."""
    from tqdm import tqdm

    class Bytes(tqdm):  # type: ignore[misc]  # tqdm is untyped
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.pop("name", None)
            super().__init__(*args, **{**kwargs, "disable": True})
            self.done = int(kwargs.get("initial") or 0)

        def update(self, n: float | None = 1) -> bool | None:
            if stop is not None and stop.is_set():
                raise PullStopped(f"pulling {file} stopped before its end")
            self.done += int(n or 0)
            if on_bytes is not None:
                on_bytes(file, self.done, self.total)
            return None

    return Bytes


@dataclass(frozen=True, slots=True)
class PullTarget:
    name: str
    repo: str
    file: str | None  # None: an MLX model directory
    sha256: str | None
    mmproj: str | None = None
    """A GGUF model's vision projector in the same repository, pulled as NAME.mmproj.gguf."""

    @property
    def format(self) -> str:
        return GGUF if self.file else MLX


def prefers_mlx() -> bool:
    """Apple Silicon with mlx-lm installed: the MLX form runs natively there."""
    return (
        sys.platform == "darwin"
        and platform.machine() == "arm64"
        and importlib.util.find_spec("mlx_lm") is not None
    )


def resolve(spec: str, catalog: Catalog, fmt: str | None = None) -> PullTarget:
    """A catalog name, an HF_REPO/FILE.gguf, or an HF_REPO holding an MLX model."""
    entry = catalog.get(spec)
    if entry is not None:
        want = fmt or (MLX if prefers_mlx() and entry.mlx is not None else GGUF)
        source = entry.mlx if want == MLX else entry.gguf
        if source is None:
            raise InvalidRequest(f"{spec} has no {want.upper()} form in the catalog")
        if want == MLX:
            return PullTarget(spec, source.repo, None, source.sha256)
        return PullTarget(spec, source.repo, source.file, source.sha256, source.mmproj)
    parts = spec.split("/")
    if len(parts) >= 3 and parts[-1].endswith(".gguf"):
        return PullTarget(Path(parts[-1]).stem.lower(), "/".join(parts[:2]), "/".join(parts[2:]), None)
    if len(parts) == 2 and all(parts) and fmt != GGUF:
        return PullTarget(parts[1].lower(), spec, None, None)
    known = ", ".join(sorted(catalog.entries))
    raise InvalidRequest(
        f"unknown model {spec!r}: use a catalog name ({known}), HF_REPO/FILE.gguf, or an MLX HF_REPO"
    )


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


OnFile = Callable[[str, int], None]
"""Told of each file once it is here and verified: its name and size in bytes."""


class _Fetcher:
    def __init__(
        self,
        repo: str,
        staging: Path,
        on_file: OnFile | None = None,
        on_bytes: OnBytes | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.repo = repo
        self.staging = staging
        self.endpoint = os.environ.get("HF_ENDPOINT") or None
        self.on_file = on_file
        self.on_bytes = on_bytes
        self.stop = stop

    def expected_sha(self, file: str) -> str | None:
        from huggingface_hub import get_hf_file_metadata, hf_hub_url

        meta = get_hf_file_metadata(hf_hub_url(self.repo, file, endpoint=self.endpoint))
        return meta.etag if meta.etag and _SHA256.match(meta.etag) else None

    def fetch(self, file: str, expected: str | None) -> Path:
        """Download (or resume) one file into staging; verify it when a checksum is known."""
        from huggingface_hub import hf_hub_download

        if self.stop is not None and self.stop.is_set():
            raise PullStopped(f"pulling {self.repo} stopped before {file}")
        if expected is None:
            expected = self.expected_sha(file)
        bars: dict[str, Any] = {}
        if self.on_bytes is not None or self.stop is not None:
            bars["tqdm_class"] = _progress_class(file, self.on_bytes, self.stop)
        path = Path(hf_hub_download(self.repo, file, local_dir=self.staging, endpoint=self.endpoint, **bars))
        if expected is not None:
            actual = sha256_of(path)
            if actual != expected:
                path.unlink(missing_ok=True)
                raise PullError(
                    f"{file} failed its checksum (sha256 {actual[:12]}…, expected {expected[:12]}…): "
                    "refused and deleted"
                )
        if self.on_file is not None:
            self.on_file(file, path.stat().st_size)
        return path


def hub_missing() -> str | None:
    """None when huggingface_hub can be imported; else a one-line refusal saying what to install."""
    try:
        import huggingface_hub.errors  # noqa: F401
    except ModuleNotFoundError as e:
        from aigw.extras import install_hint

        why = (
            "is not installed" if e.name == "huggingface_hub" else f"cannot be imported ({e.name} is missing)"
        )
        return f"pulling models needs huggingface_hub, which {why}: {install_hint('local')}"
    return None


def _transport_errors() -> tuple[type[BaseException], ...]:
    """The exception types meaning "no route to the Hub": huggingface_hub's own, and the transport
    errors of whichever HTTP library this version of it uses (requests, httpx or httpx2)."""
    from huggingface_hub.errors import LocalEntryNotFoundError

    found: list[type[BaseException]] = [LocalEntryNotFoundError]
    for module, names in (
        ("httpx", ("TransportError",)),
        ("httpx2", ("TransportError",)),
        ("requests", ("ConnectionError", "Timeout")),
    ):
        try:
            lib = importlib.import_module(module)
        except ImportError:
            continue
        found.extend(t for n in names if isinstance(t := getattr(lib, n, None), type))
    return tuple(found)


def _endpoint() -> str:
    return os.environ.get("HF_ENDPOINT") or "https://huggingface.co"


def pull(
    target: PullTarget,
    models_dir: Path,
    *,
    progress: bool = True,
    on_file: OnFile | None = None,
    on_bytes: OnBytes | None = None,
    stop: threading.Event | None = None,
) -> Path:
    """Download (or resume) the model; verify it; return its final path in the models dir.
    `progress`: huggingface_hub's own bars (the CLI); `on_file`, `on_bytes`, `stop`: see above."""
    refusal = hub_missing()
    if refusal is not None:
        raise PullError(refusal)
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
    )

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "0" if progress else "1")
    models_dir.mkdir(parents=True, exist_ok=True)
    staging = models_dir / ".downloads" / target.repo.replace("/", "--")
    fetcher = _Fetcher(target.repo, staging, on_file, on_bytes, stop)
    what = f"{target.repo}/{target.file}" if target.file else target.repo
    try:
        if target.file is not None:
            return _pull_gguf(target, target.file, models_dir, fetcher)
        return _pull_mlx(target, models_dir, fetcher)
    except OfflineModeIsEnabled:
        raise PullError(f"cannot pull {what}: HF_HUB_OFFLINE is set (unset it to download)") from None
    except _transport_errors():
        raise PullError(
            f"cannot pull {what}: the Hugging Face Hub ({_endpoint()}) is unreachable; check the "
            "network (or a proxy), or set HF_ENDPOINT to a mirror"
        ) from None
    except (RepositoryNotFoundError, EntryNotFoundError):
        raise PullError(f"{what} does not exist on the Hub") from None
    except (HfHubHTTPError, OSError) as e:
        raise PullError(f"download of {what} failed: {e}") from None


def _pull_gguf(target: PullTarget, file: str, models_dir: Path, fetcher: _Fetcher) -> Path:
    dest = models_dir / f"{target.name}.gguf"
    expected = target.sha256 or fetcher.expected_sha(file)
    if dest.exists() and expected is not None and sha256_of(dest) == expected:
        if fetcher.on_file is not None:
            fetcher.on_file(file, dest.stat().st_size)
        return dest  # already here and intact
    if target.mmproj is not None:  # first: a model found beside no projector would lack vision
        projector = models_dir / f"{target.name}.mmproj.gguf"
        os.replace(fetcher.fetch(target.mmproj, None), projector)
    os.replace(fetcher.fetch(file, expected), dest)
    return dest


def _pull_mlx(target: PullTarget, models_dir: Path, fetcher: _Fetcher) -> Path:
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    # LocalEntryNotFoundError is an EntryNotFoundError too, but means the Hub was not reached.
    files = list(MLX_REQUIRED)
    for optional in MLX_OPTIONAL:
        try:
            fetcher.fetch(optional, None)
        except LocalEntryNotFoundError:
            raise
        except EntryNotFoundError:
            continue
    try:
        index = fetcher.fetch("model.safetensors.index.json", None)
        files += sorted(set(json.loads(index.read_text())["weight_map"].values()))
    except LocalEntryNotFoundError:
        raise
    except EntryNotFoundError:
        files.append("model.safetensors")
    for file in files:
        fetcher.fetch(file, None)
    dest = models_dir / target.name
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(fetcher.staging, dest, ignore=shutil.ignore_patterns(".cache"))
    shutil.rmtree(fetcher.staging, ignore_errors=True)
    return dest
