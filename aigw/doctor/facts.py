"""What `aigw doctor` knows about this machine, and the real probes that find it out.

Every check reads a `Facts`; the CLI builds one with `real_facts()`, tests replace whichever
fields they need (platform, modules, probes) with `dataclasses.replace`. Probes that cost
something (importing llama_cpp, reading /proc, network) are callables, run only by the check
that needs them.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import shutil
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from aigw.daemon.process import RunInfo, running_daemon
from aigw.engine.memory import MemoryFacts, real_memory_facts
from aigw.paths import Paths


@dataclass(frozen=True, slots=True)
class LlamaProbe:
    """What importing llama_cpp showed: not installed, broken, or its version and GPU support."""

    installed: bool
    version: str | None = None
    gpu_offload: bool | None = None
    """True when built with a GPU backend (Metal on a Mac); None when it could not be told."""
    error: str | None = None
    """Why an installed llama_cpp failed to import."""


@dataclass(frozen=True, slots=True)
class VecProbe:
    """Loading sqlite-vec into an in-memory database: its version, or why it failed."""

    version: str | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class PortHolder:
    """Who listens on a port, as far as this user may see."""

    pid: int | None = None
    name: str | None = None
    user: str | None = None

    def describe(self) -> str:
        if self.pid is not None:
            return f"{self.name or 'a process'} (pid {self.pid})"
        if self.user is not None:
            return f"a process of user {self.user}"
        return "another process"


@dataclass(frozen=True, slots=True)
class HttpResult:
    """An HTTP status, or why there was none (never a header, body or URL with secrets)."""

    status: int | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class DiskUsage:
    total: int
    free: int


@dataclass(frozen=True, slots=True)
class Facts:
    system: str
    """platform.system(): Darwin, Linux, ..."""
    machine: str
    """platform.machine(): arm64, x86_64, aarch64, ..."""
    python: tuple[int, int, int]
    environ: Mapping[str, str]
    paths: Paths
    config_path: Path | None
    stdlib_sqlite_loads_extensions: bool
    find_spec: Callable[[str], object | None]
    dist_version: Callable[[str], str | None]
    rosetta: Callable[[], bool]
    llama: Callable[[], LlamaProbe]
    sqlite_vec: Callable[[], VecProbe]
    try_bind: Callable[[str, int], OSError | None]
    port_holder: Callable[[int], PortHolder | None]
    daemon: Callable[[], RunInfo | None]
    http_get: Callable[[str, Mapping[str, str], float], HttpResult]
    disk_usage: Callable[[Path], DiskUsage]
    dir_size: Callable[[Path], int]
    memory: MemoryFacts
    """RAM, the GPU's limit on Apple Silicon, memory pressure (aigw.engine.memory)."""


def real_facts(paths: Paths, config_path: Path | None, environ: Mapping[str, str]) -> Facts:
    vi = sys.version_info
    return Facts(
        system=platform.system(),
        machine=platform.machine(),
        python=(vi.major, vi.minor, vi.micro),
        environ=environ,
        paths=paths,
        config_path=config_path,
        stdlib_sqlite_loads_extensions=hasattr(sqlite3.Connection, "enable_load_extension"),
        find_spec=find_spec,
        dist_version=dist_version,
        rosetta=rosetta,
        llama=probe_llama,
        sqlite_vec=probe_sqlite_vec,
        try_bind=try_bind,
        port_holder=port_holder,
        daemon=lambda: running_daemon(paths),
        http_get=http_get,
        disk_usage=disk_usage,
        dir_size=dir_size,
        memory=real_memory_facts(),
    )


def find_spec(name: str) -> object | None:
    """importlib.util.find_spec for a top-level module, without importing it; None on any trouble."""
    try:
        return importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None


def dist_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def rosetta() -> bool:
    """True when this (x86_64) Python runs translated by Rosetta on an Apple Silicon Mac."""
    if sys.platform != "darwin":
        return False
    try:
        out = subprocess.run(
            ["sysctl", "-n", "sysctl.proc_translated"], capture_output=True, text=True, timeout=2, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return out.stdout.strip() == "1"


def probe_llama() -> LlamaProbe:
    """Import llama_cpp (heavy: only here) and ask whether it was built with GPU offload."""
    if find_spec("llama_cpp") is None:
        return LlamaProbe(installed=False)
    try:
        import llama_cpp
    except Exception as e:  # a broken build fails in many ways (missing dylib, bad CPU flags)
        return LlamaProbe(installed=True, error=f"{type(e).__name__}: {e}".splitlines()[0])
    version = getattr(llama_cpp, "__version__", None) or dist_version("llama-cpp-python")
    gpu: bool | None = None
    supports = getattr(llama_cpp, "llama_supports_gpu_offload", None)
    try:
        if callable(supports):
            gpu = bool(supports())
        else:
            pkg = Path(llama_cpp.__file__).parent
            gpu = any("metal" in p.name.lower() for p in pkg.rglob("*"))
    except Exception:
        gpu = None
    return LlamaProbe(installed=True, version=str(version) if version else None, gpu_offload=gpu)


def probe_sqlite_vec() -> VecProbe:
    """Load sqlite-vec the way aigw.rag.sqlite does: the stdlib sqlite3 if it can, else sqlean."""
    try:
        import sqlite_vec
    except ImportError:
        return VecProbe(error="sqlite-vec is not installed")
    module: object = sqlite3
    if not hasattr(sqlite3.Connection, "enable_load_extension"):
        try:
            import sqlean

            module = sqlean
        except ImportError:
            return VecProbe(error="no SQLite here can load extensions")
    try:
        conn = module.connect(":memory:")  # type: ignore[attr-defined]
        try:
            conn.enable_load_extension(True)
            sqlite_vec.load(conn)
            version = conn.execute("select vec_version()").fetchone()[0]
        finally:
            conn.close()
    except Exception as e:
        return VecProbe(error=f"{type(e).__name__}: {e}".splitlines()[0])
    return VecProbe(version=str(version))


def try_bind(host: str, port: int) -> OSError | None:
    """Bind (host, port) as `aigw serve` would and let go; the error if it cannot."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
    except OSError as e:
        return e
    return None


def port_holder(port: int) -> PortHolder | None:
    """Who listens on TCP `port`: /proc on Linux, lsof elsewhere; None when it cannot be told."""
    if Path("/proc/net/tcp").exists():
        return _proc_holder(port)
    return _lsof_holder(port)


def _listening_inodes(port: int) -> dict[int, int]:
    """Socket inode -> owner uid of every TCP socket listening on `port` (/proc/net/tcp, tcp6)."""
    found: dict[int, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text(encoding="ascii").splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != "0A":  # 0A: LISTEN
                continue
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port:
                found[int(fields[9])] = int(fields[7])
    return found


def _proc_holder(port: int) -> PortHolder | None:
    inodes = _listening_inodes(port)
    if not inodes:
        return None
    wanted = {f"socket:[{inode}]": inode for inode in inodes}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fds = list((proc / "fd").iterdir())
        except OSError:
            continue  # another user's process, or gone
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target in wanted:
                try:
                    name = (proc / "comm").read_text(encoding="utf-8", errors="replace").strip()
                except OSError:
                    name = None
                return PortHolder(pid=int(proc.name), name=name or None)
    return PortHolder(user=_user_name(next(iter(inodes.values()))))


def _user_name(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _lsof_holder(port: int) -> PortHolder | None:
    lsof = shutil.which("lsof") or ("/usr/sbin/lsof" if Path("/usr/sbin/lsof").exists() else None)
    if lsof is None:
        return None
    try:
        out = subprocess.run(
            [lsof, "-nP", f"-iTCP:{port}", "-sTCP:LISTEN", "-Fpc"],
            capture_output=True,
            text=True,
            timeout=3,
            check=False,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    pid: int | None = None
    name: str | None = None
    for line in out.splitlines():
        if line.startswith("p") and pid is None and line[1:].isdigit():
            pid = int(line[1:])
        elif line.startswith("c") and name is None:
            name = line[1:]
    return PortHolder(pid=pid, name=name) if pid is not None else None


def http_get(url: str, headers: Mapping[str, str], timeout_s: float) -> HttpResult:
    """One GET without proxies from the environment; the status, or a short reason without the URL."""
    import httpx

    try:
        with httpx.Client(trust_env=False, timeout=timeout_s, follow_redirects=False) as client:
            return HttpResult(status=client.get(url, headers=dict(headers)).status_code)
    except httpx.TimeoutException:
        return HttpResult(error=f"no answer within {timeout_s:g} s")
    except httpx.HTTPError as e:
        # httpx's messages come from the OS or the protocol ("[Errno 111] Connection refused"),
        # never the request's URL or headers.
        text = (str(e).splitlines() or [""])[0].strip()
        return HttpResult(error=f"cannot connect: {text or type(e).__name__}")
    except Exception as e:
        return HttpResult(error=f"cannot connect: {type(e).__name__}")


def disk_usage(path: Path) -> DiskUsage:
    """Disk usage of the filesystem holding `path`, or of its nearest existing parent."""
    probe = path
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    usage = shutil.disk_usage(probe)
    return DiskUsage(total=usage.total, free=usage.free)


def dir_size(path: Path) -> int:
    """Bytes in the files under `path` (symlinks not followed); 0 when it does not exist."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                st = os.lstat(os.path.join(root, f))
            except OSError:
                continue
            total += st.st_size
    return total
