from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from aigw.config import load_config, masked_dump
from aigw.errors import ConfigError
from aigw.paths import Paths
from aigw.providers.anthropic import TYPE as ANTHROPIC
from aigw.providers.openai import TYPE as OPENAI
from aigw.providers.registry import ProviderRegistry

TYPES = ProviderRegistry(types={"openai": OPENAI, "anthropic": ANTHROPIC})


def test_no_file_configures_providers_from_environment(tmp_path: Path) -> None:
    env = {"OPENAI_API_KEY": "sk-1", "CLAUDE_API_KEY": "ck-2", "OPENAI_BASE_URL": "http://h/v1"}
    cfg = load_config(tmp_path / "none.toml", types=TYPES, environ=env)
    assert set(cfg.providers) == {"openai", "anthropic"}
    assert cfg.providers["openai"].base_url == "http://h/v1"  # type: ignore[attr-defined]
    assert cfg.providers["anthropic"].api_key_env == "CLAUDE_API_KEY"  # type: ignore[attr-defined]
    assert OPENAI.api_key(cfg.providers["openai"], env) == SecretStr("sk-1")  # type: ignore[arg-type]


def test_no_file_and_no_environment_is_empty(tmp_path: Path) -> None:
    cfg = load_config(tmp_path / "none.toml", types=TYPES, environ={})
    assert cfg.providers == {} and cfg.server.port == 8080 and cfg.server.host == "127.0.0.1"


def test_type_defaults_to_table_name(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text('[providers.openai]\n[providers.work]\ntype = "openai"\nbase_url = "http://x/v1"\n')
    cfg = load_config(p, types=TYPES, environ={})
    assert cfg.provider_type("openai") == "openai" and cfg.provider_type("work") == "openai"
    # OPENAI_API_KEY is for OpenAI's own API only: never sent to another base_url.
    assert OPENAI.key_vars(cfg.providers["openai"]) == ("OPENAI_API_KEY",)  # type: ignore[arg-type]
    assert OPENAI.key_vars(cfg.providers["work"]) == ()  # type: ignore[arg-type]


def test_secrets_are_masked_everywhere(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text('[providers.openai]\napi_key = "sk-secret"\nheaders = { "X-Token" = "tok-secret" }\n')
    cfg = load_config(p, types=TYPES, environ={})
    for text in (repr(cfg), str(cfg), str(masked_dump(cfg)), cfg.model_dump_json()):
        assert "sk-secret" not in text and "tok-secret" not in text


def test_provider_name_with_slash_rejected(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text('[providers."a/b"]\ntype = "openai"\n')
    with pytest.raises(ConfigError) as e:
        load_config(p, types=TYPES, environ={})
    assert "contain no '/'" in e.value.message and str(p) in e.value.message


def test_several_problems_in_one_line(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text("[server]\nport = 'x'\nhost = 3\n")
    with pytest.raises(ConfigError) as e:
        load_config(p, types=TYPES, environ={})
    assert "\n" not in e.value.message
    assert "server.port" in e.value.message and "server.host" in e.value.message


def test_paths_under_aigw_home(tmp_path: Path) -> None:
    p = Paths.from_env({"AIGW_HOME": str(tmp_path)})
    assert p.config_file == tmp_path / "config.toml"
    assert p.database == tmp_path / "aigw.db"
    assert p.log_file == tmp_path / "logs" / "aigw.log"
    assert p.models_dir == tmp_path / "models"


def test_platformdirs_without_aigw_home() -> None:
    p = Paths.from_env({})
    assert p.config_file.name == "config.toml" and "aigw" in str(p.config_file)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '[providers.openai]\napi_key = "sk-abc\\n"\n',
            "providers.openai.api_key: contains a control character",
        ),
        (
            '[providers.openai]\nheaders = { X = "a\\rb" }\n',
            "providers.openai.headers: contains a control character",
        ),
        ('[server]\nallowed_origins = ["*"]\n', "server.allowed_origins: '*' is not an origin"),
        (
            '[providers.openai]\nbase_url = "localhost:8000"\n',
            "providers.openai.base_url: must start with http",
        ),
    ],
)
def test_refused_values(tmp_path: Path, text: str, expected: str) -> None:
    p = tmp_path / "c.toml"
    p.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(p, types=TYPES, environ={})
    assert expected in e.value.message and "sk-abc" not in e.value.message


def test_key_from_environment_is_stripped_and_checked(tmp_path: Path) -> None:
    cfg = load_config(tmp_path / "none.toml", types=TYPES, environ={"OPENAI_API_KEY": "sk-1\n"})
    openai = cfg.providers["openai"]
    assert OPENAI.api_key(openai, {"OPENAI_API_KEY": "sk-1\n"}) == SecretStr("sk-1")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        OPENAI.check(openai, {"OPENAI_API_KEY": "sk-\x01x"})  # type: ignore[arg-type]


def test_credentials_in_base_url_are_not_shown(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text(
        '[providers.openai]\nbase_url = "https://user:tok-secret@h.example:8443/v1?api-key=k-secret"\n'
    )
    shown = str(masked_dump(load_config(p, types=TYPES, environ={})))
    assert "tok-secret" not in shown and "k-secret" not in shown and "https://h.example:8443/v1" in shown


def test_each_type_validates_its_own_keys(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text(
        '[providers.claude]\ntype = "anthropic"\nstream_usage = false\n'
        '[providers.work]\ntype = "openai"\nstream_usage = false\n'
    )
    with pytest.raises(ConfigError) as e:
        load_config(p, types=TYPES, environ={})
    # stream_usage is an openai key: anthropic's tables refuse it
    assert e.value.message.endswith("providers.claude.stream_usage: unknown key")


def test_type_specific_keys_survive_a_dump(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text('[providers.work]\ntype = "openai"\nbase_url = "http://x/v1"\nstream_usage = false\n')
    assert masked_dump(load_config(p, types=TYPES, environ={}))["providers"]["work"]["stream_usage"] is False


def test_an_unknown_type_names_the_known_ones(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text('[providers.x]\ntype = "nope"\n')
    with pytest.raises(ConfigError) as e:
        load_config(p, types=TYPES, environ={})
    assert "providers.x.type: unknown provider type 'nope'; known types: anthropic, openai" in e.value.message


def test_model_patterns_name_known_aliases(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    base = '[providers.openai]\n[models.small]\ntargets = [{ provider = "openai", model = "gpt-4o-mini" }]\n'
    p.write_text(base + '[model_patterns]\n"claude-*haiku*" = "small"\n')
    assert load_config(p, types=TYPES, environ={}).model_patterns == {"claude-*haiku*": "small"}
    p.write_text(base + '[model_patterns]\n"claude-*" = "big"\n')
    with pytest.raises(ConfigError) as e:
        load_config(p, types=TYPES, environ={})
    assert "model_patterns.'claude-*': unknown alias 'big' (known: small)" in e.value.message


def test_telemetry_table(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    assert load_config(p, types=TYPES, environ={}).telemetry.otlp_endpoint is None  # off by default
    p.write_text(
        '[telemetry]\notlp_endpoint = "http://u:ep-secret@127.0.0.1:4318/"\n'
        'headers = { authorization = "Bearer hdr-secret" }\n'
    )
    cfg = load_config(p, types=TYPES, environ={})
    t = cfg.telemetry
    assert (t.otlp_endpoint, t.protocol, t.service_name, t.log_content) == (
        "http://u:ep-secret@127.0.0.1:4318",
        "http/protobuf",
        "aigw",
        False,
    )
    shown = str(masked_dump(cfg))
    assert "hdr-secret" not in shown and "ep-secret" not in shown and "http://127.0.0.1:4318" in shown
    for bad in ('otlp_endpoint = "127.0.0.1:4318"', 'protocol = "thrift"', "sample_rate = 0.5"):
        p.write_text(f"[telemetry]\n{bad}\n")
        with pytest.raises(ConfigError):
            load_config(p, types=TYPES, environ={})
