"""Model names in Ollama's `name:tag` form. aigw's names (aliases, `provider/model`, a provider's
bare model) are Ollama names with the tag `latest`; the model index takes `name:latest` as `name`
unless something is known by the whole name (aigw.gateway.models.ModelIndex.untagged), and a name
with another tag is looked up whole (an alias may be called `qwen3:8b`)."""

from __future__ import annotations

LATEST = ":latest"


def to_ollama(name: str) -> str:
    """`local/qwen` -> `local/qwen:latest`; a name that has a tag already stays as it is."""
    last = name.rsplit("/", 1)[-1]
    return name if ":" in last else name + LATEST


def file_name(name: str) -> str:
    """The pulled model a name means: `local/qwen:latest` -> `qwen`."""
    bare = name[: -len(LATEST)] if name.endswith(LATEST) else name
    return bare.rsplit("/", 1)[-1]
