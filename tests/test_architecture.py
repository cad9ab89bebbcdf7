"""The rules of aigw's layout, checked on the source itself (every import counts: top-level, inside a
function, or only for type checking).

- no import cycles between modules;
- the HTTP layer (api/) never imports providers/ or local/: it calls the gateway;
- the dashboard (tui/) imports only the daemon client;
- the core never imports typer (or click, rich) or textual: only cli/ and tui/ do;
- no module over 500 lines;
- nothing outside a provider type's own folder compares provider or type names;
- every package is in pyproject's package list (they are listed, not found).
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "aigw"
MAX_LINES = 500
# Built-in provider types, the names the environment gives their providers, and RAG's own provider,
# each with the one place allowed to compare against it.
NAMES_AND_HOMES = {
    "openai": "aigw/providers/openai/",
    "anthropic": "aigw/providers/anthropic/",
    "gemini": "aigw/providers/gemini/",
    "llama_cpp": "aigw/local/llama_cpp/",
    "local": "aigw/local/llama_cpp/",
    "mlx": "aigw/local/mlx/",
    "embed": "aigw/rag/provider.py",
    "sentence_transformers": "aigw/rag/provider.py",
}


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


@cache
def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


@cache
def tree(name: str) -> ast.Module:
    return ast.parse(modules()[name].read_text(encoding="utf-8"))


def imported(name: str) -> Iterator[str]:
    """Every module `name` imports, by full dotted name (aigw's and third parties')."""
    for node in ast.walk(tree(name)):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                yield sub if sub in modules() else node.module


@cache
def aigw_edges() -> dict[str, frozenset[str]]:
    mods = modules()
    return {m: frozenset(t for t in imported(m) if t in mods and t != m) for m in mods}


def cycles(edges: dict[str, frozenset[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    for start, targets in edges.items():
        if start in index:
            continue
        work = [(start, iter(sorted(targets)))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            v, children = work[-1]
            w = next(children, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(edges[w]))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    x = stack.pop()
                    on_stack.discard(x)
                    comp.append(x)
                    if x == v:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def test_the_cycle_finder_finds_cycles() -> None:
    assert cycles(
        {"a": frozenset({"b"}), "b": frozenset({"c"}), "c": frozenset({"a"}), "d": frozenset()}
    ) == [["a", "b", "c"]]
    assert cycles({"a": frozenset({"b"}), "b": frozenset()}) == []


def test_no_import_cycles() -> None:
    assert cycles(aigw_edges()) == []


def within(name: str, *packages: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def test_the_api_never_imports_providers_or_local_engines() -> None:
    bad = [
        f"{m} imports {t}"
        for m in modules()
        if within(m, "aigw.api")
        for t in aigw_edges()[m]
        if within(t, "aigw.providers", "aigw.local", "aigw.engine")
    ]
    assert bad == []


def test_the_dashboard_imports_only_the_daemon_client() -> None:
    bad = [
        f"{m} imports {t}"
        for m in modules()
        if within(m, "aigw.tui")
        for t in aigw_edges()[m]
        if not within(t, "aigw.tui", "aigw.daemon.client")
    ]
    assert bad == []


@pytest.mark.parametrize(
    ("library", "home"),
    [("typer", "aigw.cli"), ("click", "aigw.cli"), ("rich", "aigw.cli"), ("textual", "aigw.tui")],
)
def test_the_core_never_imports_user_interface_libraries(library: str, home: str) -> None:
    bad = [m for m in modules() if not within(m, home) and any(within(t, library) for t in imported(m))]
    assert bad == []


def test_no_module_is_over_500_lines() -> None:
    long = {m: n for m, p in modules().items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def compared_strings(code: ast.Module) -> Iterator[tuple[int, str]]:
    """String constants that a comparison (==, !=, in, not in) in `code` tests against."""
    for node in ast.walk(code):
        if not isinstance(node, ast.Compare):
            continue
        for operand in (node.left, *node.comparators):
            values = operand.elts if isinstance(operand, ast.Tuple | ast.List | ast.Set) else [operand]
            for v in values:
                if isinstance(v, ast.Constant) and isinstance(v.value, str):
                    yield node.lineno, v.value


def test_provider_names_are_compared_only_in_their_own_folder() -> None:
    bad = []
    for m, path in modules().items():
        rel = path.relative_to(ROOT).as_posix()
        for line, value in compared_strings(tree(m)):
            home = NAMES_AND_HOMES.get(value)
            if home is not None and not rel.startswith(home):
                bad.append(f"{rel}:{line} compares {value!r}")
    assert bad == []


def test_the_name_check_would_catch_a_comparison() -> None:
    code = ast.parse('if ptype == "openai" or name in ("local", "x"): pass')
    assert {v for _, v in compared_strings(code)} == {"openai", "local", "x"}


def test_every_package_is_in_the_wheel() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    packages = {module_name(p.parent / "__init__.py") for p in PKG.rglob("__init__.py")}
    assert packages <= listed
    assert {"aigw.models", "aigw.models.presets"} <= listed
