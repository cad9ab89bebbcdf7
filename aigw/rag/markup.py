"""Markdown, reStructuredText and HTML reduced to blocks for `aigw.rag.chunk`. Pure functions.

A `Block` is a heading (`level` > 0, `text` is its title), a paragraph, or a code block
(`atomic`: kept whole unless it alone exceeds the budget). Lines are 1-based and inclusive.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser


@dataclass(slots=True)
class Block:
    text: str
    start: int
    end: int
    level: int = 0
    atomic: bool = False
    sep: str = "\n\n"  # joins it to the block before it within a chunk


_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")


def markdown_blocks(lines: list[str]) -> list[Block]:
    blocks: list[Block] = []
    para: list[int] = []  # line numbers of the paragraph being read

    def flush() -> None:
        if para:
            blocks.append(Block("\n".join(lines[para[0] - 1 : para[-1]]), para[0], para[-1]))
            para.clear()

    i = 0
    if lines and lines[0].strip() == "---":  # YAML front matter
        close = next((j for j in range(1, len(lines)) if lines[j].strip() in ("---", "...")), None)
        if close is not None:
            blocks.append(Block("\n".join(lines[: close + 1]), 1, close + 1, atomic=True))
            i = close + 1
    while i < len(lines):
        line = lines[i]
        n = i + 1
        fence = _FENCE.match(line)
        if fence:
            flush()
            marker = fence.group(1)
            end = n
            for j in range(i + 1, len(lines)):
                closing = lines[j].strip()
                if closing.startswith(marker) and not closing.strip(marker[0]):
                    end = j + 1
                    break
            else:
                end = len(lines)  # an unclosed fence runs to the end (CommonMark)
            blocks.append(Block("\n".join(lines[i:end]), n, end, atomic=True))
            i = end
            continue
        atx = _ATX.match(line)
        if atx:
            flush()
            blocks.append(Block((atx.group(2) or "").strip(), n, n, level=len(atx.group(1))))
        elif para and _SETEXT.match(line) and not lines[para[-1] - 1].startswith(("    ", "\t")):
            title = " ".join(lines[j - 1].strip() for j in para)
            level = 1 if line.strip().startswith("=") else 2
            blocks.append(Block(title, para[0], n, level=level))
            para.clear()
        elif line.strip():
            para.append(n)
        else:
            flush()
        i += 1
    flush()
    return blocks


_ADORNMENT = re.compile(r"^([=\-~^\"'`#*+<>:._])\1+\s*$")
_LITERAL_INTRO = re.compile(r"::\s*$|^\s*\.\.\s+(code|code-block|sourcecode|literalinclude)::")


def rst_blocks(lines: list[str]) -> list[Block]:
    blocks: list[Block] = []
    styles: list[tuple[str, bool]] = []  # heading styles in order of first use: level = index + 1
    para: list[int] = []

    def flush() -> None:
        if para:
            blocks.append(Block("\n".join(lines[para[0] - 1 : para[-1]]), para[0], para[-1]))
            para.clear()

    def level(char: str, overline: bool) -> int:
        if (char, overline) not in styles:
            styles.append((char, overline))
        return styles.index((char, overline)) + 1

    def is_title(j: int) -> bool:
        return 0 <= j < len(lines) and bool(lines[j].strip()) and not lines[j][0].isspace()

    def underlines(j: int, title: str) -> bool:
        return j < len(lines) and bool(_ADORNMENT.match(lines[j])) and len(lines[j].rstrip()) >= len(title)

    i = 0
    while i < len(lines):
        line, n = lines[i], i + 1
        over = _ADORNMENT.match(line)
        if (
            not para
            and over
            and i + 1 < len(lines)
            and lines[i + 1].strip()
            and underlines(i + 2, lines[i + 1].strip())
            and lines[i + 2].strip()[0] == over.group(1)
        ):  # an overlined title
            blocks.append(Block(lines[i + 1].strip(), n, n + 2, level=level(over.group(1), True)))
            i += 3
            continue
        if not para and is_title(i) and not over and underlines(i + 1, line.rstrip()):
            blocks.append(Block(line.strip(), n, n + 1, level=level(lines[i + 1].strip()[0], False)))
            i += 2
            continue
        if line.strip():
            para.append(n)
            if _LITERAL_INTRO.search(line):
                flush()
                i = _literal_block(lines, i + 1, len(line) - len(line.lstrip()), blocks)
                continue
        else:
            flush()
        i += 1
    flush()
    return blocks


def _literal_block(lines: list[str], i: int, indent: int, blocks: list[Block]) -> int:
    """The indented block after a `::` line, as one code block; returns the next line's index."""
    start = None
    end = i
    while i < len(lines):
        line = lines[i]
        if line.strip():
            if len(line) - len(line.lstrip()) <= indent:
                break
            if start is None:
                start = i
            end = i + 1
        i += 1
    if start is None:
        return end
    blocks.append(Block("\n".join(lines[start:end]), start + 1, end, atomic=True))
    return end


_SKIP = frozenset({"script", "style", "noscript", "template", "head", "svg", "iframe", "object"})
_BLOCK = frozenset(
    {
        "p", "div", "section", "article", "main", "header", "footer", "nav", "aside", "li", "ul", "ol",
        "dl", "dt", "dd", "table", "thead", "tbody", "tr", "blockquote", "br", "hr", "figure",
        "figcaption", "form", "details", "summary", "body", "html", "address", "caption",
    }
)  # fmt: skip
_HEADINGS = {f"h{n}": n for n in range(1, 7)}


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[Block] = []
        self._parts: list[str] = []
        self._start = 0
        self._skip: list[str] = []
        self._level = 0
        self._pre = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body":  # an unclosed <head> ends here
            self._skip = [t for t in self._skip if t != "head"]
        if tag in _SKIP:
            self._skip.append(tag)
        elif tag in _HEADINGS:
            self._flush()
            self._level = _HEADINGS[tag]
        elif tag == "pre":
            self._flush()
            self._pre += 1
        elif tag in _BLOCK:
            self._flush()
        elif tag in ("td", "th") and self._parts:
            self._parts.append(" | ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            if tag in self._skip:
                while self._skip.pop() != tag:
                    pass
        elif tag in _HEADINGS or tag in _BLOCK:
            self._flush()
            self._level = 0
        elif tag == "pre":
            self._flush(atomic=True)
            self._pre = max(0, self._pre - 1)

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if not self._parts:
            self._start = self.getpos()[0] + (0 if self._pre else _leading_newlines(data))
        self._parts.append(data)

    def _flush(self, *, atomic: bool = False) -> None:
        raw = "".join(self._parts)
        self._parts = []
        text = raw.strip("\n").rstrip() if atomic else " ".join(raw.split())
        if not text.strip():
            return
        end = max(self._start, self.getpos()[0])
        self.blocks.append(Block(text, self._start, end, level=self._level, atomic=atomic))

    def close(self) -> None:
        super().close()
        self._flush(atomic=self._pre > 0)


def _leading_newlines(data: str) -> int:
    return data[: len(data) - len(data.lstrip())].count("\n")


def html_blocks(text: str) -> list[Block]:
    parser = _TextExtractor()
    parser.feed(text)
    parser.close()
    return parser.blocks
