"""Reasoning on local models: <think> text split into reasoning_content, whole and streamed (split
at every position), with the family's real chat template choosing it (Qwen3's, DeepSeek-R1's, as
fixtures), and reasoning_effort mapped onto what the template takes."""

from __future__ import annotations

from pathlib import Path

import pytest

from aigw.domain import Reasoning
from aigw.engine.backend import OutputFormat
from aigw.errors import CapabilityError
from aigw.local.presets import choose, load_presets
from aigw.local.shape import Shaper
from aigw.local.thinking import ThinkSplit, opens_thinking, split_whole, template_kwargs

TEMPLATES = Path(__file__).parent.parent / "fixtures" / "templates"
ANSWER = "<think>\nThe user wants the weather.\nCall the tool.\n</think>\n\nLet me check."
OPENED = "The user wants the weather.\n</think>\n\nLet me check."


def test_a_whole_answer_splits_into_reasoning_and_content() -> None:
    assert split_whole(ANSWER, False) == ("The user wants the weather.\nCall the tool.", "Let me check.")
    assert split_whole(OPENED, True) == ("The user wants the weather.", "Let me check.")
    assert split_whole("no thinking here", False) == ("", "no thinking here")
    assert split_whole("<think>cut short", False) == ("cut short", "")


@pytest.mark.parametrize(("text", "opened"), [(ANSWER, False), (OPENED, True)])
def test_a_stream_split_anywhere_gives_the_same(text: str, opened: bool) -> None:
    whole = split_whole(text, opened)
    for cut in range(len(text) + 1):
        s = ThinkSplit(opened)
        parts = [s.add(text[:cut]), s.add(text[cut:]), s.finish()]
        assert ("".join(p[0] for p in parts), "".join(p[1] for p in parts)) == whole, cut
    s = ThinkSplit(opened)
    parts = [s.add(ch) for ch in text] + [s.finish()]
    assert ("".join(p[0] for p in parts), "".join(p[1] for p in parts)) == whole


def test_reasoning_then_a_tool_call_shape_into_one_message_and_ordered_deltas() -> None:
    text = ANSWER + '\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>'
    shaper = Shaper(forced=False, auto=True, tools=frozenset({"get_weather"}))
    shaper.begin(OutputFormat("hermes", True, False))
    message, finish = shaper.message(text, "stop")
    assert finish == "tool_calls" and message["reasoning_content"].startswith("The user wants")
    assert message["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": '{"city":"Oslo"}'}
    streamed = Shaper(forced=False, auto=True, tools=frozenset({"get_weather"}))
    streamed.begin(OutputFormat("hermes", True, False))
    deltas = [d for ch in text for d in streamed.add(ch)] + streamed.finish()
    kinds = [next(iter(d)) for d in deltas]
    assert kinds.index("reasoning_content") < kinds.index("content") < kinds.index("tool_calls")
    assert streamed.finish_reason("stop") == "tool_calls"


def test_templates_choose_their_family_and_whether_the_prompt_opens_the_block() -> None:
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    presets = load_presets(None)
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    for name, family, opened in [("qwen3", "qwen3", False), ("deepseek-r1-distill", "deepseek-r1", True)]:
        template = (TEMPLATES / f"{name}.jinja").read_text()
        chosen = choose(presets, template)
        assert chosen is not None and chosen.family == family and chosen.reasoning == "think"
        prompt = env.from_string(template).render(
            messages=[{"role": "user", "content": "hi"}], add_generation_prompt=True, bos_token=""
        )
        assert opens_thinking(prompt) is opened


def test_reasoning_effort_maps_onto_the_template_or_is_refused() -> None:
    qwen3 = (TEMPLATES / "qwen3.jinja").read_text()
    assert template_kwargs(qwen3, Reasoning("none"), True, "m") == {"enable_thinking": False}
    assert template_kwargs(qwen3, Reasoning("high"), False, "m") == {"enable_thinking": True}
    harmony = "{{ reasoning_effort }}"  # gpt-oss's template reads reasoning_effort itself
    assert template_kwargs(harmony, Reasoning("xhigh"), True, "m") == {"reasoning_effort": "high"}
    assert template_kwargs("{{ messages }}", Reasoning("low"), False, "m") == {}  # a hint gives way
    with pytest.raises(CapabilityError) as e:
        template_kwargs("{{ messages }}", Reasoning("low"), True, "m")
    assert e.value.param == "reasoning_effort"


def test_gpt_oss_channels_give_reasoning_and_answer_without_tools() -> None:
    text = "<|channel|>analysis<|message|>Think.<|end|><|start|>assistant<|channel|>final<|message|>Hi."
    shaper = Shaper(forced=False, auto=False)
    shaper.begin(OutputFormat("harmony"))
    assert shaper.message(text, "stop") == (
        {"role": "assistant", "content": "Hi.", "reasoning_content": "Think."},
        "stop",
    )
    streamed = Shaper(forced=False, auto=False)
    streamed.begin(OutputFormat("harmony"))
    deltas = [d for ch in text for d in streamed.add(ch)] + streamed.finish()
    assert "".join(d.get("reasoning_content", "") for d in deltas) == "Think."
    assert "".join(d.get("content", "") for d in deltas) == "Hi."


def test_a_grammar_held_answer_is_never_taken_for_reasoning() -> None:
    shaper = Shaper(forced=False, auto=False, constrained=True)  # response_format on DeepSeek-R1
    shaper.begin(OutputFormat(None, True, True))
    assert shaper.message('{"a": 1}', "stop") == ({"role": "assistant", "content": '{"a": 1}'}, "stop")
    assert shaper.add('{"a": 1}') == [{"content": '{"a": 1}'}]
