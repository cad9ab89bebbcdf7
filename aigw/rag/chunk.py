"""Structure-aware chunking of a document to a token budget, with overlap. Pure functions.

    chunk_text(text, kind, *, max_tokens=256, overlap_tokens=32, count_tokens=...) -> list[Chunk]

`kind` is one of `KINDS`: "markdown" and "rst" split at headings first (a chunk's `heading` is
the path of headings above it, like "Install > macOS"), then at paragraphs and code blocks; a
fenced (markdown) or literal (rst, after `::`) code block is never split unless it alone exceeds
the budget, and then only between lines. "html" is reduced to its text (scripts, styles and the
head dropped) with h1-h6 as headings and <pre> as code blocks; its line numbers are those of the
HTML source. "code" splits a source file into top-level blocks (a blank line followed by an
unindented line starts one, which keeps a def or class with its body). "text" splits at blank lines.
A paragraph over the budget is split at sentence ends, then words.

The budget bounds what gets embedded, `Chunk.embedding_text` (heading + text): `count_tokens` of it
is at most `max_tokens` (exactly so for WordPiece tokenizers, whose counts add up over
whitespace-separated parts; the chunker counts each part once). Pass the embedder's
`count_tokens`; the default counts whitespace-separated words.

Each chunk after the first of a section starts with the tail of the chunk before it
(about `overlap_tokens`, whole words), so a sentence cut by a boundary is found from either side.
Lines are 1-based and inclusive; `position` numbers a file's chunks from 0.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal, get_args

from aigw.rag.markup import Block, html_blocks, markdown_blocks, rst_blocks

Kind = Literal["markdown", "rst", "text", "code", "html"]
KINDS: tuple[Kind, ...] = get_args(Kind)
CountTokens = Callable[[str], int]

HEADING_SEPARATOR = " > "


def count_words(text: str) -> int:
    """The default token counter: whitespace-separated words."""
    return len(text.split())


@dataclass(frozen=True, slots=True)
class Chunk:
    text: str
    heading: str
    position: int
    start_line: int
    end_line: int

    @property
    def embedding_text(self) -> str:
        """What gets embedded: the heading path, a blank line, then the text."""
        return f"{self.heading}\n\n{self.text}" if self.heading else self.text


def chunk_text(
    text: str,
    kind: Kind,
    *,
    max_tokens: int = 256,
    overlap_tokens: int = 32,
    count_tokens: CountTokens = count_words,
) -> list[Chunk]:
    """Split `text` (of `kind`, see the module docstring) into chunks of at most `max_tokens`."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    if max_tokens < 8:
        raise ValueError("max_tokens must be at least 8")
    if overlap_tokens < 0:
        raise ValueError("overlap_tokens must not be negative")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    packer = _Packer(max_tokens, overlap_tokens, count_tokens)
    chunks: list[Chunk] = []
    for heading, blocks in _sections(_blocks(text, kind)):
        for piece_text, start, end, chunk_heading in packer.pack(heading, blocks):
            chunks.append(Chunk(piece_text, chunk_heading, len(chunks), start, end))
    return chunks


def _blocks(text: str, kind: Kind) -> list[Block]:
    if kind == "html":
        return html_blocks(text)
    lines = text.split("\n")
    if kind == "markdown":
        blocks = markdown_blocks(lines)
    elif kind == "rst":
        blocks = rst_blocks(lines)
    elif kind == "code":
        blocks = _code_blocks(lines)
    else:
        blocks = _paragraphs(lines)
    prev_end = 0
    for b in blocks:  # join blocks of a chunk as they were spaced in the source
        b.sep = "\n" * max(1, b.start - prev_end) if prev_end else "\n\n"
        prev_end = b.end
    return blocks


def _paragraphs(lines: list[str]) -> list[Block]:
    blocks: list[Block] = []
    start = None
    for i, line in enumerate([*lines, ""], start=1):
        if line.strip():
            if start is None:
                start = i
        elif start is not None:
            blocks.append(Block("\n".join(lines[start - 1 : i - 1]), start, i - 1))
            start = None
    return blocks


def _code_blocks(lines: list[str]) -> list[Block]:
    """Top-level blocks: a blank line followed by an unindented line starts the next one."""
    blocks: list[Block] = []
    start: int | None = None
    last = 0  # last non-blank line of the current block
    after_blank = False
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            after_blank = True
            continue
        if start is not None and after_blank and not line[0].isspace():
            blocks.append(Block("\n".join(lines[start - 1 : last]), start, last, atomic=True))
            start = None
        if start is None:
            start = i
        last = i
        after_blank = False
    if start is not None:
        blocks.append(Block("\n".join(lines[start - 1 : last]), start, last, atomic=True))
    return blocks


def _sections(blocks: list[Block]) -> Iterator[tuple[str, list[Block]]]:
    """Group blocks under their heading path."""
    stack: list[tuple[int, str]] = []
    current: list[Block] = []
    heading = ""
    for b in blocks:
        if b.level:
            if current:
                yield heading, current
            current = []
            while stack and stack[-1][0] >= b.level:
                stack.pop()
            title = " ".join(b.text.split())
            if title:
                stack.append((b.level, title))
            heading = HEADING_SEPARATOR.join(t for _, t in stack)
        else:
            current.append(b)
    if current:
        yield heading, current


_SENTENCE_END = re.compile(r"[.!?][\"')\]]*(?=\s)|\n")
_WORD = re.compile(r"\S+")


@dataclass(slots=True)
class _Unit:
    text: str
    start: int
    end: int
    tokens: int
    sep: str


class _Packer:
    def __init__(self, max_tokens: int, overlap_tokens: int, count: CountTokens) -> None:
        self.max_tokens = max_tokens
        self.overlap_tokens = overlap_tokens
        self.count = count

    def pack(self, heading: str, blocks: list[Block]) -> Iterator[tuple[str, int, int, str]]:
        """Yield (text, start_line, end_line, heading) for one section's chunks."""
        heading = self._fit_heading(heading)
        budget = self.max_tokens - (self.count(heading) if heading else 0)
        overlap = min(self.overlap_tokens, budget // 2)
        piece_limit = budget - overlap  # an overlap always fits before a piece this size
        current: list[_Unit] = []
        used = 0
        has_content = False
        for unit in self._units(blocks, piece_limit):
            if has_content and used + unit.tokens > budget:
                text, start, end = _join(current)
                yield text, start, end, heading
                current, used = [], 0
                tail = self._tail(text, end, min(overlap, budget - unit.tokens))
                if tail is not None:
                    current, used = [tail], tail.tokens
                has_content = False
            current.append(unit)
            used += unit.tokens
            has_content = True
        if has_content:
            text, start, end = _join(current)
            yield text, start, end, heading

    def _units(self, blocks: list[Block], limit: int) -> Iterator[_Unit]:
        for b in blocks:
            tokens = self.count(b.text)
            if tokens <= limit:
                yield _Unit(b.text, b.start, b.end, tokens, b.sep)
                continue
            pieces = self._split(b.text, limit, _line_spans if b.atomic else _sentence_spans)
            for i, (offset, piece, piece_tokens) in enumerate(pieces):
                start = b.start + b.text.count("\n", 0, offset)
                sep = b.sep if i == 0 else b.text[pieces[i - 1][0] + len(pieces[i - 1][1]) : offset]
                yield _Unit(piece, start, start + piece.count("\n"), piece_tokens, sep or " ")

    def _split(
        self, text: str, limit: int, spans: Callable[[str], list[tuple[int, int]]]
    ) -> list[tuple[int, str, int]]:
        """Greedy pieces of `text` of at most `limit` tokens: (offset, text, tokens)."""
        finer = _word_spans if spans is not _word_spans else None  # words, then characters
        out: list[tuple[int, str, int]] = []
        first = last = -1
        used = 0
        for s, e in spans(text):
            tokens = self.count(text[s:e])
            if tokens > limit:
                if first >= 0:
                    out.append((first, text[first:last], used))
                    first, used = -1, 0
                sub = self._split(text[s:e], limit, finer) if finer else self._split_chars(text[s:e], limit)
                out.extend((s + o, t, n) for o, t, n in sub)
                continue
            if first >= 0 and used + tokens > limit:
                out.append((first, text[first:last], used))
                first, used = -1, 0
            if first < 0:
                first = s
            last, used = e, used + tokens
        if first >= 0:
            out.append((first, text[first:last], used))
        return out

    def _split_chars(self, word: str, limit: int) -> list[tuple[int, str, int]]:
        out: list[tuple[int, str, int]] = []
        pos = 0
        while pos < len(word):
            lo, hi = 1, len(word) - pos  # the longest prefix within the limit (at least one char)
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if self.count(word[pos : pos + mid]) <= limit:
                    lo = mid
                else:
                    hi = mid - 1
            out.append((pos, word[pos : pos + lo], self.count(word[pos : pos + lo])))
            pos += lo
        return out

    def _tail(self, text: str, end_line: int, limit: int) -> _Unit | None:
        """The longest run of whole words ending `text` that fits in `limit` tokens."""
        if limit <= 0:
            return None
        words = [m.start() for m in _WORD.finditer(text)][-limit:]
        lo, hi = 0, len(words)  # words[-n:] fits for n <= lo
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.count(text[words[-mid] :]) <= limit:
                lo = mid
            else:
                hi = mid - 1
        if lo == 0:
            return None
        tail = text[words[-lo] :]
        return _Unit(tail, end_line - tail.count("\n"), end_line, self.count(tail), "")

    def _fit_heading(self, heading: str) -> str:
        """Keep a heading path within a quarter of the budget: drop outer parts, then words."""
        limit = self.max_tokens // 4
        parts = heading.split(HEADING_SEPARATOR) if heading else []
        while len(parts) > 1 and self.count(HEADING_SEPARATOR.join(parts)) > limit:
            parts.pop(0)
        heading = HEADING_SEPARATOR.join(parts)
        while heading and self.count(heading) > limit:
            heading = heading.rsplit(None, 1)[0] if " " in heading.strip() else heading[: len(heading) // 2]
        return heading


def _join(units: list[_Unit]) -> tuple[str, int, int]:
    text = units[0].text + "".join(u.sep + u.text for u in units[1:])
    return text, units[0].start, units[-1].end


def _line_spans(text: str) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    pos = 0
    for line in text.split("\n"):
        if line.strip():
            spans.append((pos, pos + len(line)))
        pos += len(line) + 1
    return spans


def _sentence_spans(text: str) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    pos = 0
    for m in _SENTENCE_END.finditer(text):
        _add_stripped(spans, text, pos, m.end())
        pos = m.end()
    _add_stripped(spans, text, pos, len(text))
    return spans


def _add_stripped(spans: list[tuple[int, int]], text: str, s: int, e: int) -> None:
    piece = text[s:e]
    if piece.strip():
        lead = len(piece) - len(piece.lstrip())
        spans.append((s + lead, s + len(piece.rstrip())))


def _word_spans(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in _WORD.finditer(text)]
