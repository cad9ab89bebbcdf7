"""Tool calls a local model writes in its family's format, parsed whole and streamed — split at
every position — and the family's preset chosen by its real chat template (Qwen3's, as a
fixture: Hermes-style `<tool_call>` blocks)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import pytest

from aigw.local.presets import choose, load_presets
from aigw.local.toolparse import Parsed, parse_all, parser
from aigw.local.tools import AutoCallStream, template_messages

TEMPLATES = Path(__file__).parent.parent / "fixtures" / "templates"
OUTPUT = (
    "Let me check both.\n"
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo", "days": 3}}\n</tool_call>\n'
    '<tool_call>\n{"name": "get_time", "arguments": {"zone": "CET"}}\n</tool_call>'
)


def ids() -> Callable[[], str]:
    counter = itertools.count()
    return lambda: f"call_{next(counter)}"


def calls_of(p: Parsed) -> list[tuple[str, str]]:
    return [(c["function"]["name"], c["function"]["arguments"]) for c in p.calls]


def test_a_whole_output_gives_its_text_and_every_call() -> None:
    got = parse_all("hermes", OUTPUT, ids())
    assert got.text.strip() == "Let me check both."
    assert calls_of(got) == [("get_weather", '{"city":"Oslo","days":3}'), ("get_time", '{"zone":"CET"}')]
    assert [c["id"] for c in got.calls] == ["call_0", "call_1"]


@pytest.mark.parametrize("cut", range(len(OUTPUT) + 1))
def test_a_stream_split_anywhere_gives_the_same(cut: int) -> None:
    p = parser("hermes", ids())
    first, second, rest = p.add(OUTPUT[:cut]), p.add(OUTPUT[cut:]), p.finish()
    text = first.text + second.text + rest.text
    assert text == parse_all("hermes", OUTPUT, ids()).text
    assert calls_of(first) + calls_of(second) == calls_of(parse_all("hermes", OUTPUT, ids()))


def test_every_byte_alone() -> None:
    p = parser("hermes", ids())
    pieces = [p.add(ch) for ch in OUTPUT] + [p.finish()]
    assert "".join(x.text for x in pieces) == parse_all("hermes", OUTPUT, ids()).text
    assert len([c for x in pieces for c in x.calls]) == 2


def test_text_that_only_looks_like_a_tag_and_broken_calls_stay_text() -> None:
    broken = "a <tool a> b <tool_call>{not json}</tool_call> c <tool_call>{"
    got = parse_all("hermes", broken, ids())
    assert got.calls == [] and got.text == broken


def test_streamed_deltas_give_id_and_name_first_then_arguments() -> None:
    s = AutoCallStream()
    deltas = [d for ch in OUTPUT for d in s.add("hermes", ch)] + s.finish()
    calls = [tc for d in deltas for tc in d.get("tool_calls", [])]
    assert calls[0]["id"] and calls[0]["function"] == {"name": "get_weather", "arguments": ""}
    assert calls[1] == {"index": 0, "function": {"arguments": '{"city":"Oslo","days":3}'}}
    assert calls[2]["index"] == 1 and s.called == 2
    assert "".join(d.get("content", "") for d in deltas).strip() == "Let me check both."


def test_qwens_template_takes_its_preset_and_renders_calls_and_results() -> None:
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    template = (TEMPLATES / "qwen3.jinja").read_text()
    presets = load_presets(None)
    chosen = choose(presets, template)
    assert chosen is not None and chosen.family == "qwen3" and chosen.tool_format == "hermes"
    assert chosen.reasoning == "think"
    plain = choose(presets, "<|im_start|>{{ m }}<|im_end|>")
    assert plain is not None and plain.family == "chatml" and plain.tool_format is None
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_time", "arguments": '{"zone": "CET"}'},
    }
    messages = [
        {"role": "user", "content": "time?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "12:00"},
    ]
    tools = [{"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}]
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    prompt = env.from_string(template).render(
        messages=template_messages(messages, True), tools=tools, add_generation_prompt=True
    )
    assert '<tool_call>\n{"name": "get_time", "arguments": {"zone": "CET"}}\n</tool_call>' in prompt
    assert "<tool_response>\n12:00\n</tool_response>" in prompt and '"name": "get_time"' in prompt
    # a template that knows nothing of tool calls reads the call in the message's text
    flat = template_messages(messages, False)
    assert flat[1]["content"] == '{"name":"get_time","arguments":{"zone":"CET"}}'
