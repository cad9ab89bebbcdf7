"""Every command of the CLI on a base install (no optional extra importable): no traceback, ever.

Each command runs in its own `python -m aigw` whose `sitecustomize.py` puts an import blocker at
the front of `sys.meta_path`: every module of pyproject's optional extras (llama_cpp, mlx_lm,
huggingface_hub, sentence_transformers, torch, sqlite_vec, pathspec, textual, ...) raises
ModuleNotFoundError and `importlib.util.find_spec` says it is absent, as on a machine where only
`pip install aigw` ran. The command tree is walked, so a new command cannot be forgotten: each
needs its harmless arguments below (or `--help` when it would start a daemon or touch the
machine's services). Every run must exit 0, or 1 with at most one line on stderr.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import textwrap
import tomllib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import typer
from packaging.requirements import Requirement

from aigw.cli import app
from tests.fixtures.daemon import base_env, free_port

pytestmark = pytest.mark.process

ROOT = Path(__file__).resolve().parents[2]
DEV_EXTRAS = {"dev"}
# Modules the extras bring in that aigw might import directly, beyond each distribution's own.
ALSO_BLOCKED = {"transformers", "tokenizers", "safetensors", "httpx2"}
# Namespace packages the base install shares with an extra (FastAPI requires opentelemetry-api):
# only the extra's own parts of them are blocked.
SHARED_NAMESPACES = {"opentelemetry": {"opentelemetry.sdk", "opentelemetry.exporter", "opentelemetry.proto"}}

DOCS = "{docs}"
# The arguments each command runs with; None: only `--help` (it would run or start a daemon, or
# change this machine's login services).
ARGS: dict[str, list[str] | None] = {
    "serve": None,
    "start": None,
    "stop": [],
    "status": [],
    "logs": ["-n", "5"],
    "chat": ["--yes", "hello"],
    "usage": [],
    "doctor": [],
    "tui": [],
    "models list": [],
    "models load": ["qwen2.5-0.5b"],
    "models unload": ["qwen2.5-0.5b"],
    "models ps": [],
    "models pull": ["qwen2.5-0.5b"],
    "models rm": ["qwen2.5-0.5b"],
    "models show": ["qwen2.5-0.5b"],
    "config show": [],
    "config path": [],
    "keys create": ["tester"],
    "keys list": [],
    "keys revoke": ["tester"],
    "cache stats": [],
    "cache clear": [],
    "rag index": [DOCS],
    "rag search": ["rotate the key"],
    "rag query": ["how do I rotate the key?"],
    "rag stats": [],
    "rag rm": ["docs", "--yes"],
    "service install": ["--dry-run"],
    "service uninstall": None,
    "service status": [],
}
EXTRA_RUNS = [["rag", "index", DOCS, "--local"], ["--help"]]


def _import_names(dist: str) -> set[str]:
    """The top-level modules of distribution `dist` (installed or not)."""
    name = Requirement(dist).name
    try:
        files = importlib.metadata.distribution(name).read_text("top_level.txt")
    except importlib.metadata.PackageNotFoundError:
        files = None
    found = {line.strip() for line in (files or "").splitlines() if line.strip()}
    if not found:
        mapping = importlib.metadata.packages_distributions()
        norm = name.lower().replace("-", "_").replace(".", "_")
        found = {
            mod
            for mod, dists in mapping.items()
            if any(d.lower().replace("-", "_").replace(".", "_") == norm for d in dists)
        }
    if not found:  # not installed here: its import name, by convention
        found = {name.lower().replace("-", "_").removesuffix(".py")}
    return {m for m in found if not m.startswith("_")}


def blocked_modules() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    blocked = set(ALSO_BLOCKED)
    for extra, deps in project["optional-dependencies"].items():
        if extra not in DEV_EXTRAS:
            for dep in deps:
                blocked |= _import_names(dep)
    for namespace, parts in SHARED_NAMESPACES.items():
        if namespace in blocked:
            blocked = (blocked - {namespace}) | parts
    return blocked


SITECUSTOMIZE = """
import importlib.abc
import importlib.util
import sys

BLOCKED = frozenset({blocked!r})


def _blocked(name):
    return any(name == b or name.startswith(b + ".") for b in BLOCKED)


class _BaseInstall(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if _blocked(name):
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None


sys.meta_path.insert(0, _BaseInstall())
_find_spec = importlib.util.find_spec


def find_spec(name, package=None):
    if _blocked(name):
        return None
    return _find_spec(name, package)


importlib.util.find_spec = find_spec
"""


def commands() -> Iterator[tuple[str, ...]]:
    root: Any = typer.main.get_command(app)
    ctx = root.context_class(root)

    def walk(cmd: Any, path: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
        if hasattr(cmd, "list_commands"):
            for name in cmd.list_commands(ctx):
                yield from walk(cmd.get_command(ctx, name), (*path, name))
        else:
            yield path

    return walk(root, ())


@pytest.fixture
def base_install(tmp_path: Path) -> dict[str, str]:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE.format(blocked=sorted(blocked_modules())))
    home = tmp_path / "home"
    home.mkdir()
    env = base_env(home)
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(ROOT)])
    env["NO_COLOR"] = "1"
    for var in ("HF_ENDPOINT", "OPENAI_BASE_URL", "AIGW_MODEL"):
        env.pop(var, None)
    return env


def run(env: dict[str, str], args: list[str], timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aigw", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def verdict(args: list[str], r: subprocess.CompletedProcess[str]) -> str | None:
    """None when the run kept the CLI's promise; else what went wrong."""
    shown = f"aigw {' '.join(args)} -> {r.returncode}\nstdout: {r.stdout[-2000:]}\nstderr: {r.stderr[-4000:]}"
    if "Traceback" in r.stdout + r.stderr:
        return f"a traceback: {shown}"
    if r.returncode == 0:
        return None
    if r.returncode != 1:
        return f"exit status {r.returncode}: {shown}"
    lines = r.stderr.strip().splitlines()
    if len(lines) > 1 or (lines and not lines[0].startswith("aigw: ")):
        return f"not one `aigw: ...` line: {shown}"
    return None


def test_the_blocker_covers_every_optional_extra() -> None:
    blocked = blocked_modules()
    expected = {"llama_cpp", "mlx", "mlx_lm", "huggingface_hub", "sentence_transformers", "torch"}
    assert expected | {"sqlite_vec", "sqlean", "pathspec", "textual", "pypdf", "numpy"} <= blocked
    assert not {"pytest", "mypy", "fastapi", "typer", "httpx"} & blocked


def test_the_blocker_simulates_a_base_install(base_install: dict[str, str]) -> None:
    probe = (
        "import importlib.util\n"
        "assert importlib.util.find_spec('pathspec') is None\n"
        "try:\n    import huggingface_hub\nexcept ModuleNotFoundError as e:\n    print('blocked', e.name)\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", probe], env=base_install, capture_output=True, text=True, check=False
    )
    assert r.returncode == 0 and r.stdout.strip() == "blocked huggingface_hub", r.stderr


def test_every_command_on_a_base_install_is_one_line_at_worst(
    base_install: dict[str, str], tmp_path: Path
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "keys.md").write_text("# Keys\n\nRotate the API key with `aigw keys create`.\n")
    found = {" ".join(path) for path in commands()}
    assert found == set(ARGS), f"commands without harmless arguments here: {found ^ set(ARGS)}"
    runs = [[*name.split(), *(a.replace(DOCS, str(docs)) for a in (args if args is not None else ["--help"]))]
            for name, args in ARGS.items()]  # fmt: skip
    runs += [[a.replace(DOCS, str(docs)) for a in extra] for extra in EXTRA_RUNS]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda args: (args, run(base_install, args)), runs))
    failures = [f for args, r in results if (f := verdict(args, r)) is not None]
    assert not failures, "\n\n".join(failures)


def test_chat_yes_on_a_base_install_says_what_to_install(base_install: dict[str, str]) -> None:
    """No provider, no model, no local engine: `aigw chat --yes` starts the daemon (itself a base
    install) and, rather than pull a model nothing here could download or run, names the extra."""
    env = dict(base_install)
    env.pop("AIGW_URL")
    home = Path(env["AIGW_HOME"])
    (home / "config.toml").write_text(textwrap.dedent(f"[server]\nport = {free_port()}\n"))
    try:
        r = run(env, ["chat", "--yes", "hello"], timeout=120)
    finally:
        run(env, ["stop"])
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("aigw: no model is available") and "pip install" in last, r.stderr
    assert not any((home / "models").rglob("*.gguf"))
