"""An alias's `strategy` and its targets' `weight`: what is accepted, and how refusals read."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import tomli_w

from aigw.config import Config, load_config, masked_dump
from aigw.errors import ConfigError
from aigw.providers.openai import TYPE as OPENAI
from aigw.providers.registry import ProviderRegistry

TYPES = ProviderRegistry(types={"openai": OPENAI})
PROVIDERS = """
[providers.r1]
type = "openai"
base_url = "http://127.0.0.1:9/v1"
[providers.r2]
type = "openai"
base_url = "http://127.0.0.1:10/v1"
"""


def load(tmp_path: Path, alias: str) -> Config:
    p = tmp_path / "c.toml"
    p.write_text(PROVIDERS + "[models.pool]\n" + alias)
    return load_config(p, types=TYPES, environ={})


def refusal(tmp_path: Path, alias: str) -> str:
    with pytest.raises(ConfigError) as e:
        load(tmp_path, alias)
    assert "\n" not in e.value.message
    return e.value.message


TWO = 'targets = [{ provider = "r1", model = "m" }, { provider = "r2", model = "m" }]\n'


def test_strategy_defaults_to_ordered_and_is_shown(tmp_path: Path) -> None:
    cfg = load(tmp_path, TWO)
    assert cfg.models["pool"].strategy == "ordered"
    dumped = masked_dump(cfg)
    assert dumped["models"]["pool"]["strategy"] == "ordered"
    assert all("weight" not in t for t in dumped["models"]["pool"]["targets"])


@pytest.mark.parametrize("strategy", ["ordered", "round_robin", "weighted", "least_busy"])
def test_every_strategy_is_accepted(tmp_path: Path, strategy: str) -> None:
    cfg = load(tmp_path, f'strategy = "{strategy}"\n' + TWO)
    assert cfg.models["pool"].strategy == strategy


def test_an_unknown_strategy_names_the_known_ones(tmp_path: Path) -> None:
    msg = refusal(tmp_path, 'strategy = "random"\n' + TWO)
    assert "models.pool.strategy: unknown strategy 'random'" in msg
    assert "known: ordered, round_robin, weighted, least_busy" in msg


def test_weights(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        'strategy = "weighted"\n'
        'targets = [{ provider = "r1", model = "m", weight = 3 }, { provider = "r2", model = "m" }]\n',
    )
    targets = cfg.models["pool"].targets
    assert (targets[0].weight, targets[1].weight) == (3.0, None)  # None: the default, 1


@pytest.mark.parametrize(
    ("weight", "expected"),
    [
        ("0", "models.pool.targets.0.weight: Input should be greater than 0"),
        ("-2", "models.pool.targets.0.weight: Input should be greater than 0"),
        ("true", "models.pool.targets.0.weight: Input should be a valid number"),
        ('"3"', "models.pool.targets.0.weight: Input should be a valid number"),
        ("inf", "models.pool.targets.0.weight: Input should be a finite number"),
    ],
)
def test_a_weight_must_be_a_positive_number(tmp_path: Path, weight: str, expected: str) -> None:
    msg = refusal(
        tmp_path,
        f'strategy = "weighted"\ntargets = [{{ provider = "r1", model = "m", weight = {weight} }}]\n',
    )
    assert expected in msg


@pytest.mark.parametrize("strategy", [None, "ordered", "round_robin", "least_busy"])
def test_a_weight_without_the_weighted_strategy_is_refused(tmp_path: Path, strategy: str | None) -> None:
    line = "" if strategy is None else f'strategy = "{strategy}"\n'
    msg = refusal(
        tmp_path,
        line + 'targets = [{ provider = "r1", model = "m" }, { provider = "r2", model = "m", weight = 2 }]\n',
    )
    assert 'models.pool: targets[1].weight needs strategy = "weighted"' in msg
    assert f"this alias's strategy is '{strategy or 'ordered'}'" in msg


def test_a_balanced_alias_names_each_target_once(tmp_path: Path) -> None:
    twice = 'targets = [{ provider = "r1", model = "m" }, { provider = "r1", model = "m" }]\n'
    msg = refusal(tmp_path, 'strategy = "round_robin"\n' + twice)
    assert "models.pool: targets[1]: r1/m is listed twice" in msg
    load(tmp_path, twice)  # an ordered chain may try a target again later


def test_a_shown_config_loads_again(tmp_path: Path) -> None:
    """`aigw config show > config.toml` gives back the same aliases (no stray default weights)."""
    cfg = load(
        tmp_path,
        'strategy = "weighted"\n'
        'targets = [{ provider = "r1", model = "m", weight = 0.5 }, { provider = "r2", model = "m" }]\n',
    )
    again = tmp_path / "again.toml"
    again.write_text(tomli_w.dumps(masked_dump(cfg)))
    assert tomllib.loads(again.read_text())["models"]["pool"]["strategy"] == "weighted"
    assert load_config(again, types=TYPES, environ={}).models == cfg.models
