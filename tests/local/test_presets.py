"""The model library: presets and the catalog shipped as aigw.models, the user's own overriding them,
and a preset's stop strings and chat template taking effect in real llama.cpp."""

from __future__ import annotations

import json
from pathlib import Path

import openai
import pytest

from aigw.errors import ConfigError
from aigw.local.catalog import load_catalog
from aigw.local.presets import choose, load_presets, stops
from tests.fixtures.daemon import DaemonProcess, free_port, write_config
from tests.local.conftest import needs_llama_cpp

# the tiny GGUF's own template (tests/fixtures/tiny_gguf.py), which no shipped family matches
CHAT_TEMPLATE = "{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n{% endfor %}"
CHAT_TEMPLATE += "{% if add_generation_prompt %}assistant:{% endif %}"
QWEN_TEMPLATE = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
LLAMA3_TEMPLATE = "<|start_header_id|>{{ role }}<|end_header_id|>{{ content }}<|eot_id|>"


def test_shipped_presets_are_chosen_by_the_chat_template() -> None:
    presets = load_presets(None)
    assert {p.family for p in presets} >= {"chatml", "llama3", "gemma", "phi3", "mistral"}
    assert (p := choose(presets, QWEN_TEMPLATE)) is not None and p.family == "chatml"
    assert (p := choose(presets, LLAMA3_TEMPLATE)) is not None and p.family == "llama3"
    assert choose(presets, CHAT_TEMPLATE) is None and choose(presets, None) is None
    chatml = choose(presets, QWEN_TEMPLATE)
    assert stops(chatml, ["END", ""]) == ["END", "<|im_end|>", "<|endoftext|>"]
    assert stops(None, ["", "x"]) == ["x"]


def test_user_presets_come_first_and_replace_shipped_ones_by_name(tmp_path: Path) -> None:
    (tmp_path / "presets").mkdir()
    (tmp_path / "presets" / "chatml.toml").write_text(
        'family = "my-chatml"\nmatch = { template = ["<|im_start|>"] }\nstop = ["###"]\n'
    )
    (tmp_path / "presets" / "house.toml").write_text(
        'family = "house"\nmatch = { template = ["assistant:"] }\nchat_template = "{{ messages }}"\n'
    )
    presets = load_presets(tmp_path)
    assert [p.family for p in presets][:2] == ["my-chatml", "house"]
    assert "chatml" not in {p.family for p in presets}
    assert (p := choose(presets, CHAT_TEMPLATE)) is not None and p.chat_template == "{{ messages }}"


def test_a_broken_user_preset_is_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "presets").mkdir()
    (tmp_path / "presets" / "bad.toml").write_text('family = "bad"\nmatch = { template = [] }\nstops = 1\n')
    presets = load_presets(tmp_path)
    assert "bad" not in {p.family for p in presets} and "chatml" in {p.family for p in presets}
    assert "bad.toml skipped" in caplog.text and "match.template" in caplog.text


def test_user_catalog_adds_and_replaces_entries(tmp_path: Path) -> None:
    shipped = load_catalog(None)
    assert shipped.default in shipped.entries
    (tmp_path / "catalog.toml").write_text(
        '[models."house-1b"]\ndescription = "ours"\ncontext = 4096\n'
        'gguf = { repo = "us/house", file = "house.gguf" }\n'
        f'[models."{shipped.default}"]\ndescription = "replaced"\ncontext = 1\n'
    )
    cat = load_catalog(tmp_path)
    assert cat.default == shipped.default
    assert cat.entries["house-1b"].gguf is not None and cat.entries["house-1b"].gguf.file == "house.gguf"
    assert cat.entries[shipped.default].description == "replaced"
    assert set(shipped.entries) < set(cat.entries)
    (tmp_path / "catalog.toml").write_text("[models.x]\ngguf = 3\n")
    with pytest.raises(ConfigError, match=r"catalog\.toml is invalid"):
        load_catalog(tmp_path)


@pytest.mark.process
def test_a_preset_takes_effect_in_llama_cpp(tmp_path: Path) -> None:
    """The tiny GGUF's own template matches no shipped family. A user preset matching it adds a stop
    string (generation ends before it) and then replaces the template (a different prompt, so a
    different greedy answer)."""
    needs_llama_cpp()
    from tests.fixtures.tiny_gguf import write_tiny_llama

    gguf = tmp_path / "tiny.gguf"
    write_tiny_llama(gguf, seed=3)
    body = {"messages": [{"role": "user", "content": "Hello"}], "temperature": 0, "max_tokens": 24}

    def answer(preset: str | None) -> str:
        home = tmp_path / f"home-{abs(hash(preset))}"
        if preset is not None:
            (home / "models" / "presets").mkdir(parents=True)
            (home / "models" / "presets" / "tiny.toml").write_text(preset)
        port = free_port()
        write_config(home, f'[server]\nport = {port}\n[providers.local]\ntype = "llama_cpp"\n'
                     f'models = {{ tiny = "{gguf}" }}\n')  # fmt: skip
        d = DaemonProcess(home, port).start()
        try:
            client = openai.OpenAI(base_url=d.url + "/v1", api_key="unused", max_retries=0)
            out = client.chat.completions.create(model="local/tiny", **body)  # type: ignore[call-overload]
            return str(out.choices[0].message.content)
        finally:
            assert d.terminate() == 0

    plain = answer(None)
    assert len(plain) == 24
    stop = plain[10:12]
    matching = 'family = "tiny"\nmatch = { template = ["assistant:"] }\n'
    stopped = answer(f"{matching}stop = [{json.dumps(stop)}]\n")
    assert stopped == plain[: plain.index(stop)]
    other = 'SYSTEM NOTE {% for m in messages %}[{{ m["role"] }}] {{ m["content"] }}{% endfor %} reply:'
    templated = answer(f'{matching}chat_template = """{other}"""\n')
    assert templated != plain and len(templated) == 24
