"""Per-family presets of local chat models (models/presets/*.toml in the wheel, as `aigw.models`), with
the user's own in the models dir taking precedence (see models/README.md).

A loaded model takes the most specific preset (the most markers) whose template markers all occur
in its chat template, the first of those on a tie; the preset's stop strings join every
generation's, its `chat_template`, when it has one, replaces the model's own, and its
`tool_format` says how the family writes tool calls (aigw.local.toolparse).
"""

from __future__ import annotations

import logging
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aigw.errors import ConfigError
from aigw.local.toolparse import FORMATS

PACKAGE = "aigw.models"
"""The package the model library ships as (the top-level models/ folder of the source tree)."""
log = logging.getLogger("aigw.local")


class _Match(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    template: list[str] = Field(min_length=1)
    """Markers that all occur in the chat template of a model of this family."""


class _PresetFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    family: str = Field(min_length=1)
    description: str = ""
    match: _Match
    stop: list[str] = Field(default_factory=list)
    chat_template: str | None = None
    tool_format: str | None = None
    reasoning: Literal["think"] | None = None


@dataclass(frozen=True, slots=True)
class Preset:
    family: str
    description: str
    markers: tuple[str, ...]
    stop: tuple[str, ...]
    chat_template: str | None
    source: str
    tool_format: str | None = None
    reasoning: str | None = None
    """"think": the family writes its reasoning in <think> tags."""
    """Where it was read from (shown by `aigw models show`)."""

    def matches(self, template: str) -> bool:
        return all(m in template for m in self.markers)


def _parse(text: str, source: str) -> Preset:
    try:
        raw = _PresetFile.model_validate(tomllib.loads(text))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{source}: invalid TOML: {e}") from None
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())
        raise ConfigError(f"{source}: {problems}") from None
    if raw.tool_format is not None and raw.tool_format not in FORMATS:
        known = ", ".join(sorted(FORMATS))
        raise ConfigError(f"{source}: tool_format {raw.tool_format!r} is not one of {known}")
    return Preset(
        raw.family,
        raw.description,
        tuple(raw.match.template),
        tuple(s for s in raw.stop if s),
        raw.chat_template,
        source,
        raw.tool_format,
        raw.reasoning,
    )


def _files(folder: Traversable | Path) -> list[tuple[str, Traversable | Path]]:
    if not folder.is_dir():
        return []
    return sorted((f.name, f) for f in folder.iterdir() if f.name.endswith(".toml"))


def load_presets(models_dir: Path | None) -> list[Preset]:
    """The shipped presets, with the user's (in `models_dir/presets`) first and replacing shipped
    ones of the same file name. A user preset that does not parse is skipped with a warning: one
    bad file must not stop every local model."""
    user: dict[str, Preset] = {}
    for name, f in _files(models_dir / "presets") if models_dir is not None else []:
        try:
            user[name] = _parse(f.read_text(encoding="utf-8"), str(f))
        except (ConfigError, OSError, UnicodeDecodeError) as e:
            log.warning("preset %s skipped: %s", f, getattr(e, "message", e))
    shipped = [
        _parse(f.read_text(encoding="utf-8"), f"{PACKAGE}/presets/{name}")
        for name, f in _files(resources.files(PACKAGE).joinpath("presets"))
        if name not in user
    ]
    return [*user.values(), *shipped]


def choose(presets: Sequence[Preset], template: str | None) -> Preset | None:
    """The preset for a model with this chat template (None: no template, or no family matches)."""
    if not template:
        return None
    matching = [p for p in presets if p.matches(template)]
    return max(matching, key=lambda p: len(p.markers), default=None)  # max keeps the first on a tie


def reasons(preset: Preset | None) -> bool:
    """Does the family answer with its reasoning apart (<think> tags, or harmony's channels)?"""
    return preset is not None and (preset.reasoning is not None or preset.tool_format == "harmony")


def stops(preset: Preset | None, request: Iterable[str]) -> list[str]:
    """A generation's stop strings: the request's, then the family's end-of-turn markers."""
    out = [s for s in request if s]
    if preset is not None:
        out.extend(s for s in preset.stop if s not in out)
    return out
