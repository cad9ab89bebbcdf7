"""Which files of a folder to index, and of what kind.

    scan(root, globs=()) -> Scan(files=[Candidate], notes=[Note])

Walks `root` without following symlinks. Skipped without a note: what a .gitignore ignores
(every .gitignore under root, each relative to its own folder, deeper ones taking precedence
as in git), version-control, dependency and cache folders (.git, node_modules, a virtualenv: any
folder holding pyvenv.cfg, __pycache__ ...), and files whose extension no kind claims. Skipped
with a note: a symlink (never followed; the note says when its target lies outside `root`; one
inside is not indexed twice, its target is indexed where it lies) and a folder that cannot be listed.

`globs` are gitignore-style patterns a file's path relative to root must match ("*.md" at any
depth, "docs/**/*.rst" from the root); a file a glob names explicitly whose extension no kind
claims is read as text.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from aigw.rag.chunk import KINDS, Kind

if TYPE_CHECKING:
    import pathspec

FileKind = Kind | Literal["pdf"]
FILE_KINDS: tuple[FileKind, ...] = (*KINDS, "pdf")
"""Every kind of file aigw indexes (PDFs are chunked as text): the one list."""

SKIP_DIRS = frozenset(
    {
        ".git", ".hg", ".svn", ".jj", "node_modules", "__pycache__", ".venv", "venv", ".tox", ".nox",
        ".mypy_cache", ".pytest_cache", ".ruff_cache", ".cache", ".eggs", "bower_components",
    }
)  # fmt: skip

_EXTENSIONS: dict[str, FileKind] = {
    **dict.fromkeys((".md", ".markdown", ".mdx", ".mdown", ".mkd"), "markdown"),
    ".rst": "rst",
    **dict.fromkeys((".txt", ".text"), "text"),
    **dict.fromkeys((".html", ".htm", ".xhtml"), "html"),
    ".pdf": "pdf",
    **dict.fromkeys(
        (
            ".py", ".pyi", ".js", ".jsx", ".mjs", ".cjs", ".ts", ".tsx", ".go", ".rs", ".java", ".kt",
            ".kts", ".scala", ".c", ".h", ".cc", ".cpp", ".cxx", ".hpp", ".hh", ".cs", ".rb", ".php",
            ".swift", ".m", ".mm", ".sh", ".bash", ".zsh", ".fish", ".ps1", ".lua", ".pl", ".r", ".jl",
            ".sql", ".toml", ".yaml", ".yml", ".ini", ".cfg", ".proto", ".graphql", ".vue", ".svelte",
            ".css", ".scss", ".ex", ".exs", ".erl", ".hs", ".ml", ".clj", ".dart", ".zig", ".nim",
            ".tf", ".gradle", ".cmake",
        ),
        "code",
    ),
}  # fmt: skip
_NAMES: dict[str, FileKind] = {
    **dict.fromkeys(
        ("readme", "license", "copying", "changelog", "notice", "authors", "contributing"), "text"
    ),
    **dict.fromkeys(("makefile", "dockerfile", "justfile", "rakefile", "gemfile"), "code"),
}


def kind_of(name: str) -> FileKind | None:
    """The kind a file name implies, or None."""
    lower = name.lower()
    ext = os.path.splitext(lower)[1]
    if ext in _EXTENSIONS:
        return _EXTENSIONS[ext]
    return _NAMES.get(lower)


@dataclass(frozen=True, slots=True)
class Note:
    path: str
    reason: str


@dataclass(frozen=True, slots=True)
class Candidate:
    path: Path  # absolute, under the resolved root
    relpath: str  # relative to root, with "/" separators
    kind: FileKind
    size: int
    mtime: float


@dataclass(slots=True)
class Scan:
    files: list[Candidate] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)


def _gitignore(folder: Path) -> pathspec.GitIgnoreSpec | None:
    import pathspec

    try:
        text = (folder / ".gitignore").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    return pathspec.GitIgnoreSpec.from_lines(text.splitlines())


def _ignored(rel: str, specs: list[tuple[str, pathspec.GitIgnoreSpec]]) -> bool:
    """Whether the deepest .gitignore with an opinion on `rel` ignores it."""
    for base, spec in reversed(specs):
        sub = rel[len(base) :] if base else rel
        verdict = spec.check_file(sub).include
        if verdict is not None:
            return verdict
    return False


def scan(root: Path, globs: Sequence[str] = ()) -> Scan:
    """The files under `root` (an existing, resolved directory) to consider, in path order."""
    import pathspec

    include = pathspec.GitIgnoreSpec.from_lines(globs) if globs else None
    out = Scan()
    # (relative dir with trailing "/", or "" for root) -> its .gitignore
    specs_by_dir: dict[str, list[tuple[str, pathspec.GitIgnoreSpec]]] = {}

    def onerror(err: OSError) -> None:
        out.notes.append(Note(str(err.filename), f"cannot list this folder: {err.strerror}"))

    for dirpath, dirnames, filenames in os.walk(root, onerror=onerror):
        folder = Path(dirpath)
        rel_dir = folder.relative_to(root).as_posix()
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        parent = rel_dir.rstrip("/").rpartition("/")[0]
        specs = list(specs_by_dir.get(parent + "/" if parent else "", [])) if rel_dir else []
        spec = _gitignore(folder)
        if spec is not None:
            specs.append((rel_dir, spec))
        specs_by_dir[rel_dir] = specs
        keep = []
        for name in sorted(dirnames):
            path = folder / name
            if path.is_symlink():
                _note_symlink(out, path, root)
            elif name in SKIP_DIRS or (path / "pyvenv.cfg").exists() or _ignored(f"{rel_dir}{name}/", specs):
                continue
            else:
                keep.append(name)
        dirnames[:] = keep
        for name in sorted(filenames):
            rel = rel_dir + name
            if name == ".gitignore" or _ignored(rel, specs):
                continue
            path = folder / name
            kind = kind_of(name)
            if include is not None:
                if not include.match_file(rel):
                    continue
                kind = kind or "text"
            if kind is None:
                continue
            try:
                st = path.lstat()
            except OSError as exc:
                out.notes.append(Note(str(path), f"cannot stat: {exc.strerror}"))
                continue
            if stat.S_ISLNK(st.st_mode):
                _note_symlink(out, path, root)
            elif stat.S_ISREG(st.st_mode):
                out.files.append(Candidate(path, rel, kind, st.st_size, st.st_mtime))
    return out


def _note_symlink(out: Scan, path: Path, root: Path) -> None:
    try:
        target = path.resolve()
    except (OSError, RuntimeError):
        out.notes.append(Note(str(path), "a broken or looping symlink: skipped"))
        return
    if target != root and root not in target.parents:
        out.notes.append(Note(str(path), f"a symlink to {target}, outside {root}: not followed"))
    else:
        out.notes.append(Note(str(path), f"a symlink to {target}, inside the folder: not followed"))
