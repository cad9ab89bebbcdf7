"""Chunking: headings, code blocks, budget, overlap, line numbers, every kind (the real tokenizer)."""

from __future__ import annotations

import itertools
import random

import pytest

from aigw.rag.chunk import Chunk, chunk_text
from aigw.rag.embed import SentenceTransformerEmbedder

CODE_BLOCK = "```python\ndef install():\n    run('brew install aigw')\n\n    return True\n```"

MARKDOWN = f"""# Install

aigw runs on macOS and Linux.

## macOS

Homebrew installs everything.

{CODE_BLOCK}

Then start the daemon.

## Linux

### Debian

Use apt-get.

Setext title
============

Under a setext heading.
"""


def lines_of(text: str, chunk: Chunk) -> str:
    return "\n".join(text.split("\n")[chunk.start_line - 1 : chunk.end_line])


def test_markdown_heading_paths_and_code_block_intact(embedder: SentenceTransformerEmbedder) -> None:
    chunks = chunk_text(MARKDOWN, "markdown", count_tokens=embedder.count_tokens)
    by_heading = {c.heading: c for c in chunks}
    assert list(by_heading) == ["Install", "Install > macOS", "Install > Linux > Debian", "Setext title"]
    assert CODE_BLOCK in by_heading["Install > macOS"].text
    assert by_heading["Install > Linux > Debian"].text == "Use apt-get."
    assert [c.position for c in chunks] == list(range(len(chunks)))
    for c in chunks:  # line numbers point at the chunk's text in the source
        assert c.text.split("\n")[0] in lines_of(MARKDOWN, c)
        assert c.text.split("\n")[-1] in lines_of(MARKDOWN, c)
    assert by_heading["Install > macOS"].embedding_text.startswith("Install > macOS\n\nHomebrew")


def test_code_block_is_not_split_when_it_fits_a_chunk_alone(embedder: SentenceTransformerEmbedder) -> None:
    code = "```\n" + "\n".join(f"x{i} = compute({i})" for i in range(12)) + "\n```"
    tokens = embedder.count_tokens(code)
    text = "# T\n\n" + "Some words here. " * 30 + "\n\n" + code + "\n\nAfter the code.\n"
    chunks = chunk_text(text, "markdown", max_tokens=tokens + 20, overlap_tokens=8,
                        count_tokens=embedder.count_tokens)  # fmt: skip
    assert len(chunks) >= 2
    assert sum(code in c.text for c in chunks) == 1


def test_oversized_code_block_splits_between_lines(embedder: SentenceTransformerEmbedder) -> None:
    body = [f"    value_{i} = transform(value_{i - 1}, factor={i})" for i in range(1, 80)]
    text = "```python\ndef pipeline():\n" + "\n".join(body) + "\n```\n"
    chunks = chunk_text(text, "markdown", max_tokens=64, overlap_tokens=8, count_tokens=embedder.count_tokens)
    assert len(chunks) > 3
    source_lines = set(text.split("\n"))
    for c in chunks:
        assert embedder.count_tokens(c.embedding_text) <= 64
        inner = c.text.split("\n")[1:]  # the first line may start inside the overlap
        assert all(line in source_lines for line in inner)


def _long_document(rng: random.Random) -> str:
    words = ["gateway", "daemon", "routing", "fallback", "cache", "model", "token", "budget", "vector"]
    parts = []
    for s in range(6):
        parts.append(f"{'#' * (1 + s % 3)} Section {s}\n")
        for _ in range(rng.randint(2, 6)):
            sentences = [" ".join(rng.choices(words, k=rng.randint(5, 30))).capitalize() + "."
                         for _ in range(rng.randint(1, 12))]  # fmt: skip
            parts.append(" ".join(sentences) + "\n")
        if s % 2:
            parts.append("```\n" + "\n".join(f"call_{i}()" for i in range(rng.randint(3, 60))) + "\n```\n")
    return "\n".join(parts)


@pytest.mark.parametrize("max_tokens", [48, 128, 256])
def test_budget_respected_and_overlap_present(embedder: SentenceTransformerEmbedder, max_tokens: int) -> None:
    text = _long_document(random.Random(max_tokens))
    chunks = chunk_text(text, "markdown", max_tokens=max_tokens, overlap_tokens=16,
                        count_tokens=embedder.count_tokens)  # fmt: skip
    assert len(chunks) > 6
    for c in chunks:
        assert embedder.count_tokens(c.embedding_text) <= max_tokens, c
        assert c.text.strip()
    overlapping = 0
    for prev, cur in itertools.pairwise(chunks):
        if prev.heading != cur.heading:
            continue
        shared = next((n for n in range(len(cur.text), 0, -1) if prev.text.endswith(cur.text[:n])), 0)
        assert shared > 0, (prev, cur)  # starts with the tail of the chunk before
        assert embedder.count_tokens(cur.text[:shared]) <= 16
        overlapping += 1
    assert overlapping >= 3


def test_overlap_is_about_overlap_tokens(embedder: SentenceTransformerEmbedder) -> None:
    paragraphs = [f"Paragraph {i} says " + " ".join(f"w{i}x{j}" for j in range(40)) + "." for i in range(6)]
    chunks = chunk_text("\n\n".join(paragraphs), "text", max_tokens=200, overlap_tokens=24,
                        count_tokens=embedder.count_tokens)  # fmt: skip
    assert len(chunks) > 1
    for prev, cur in itertools.pairwise(chunks):
        shared = next(n for n in range(len(cur.text), 0, -1) if prev.text.endswith(cur.text[:n]))
        assert 12 <= embedder.count_tokens(cur.text[:shared]) <= 24
        assert cur.start_line <= prev.end_line


def test_long_paragraph_splits_at_sentences_then_words() -> None:
    sentence = "This sentence has exactly eight words in it."
    text = " ".join([sentence] * 20) + " " + " ".join(f"w{i}" for i in range(100))
    chunks = chunk_text(text, "text", max_tokens=40, overlap_tokens=0)
    assert all(len(c.text.split()) <= 40 for c in chunks)
    assert chunks[0].text.endswith("in it.")
    assert " ".join(c.text for c in chunks).split() == text.split()  # nothing lost without overlap


def test_a_word_longer_than_the_budget_is_cut(embedder: SentenceTransformerEmbedder) -> None:
    blob = "QmFzZTY0" * 200
    chunks = chunk_text(f"before\n\n{blob}\n\nafter", "text", max_tokens=32, overlap_tokens=4,
                        count_tokens=embedder.count_tokens)  # fmt: skip
    assert all(embedder.count_tokens(c.text) <= 32 for c in chunks)
    assert "".join(c.text for c in chunks).count("QmFzZTY0") >= 199


def test_rst_headings_and_literal_blocks() -> None:
    rst = """=========
 Project
=========

Intro text.

Usage
=====

Run it like this::

    aigw serve --port 8080

    aigw status

Options
-------

.. code-block:: toml

   [server]
   port = 8080

Text after.

Other
=====

Last words.
"""
    chunks = chunk_text(rst, "rst", max_tokens=256)
    headings = [c.heading for c in chunks]
    assert headings == ["Project", "Project > Usage", "Project > Usage > Options", "Project > Other"]
    usage = chunks[1]
    assert "    aigw serve --port 8080\n\n    aigw status" in usage.text
    assert "   [server]\n   port = 8080" in chunks[2].text


def test_html_text_headings_and_pre() -> None:
    html = """<!doctype html>
<html><head><title>Ignored title</title><style>body { color: red }</style>
<script>var secret = "not text";</script></head>
<body>
<h1>Guide</h1>
<p>Welcome to the <b>guide</b> &amp; more.</p>
<h2>Setup</h2>
<ul><li>First step</li><li>Second step</li></ul>
<pre>
line one
    indented line
</pre>
<h2>Usage</h2>
<div>Call <code>aigw</code> now.</div>
</body></html>
"""
    chunks = chunk_text(html, "html")
    text = "\n".join(c.text for c in chunks)
    assert "secret" not in text and "color" not in text and "Ignored title" not in text
    assert [c.heading for c in chunks] == ["Guide", "Guide > Setup", "Guide > Usage"]
    assert chunks[0].text == "Welcome to the guide & more."
    assert "line one\n    indented line" in chunks[1].text
    assert chunks[2].text == "Call aigw now."
    assert chunks[0].start_line == 6


def test_code_splits_at_top_level_blocks(embedder: SentenceTransformerEmbedder) -> None:
    functions = [
        f"def handler_{i}(request):\n    value = request.get('{i}')\n\n    return value * {i}\n"
        for i in range(30)
    ]
    source = "import os\n\n\n" + "\n\n".join(functions)
    chunks = chunk_text(source, "code", max_tokens=96, overlap_tokens=0, count_tokens=embedder.count_tokens)
    assert len(chunks) > 3
    for c in chunks:
        assert embedder.count_tokens(c.text) <= 96
        # every function body stays with its def
        assert c.text.count("def handler_") == c.text.count("return value")
        assert lines_of(source, c) == c.text


def test_plain_text_and_edge_cases() -> None:
    assert chunk_text("", "text") == []
    assert chunk_text("\n\n  \n", "markdown") == []
    crlf = chunk_text("line one\r\nline two\r\n\r\nnext para\r\n", "text")
    assert [c.text for c in crlf] == ["line one\nline two\n\nnext para"]
    assert (crlf[0].start_line, crlf[0].end_line) == (1, 4)
    with pytest.raises(ValueError, match="unknown kind"):
        chunk_text("x", "docx")  # type: ignore[arg-type]


def test_unclosed_fence_and_front_matter() -> None:
    md = "---\ntitle: x\n---\n\n# H\n\ntext\n\n```\ncode\n# not a heading\n"
    chunks = chunk_text(md, "markdown")
    assert chunks[0].text.startswith("---\ntitle: x\n---")
    assert chunks[-1].heading == "H"
    assert "# not a heading" in chunks[-1].text
