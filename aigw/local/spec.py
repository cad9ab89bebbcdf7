"""What the local provider types (llama.cpp, MLX) share: a provider of either runs its models on the
shared engine, costs nothing, is set up from the environment when its library is installed, and
knows its model files (which ones `aigw models pull` fetches, how to find and describe them).

Each type says only what differs: its library, its file format, and its backend.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aigw.domain import Capability
from aigw.engine.backend import Backend, ModelCard
from aigw.local.config import LocalProviderConfig, model_paths
from aigw.local.presets import Preset, load_presets
from aigw.providers.spec import ProbeEnv, ProviderContext, ProviderType, Verdict

if TYPE_CHECKING:
    from aigw.local.provider import LocalProvider

_MAX_LISTED = 3


class LocalType(ProviderType[LocalProviderConfig]):
    config_model = LocalProviderConfig
    is_local = True
    module: str = ""
    """The Python module of the inference library (what must be installed)."""
    extra: str = ""
    """aigw's optional extra that installs it (local, mlx)."""
    default_name: str = ""
    """The provider's name when the environment alone sets it up (no config file)."""
    format: str = ""
    """The model format `aigw models pull --format` names: gguf or mlx."""
    model_noun: str = "model file"
    chat_caps: frozenset[Capability] = frozenset()
    embed_caps: frozenset[Capability] = frozenset()

    @property
    def install(self) -> str:
        """How to install the library, one line (`aigw.extras.install_hint`)."""
        from aigw.extras import install_hint

        return install_hint(self.extra)

    # -- what each local type provides ---------------------------------------------------------

    def backend(self, ctx: ProviderContext) -> Backend:
        raise NotImplementedError

    def discover(self, models_dir: Path) -> dict[str, Path]:
        """The models of this format in the models dir, by name (what `aigw models pull` puts there)."""
        raise NotImplementedError

    def is_model(self, path: Path) -> bool:
        """Whether `path` holds a model of this format."""
        raise NotImplementedError

    def pulled_path(self, models_dir: Path, name: str) -> Path:
        """Where `aigw models pull` keeps the model `name` of this format."""
        raise NotImplementedError

    def describe(self, path: Path, presets: Sequence[Preset] = ()) -> dict[str, Any]:
        """What `aigw models show` prints of a model, read from its files alone (nothing loaded),
        with the preset it takes."""
        raise NotImplementedError

    def companion(self, path: Path) -> Path | None:
        """The vision projector found beside a model (`NAME.mmproj.gguf` by `NAME.gguf`), if any."""
        return None

    def card(self, path: Path, models_dir: Path | None) -> ModelCard:
        """A chat model's capabilities and context, from `describe` (the user's presets too)."""
        info = self.describe(path, load_presets(models_dir))
        known = {c.value for c in Capability}
        caps = frozenset(Capability(c) for c in info.get("capabilities", []) if c in known)
        context = info.get("served_context")
        return ModelCard(caps or self.chat_caps, int(context) if context else None)

    # -- ProviderType --------------------------------------------------------------------------

    def create(self, name: str, config: LocalProviderConfig, ctx: ProviderContext) -> LocalProvider:
        from aigw.local.provider import LocalProvider

        return LocalProvider(name, config, ctx, kind=self, backend=self.backend(ctx))

    def from_environment(self, environ: Mapping[str, str]) -> dict[str, dict[str, Any]]:
        if importlib.util.find_spec(self.module) is None:
            return {}
        return {self.default_name: {"type": self.name}}

    def probe(self, name: str, config: LocalProviderConfig, env: ProbeEnv) -> Verdict:
        """The library is installed, and every model the table names is where it says."""
        if env.find_spec(self.module) is None:
            return Verdict("FAIL", f"{self.name}: {self.module} is not installed", self.install)
        missing = [
            f"{model} ({path})"
            for model, path in model_paths(config, env.paths.models_dir).items()
            if not self.is_model(path)
        ]
        if missing:
            shown = ", ".join(missing[:_MAX_LISTED])
            if len(missing) > _MAX_LISTED:
                shown += f" and {len(missing) - _MAX_LISTED} more"
            return Verdict(
                "FAIL",
                f"{self.name}: {self.model_noun} not found: {shown}",
                f"correct the path under [providers.{name}] models, or fetch it with `aigw models pull NAME`",
            )
        models_dir = env.paths.models_dir
        found = len(self.discover(models_dir)) if config.discover_models and models_dir.is_dir() else 0
        if not config.models and not found:
            detail = f"{self.name}: no models yet"
            fix = "`aigw models pull NAME` fetches one (`aigw models list` shows the catalog)"
            return Verdict("WARN", detail, fix) if env.from_file else Verdict("OK", f"{detail}; {fix}")
        parts = []
        if config.models:
            parts.append(f"{len(config.models)} configured, files present")
        if found:
            parts.append(f"{found} in the models dir")
        return Verdict("OK", f"{self.name}: " + "; ".join(parts))


def local_types(types: list[ProviderType[Any]]) -> list[LocalType]:
    """The local types among `types` (e.g. `registry.loadable()`)."""
    return [t for t in types if isinstance(t, LocalType)]
