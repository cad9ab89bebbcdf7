"""MLX through mlx-lm: models as MLX directories (config.json, safetensors, tokenizer).

Native on Apple Silicon; `mlx[cpu]` runs it on Linux. The chat template is the tokenizer's own.
Constrained output (response_format, forced tool calls) is held to its grammar by llguidance, as
a logits processor (aigw.local.constrain).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from aigw.domain import Capability, Reasoning
from aigw.engine.backend import (
    Emit,
    Finished,
    GenParams,
    GenResult,
    LoadedModel,
    ModelSpec,
    OutputFormat,
    Pending,
    TextPrompt,
)
from aigw.errors import CapabilityError, InvalidRequest
from aigw.local.constrain import Guide
from aigw.local.fim import FimTokens, from_vocabulary, no_fim, spelled, vocabulary_ids
from aigw.local.mlx.batch import MlxBatcher, TextDetok, make_sampler
from aigw.local.prefixes import SavedPrefixes
from aigw.local.presets import Preset, choose, reasons
from aigw.local.presets import stops as preset_stops
from aigw.local.run import Run
from aigw.local.thinking import opens_thinking, template_kwargs
from aigw.local.tools import template_messages, template_refused

DEFAULT_CONTEXT = 4096
AUTO_PARALLEL = 4
Steps = Callable[[int, Any, list[Any]], Iterator[int]]
"""Generation from a prompt: (max_tokens, sampler, logits processors) -> the tokens, one by one."""
CHAT_CAPS = frozenset({
    Capability.CHAT, Capability.STREAM, Capability.JSON_MODE, Capability.JSON_SCHEMA, Capability.TOOLS,
    Capability.COMPLETIONS,
})  # fmt: skip
EMBED_CAPS: frozenset[Capability] = frozenset()


def is_mlx_dir(path: Path) -> bool:
    return (path / "config.json").is_file() and any(path.glob("*.safetensors"))


VisionLoader = Callable[[ModelSpec, "Preset | None"], LoadedModel]
"""Loads a vision model (a directory whose config has a vision_config): aigw.local.mlx.vision."""


class MlxBackend:
    def __init__(
        self,
        presets: Sequence[Preset] = (),
        vision: VisionLoader | None = None,
        prompt_cache_bytes: int = 1024**3,
        memory_budget_bytes: int = 8 * 1024**3,
    ) -> None:
        self.presets = presets
        self._vision = vision
        self.prompt_cache_bytes = prompt_cache_bytes
        self.memory_budget_bytes = memory_budget_bytes

    def estimate_bytes(self, spec: ModelSpec) -> int:
        """The weights plus an fp16 KV cache for each slot's context."""
        weights = sum(p.stat().st_size for p in spec.path.glob("*.safetensors"))
        kv = self._kv_bytes(spec)
        return int(weights * 1.2) if kv is None else weights + self.parallel(spec) * kv

    def _kv_bytes(self, spec: ModelSpec) -> int | None:
        """One sequence's fp16 KV cache over the served context (None: the config is unreadable)."""
        try:
            cfg = json.loads((spec.path / "config.json").read_text())
            layers, hidden = int(cfg["num_hidden_layers"]), int(cfg["hidden_size"])
            heads = int(cfg.get("num_attention_heads", 1)) or 1
            kv_heads = int(cfg.get("num_key_value_heads", heads)) or heads
        except (OSError, ValueError, KeyError):
            return None
        ctx = spec.context or min(int(cfg.get("max_position_embeddings", DEFAULT_CONTEXT)), DEFAULT_CONTEXT)
        return 2 * layers * ctx * (hidden * kv_heads // heads) * 2

    def parallel(self, spec: ModelSpec) -> int:
        """The model's slots: its own or its provider's `parallel`, else as many (up to
        AUTO_PARALLEL) as keep their KV caches within a quarter of the memory budget."""
        if spec.parallel:
            return spec.parallel
        kv = self._kv_bytes(spec) or 1
        return max(1, min(AUTO_PARALLEL, self.memory_budget_bytes // 4 // max(1, kv)))

    def load(self, spec: ModelSpec) -> LoadedModel:
        if spec.embedding:
            raise CapabilityError("the mlx provider serves chat models only", param="model")
        try:
            import mlx_lm
        except ImportError:
            from aigw.extras import install_hint

            raise RuntimeError(f"mlx-lm is not installed ({install_hint('mlx')})") from None
        preset = choose(self.presets, _template(spec.path))
        if "vision_config" in json.loads((spec.path / "config.json").read_text()):
            if self._vision is None:
                raise CapabilityError(f"{spec.name} is a vision model, which this backend does not run")
            return self._vision(spec, preset)
        model, tokenizer = mlx_lm.load(str(spec.path))[:2]
        saved: SavedPrefixes[list[Any]] = SavedPrefixes(self.prompt_cache_bytes)
        return MlxModel(spec, model, tokenizer, preset, saved=saved, parallel=self.parallel(spec))


class MlxModel:
    def __init__(
        self,
        spec: ModelSpec,
        model: Any,
        tokenizer: Any,
        preset: Preset | None = None,
        *,
        saved: SavedPrefixes[list[Any]] | None = None,
        parallel: int = 1,
    ) -> None:
        self.spec = spec
        self.model = model
        self.tokenizer = tokenizer
        self.preset = preset
        cfg = json.loads((spec.path / "config.json").read_text())
        self.context = spec.context or int(cfg.get("max_position_embeddings", DEFAULT_CONTEXT))
        self.config = cfg
        override = preset.chat_template if preset is not None else None
        self.template: str = override or getattr(tokenizer, "chat_template", None) or ""
        self.knows_tools = "tool_calls" in self.template
        self._lltokenizer: Any = None
        self.batcher = MlxBatcher(model, parallel, saved) if saved is not None else None
        """None for a model that does not batch (vision): each generation runs by itself."""
        think = preset is not None and preset.reasoning == "think"
        probe = self._render([{"role": "user", "content": "x"}], None) if think else ""
        tools = preset.tool_format if preset is not None else None
        self._format = OutputFormat(tools, think, think and opens_thinking(probe))
        self.fim = _fim_tokens(tokenizer)

    def capabilities(self) -> frozenset[Capability]:
        return CHAT_CAPS | {Capability.INSERT} if self.fim is not None else CHAT_CAPS

    def _render(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, **kwargs: Any
    ) -> str:
        """The prompt's text (the model's own chat template, or its preset's)."""
        return self._render_shown(template_messages(messages, self.knows_tools), tools, **kwargs)

    def _render_shown(
        self, shown: list[dict[str, Any]], tools: list[dict[str, Any]] | None, **kwargs: Any
    ) -> str:
        override = self.preset.chat_template if self.preset is not None else None
        try:
            text: str = self.tokenizer.apply_chat_template(
                shown,
                add_generation_prompt=True,
                tokenize=False,
                **({"chat_template": override} if override else {}),
                **({"tools": tools} if tools else {}),
                **kwargs,
            )
        except Exception as e:
            raise template_refused(self.spec.name, e) from None
        return text

    def _prompt(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None, **kwargs: Any
    ) -> list[int]:
        """The prompt's tokens."""
        text = self._render(messages, tools, **kwargs)
        tokens: list[int] = self.tokenizer.encode(text, add_special_tokens=False)
        return tokens

    def count_prompt(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        images: tuple[bytes, ...] = (),
        reasoning: Reasoning | None = None,
    ) -> int:
        kwargs = template_kwargs(self.template, reasoning, False, self.spec.name)
        return len(self._prompt(messages, tools, **kwargs))

    def _guide(self, grammar: str | None) -> Guide | None:
        if grammar is None:
            return None
        if self._lltokenizer is None:  # built once per loaded model
            from llguidance.hf import from_tokenizer

            eos = sorted(getattr(self.tokenizer, "eos_token_ids", None) or [self.tokenizer.eos_token_id])
            hf = getattr(self.tokenizer, "_tokenizer", self.tokenizer)
            self._lltokenizer = from_tokenizer(hf, eos_token=eos)
        return Guide(self._lltokenizer, grammar, int(self._lltokenizer.vocab_size))

    def begin(
        self,
        messages: list[dict[str, Any]],
        params: GenParams,
        emit: Emit,
        alive: Callable[[], bool] = lambda: True,
    ) -> Pending:
        """Start a generation: it joins the batch at the next `step`."""
        if self.batcher is None:
            return Finished(self._sequential(messages, params, emit))
        if params.images:
            raise CapabilityError(
                f"{self.spec.name} takes no images (it is not a vision model)", param="messages"
            )
        reasoning = template_kwargs(
            self.template, params.reasoning, params.reasoning_required, self.spec.name
        )
        prompt = self._prompt(messages, params.tools, **reasoning)
        stops = preset_stops(self.preset, params.stop)
        return self._start(prompt, params, stops, emit, alive=alive, field="messages")

    def begin_text(
        self, prompt: TextPrompt, params: GenParams, emit: Emit, alive: Callable[[], bool] = lambda: True
    ) -> Pending:
        """Start a legacy completion: the prompt's tokens as they are, no chat template."""
        if self.batcher is None:
            raise CapabilityError(f"{self.spec.name} is a vision model: it takes chat only", param="model")
        tokens = self._text_tokens(prompt)
        if not tokens:
            raise InvalidRequest("The prompt is empty: there is nothing to continue", param="prompt")
        stops = [s for s in params.stop if s]
        return self._start(tokens, params, stops, emit, alive=alive, field="prompt")

    def _text_tokens(self, prompt: TextPrompt) -> list[int]:
        tok = self.tokenizer
        if prompt.tokens is not None:
            return vocabulary_ids(prompt.tokens, len(tok.get_vocab()), self.spec.name)
        text = prompt.text or ""
        if prompt.suffix is None:
            tokens: list[int] = tok.encode(text)  # the tokenizer's own BOS, when it adds one
            return tokens
        if self.fim is None:
            raise no_fim(self.spec.name)
        plain = getattr(tok, "_tokenizer", tok)  # the code itself: special tokens' texts in it are text

        def encode(s: str) -> list[int]:
            return list(plain(s, add_special_tokens=False, split_special_tokens=True).input_ids) if s else []

        bos = tok.bos_token_id if getattr(tok, "add_bos_token", False) else None
        return self.fim.prompt(encode(text), encode(prompt.suffix), bos)

    def _start(
        self,
        prompt: list[int],
        params: GenParams,
        stops: list[str],
        emit: Emit,
        *,
        alive: Callable[[], bool],
        field: str,
    ) -> Run:
        assert self.batcher is not None
        max_tokens = self._room(len(prompt), params, field)
        processors, eos = self._processors(params)
        run = Run(
            prompt=prompt,
            max_tokens=max_tokens,
            params=params,
            stops=stops,
            emit=emit,
            alive=alive,
            detok=TextDetok(self.tokenizer),
            is_eog=eos.__contains__,
            key=params.cache_key,
        )
        self.batcher.add(run, processors)
        return run

    def step(self) -> None:
        if self.batcher is not None:
            self.batcher.step()

    def generate(self, messages: list[dict[str, Any]], params: GenParams, emit: Emit) -> GenResult:
        """One generation, run to its end (with any others already started)."""
        pending = self.begin(messages, params, emit)
        while not pending.done:
            self.step()
        return pending.outcome()

    def _room(self, size: int, params: GenParams, field: str = "messages") -> int:
        """The tokens a prompt of `size` leaves to generate (a 400 when there are none)."""
        if size >= self.context:
            raise CapabilityError(
                f"The prompt is {size} tokens; {self.spec.name}'s context is {self.context}", param=field
            )
        return min(params.max_tokens or self.context, self.context - size)

    def _processors(self, params: GenParams) -> tuple[list[Any], set[int]]:
        """The request's logits processors (penalties, its grammar) and the end tokens."""
        from mlx_lm.sample_utils import make_logits_processors

        processors = make_logits_processors(repetition_penalty=params.extra.get("repeat_penalty"))
        guide = self._guide(params.grammar)
        if guide is not None:
            processors.append(_constrained(guide))
        eos = set(getattr(self.tokenizer, "eos_token_ids", None) or [self.tokenizer.eos_token_id])
        return processors, eos

    def _sequential(self, messages: list[dict[str, Any]], params: GenParams, emit: Emit) -> GenResult:
        """One generation by itself, through `_inputs` (a vision model's prompt)."""
        reasoning = template_kwargs(
            self.template, params.reasoning, params.reasoning_required, self.spec.name
        )
        size, steps, cached = self._inputs(messages, params, reasoning)
        max_tokens = self._room(size, params)
        processors, eos = self._processors(params)
        run = Run(
            prompt=[0] * size,
            max_tokens=max_tokens,
            params=params,
            stops=preset_stops(self.preset, params.stop),
            emit=emit,
            alive=lambda: True,
            detok=TextDetok(self.tokenizer),
            is_eog=eos.__contains__,
        )
        run.begin(cached)
        for token in steps(max_tokens, make_sampler(params), processors):
            if run.accept(token):
                break
        else:
            run.cancel()  # the model stopped by itself: its whole answer is in
        return run.outcome()

    def _inputs(
        self, messages: list[dict[str, Any]], params: GenParams, reasoning: dict[str, Any]
    ) -> tuple[int, Steps, int]:
        """The prompt's length, how to run generation from it (token by token), and how many of
        its tokens a cache already holds: for the models that do not batch (vision)."""
        raise NotImplementedError

    def embed(self, texts: list[str]) -> tuple[list[list[float]], int]:
        raise CapabilityError(f"{self.spec.name} is not an embedding model", param="model")

    def slots(self) -> tuple[int, int] | None:
        b = self.batcher
        return (b.parallel, min(b.pending, b.parallel)) if b is not None else None

    def cache_bytes(self) -> int:
        return self.batcher.saved_bytes if self.batcher is not None else 0

    def drop_cache(self) -> int:
        return self.batcher.drop_saved() if self.batcher is not None else 0

    def output_format(self) -> OutputFormat:
        return self._format

    def describe(self) -> dict[str, Any]:
        return {
            "format": "mlx",
            "architecture": self.config.get("model_type"),
            "context": self.context,
            "parallel": self.batcher.parallel if self.batcher is not None else 1,
            "quantization": self.config.get("quantization"),
            "template": f"preset {self.preset.family}"
            if self.preset and self.preset.chat_template
            else "tokenizer",
            "preset": self.preset.family if self.preset is not None else None,
        }

    def close(self) -> None:
        import mlx.core as mx

        if self.batcher is not None:
            self.batcher.close()
            self.batcher = None
        self.model = None
        mx.clear_cache()


def _constrained(guide: Guide) -> Any:
    """A logits processor holding generation to `guide`'s grammar. mlx-lm samples a step ahead of
    what it yields, so the processor itself takes each chosen token: the last of `tokens` on every
    call after the first."""
    import mlx.core as mx
    import numpy as np

    calls = 0

    def process(tokens: Any, logits: Any) -> Any:
        nonlocal calls
        if calls:
            guide.take(int(tokens[-1].item()))
        calls += 1
        allowed = guide.allowed()
        width = logits.shape[-1]
        if allowed.shape[0] < width:
            allowed = np.concatenate([allowed, np.zeros(width - allowed.shape[0], dtype=bool)])
        return mx.where(mx.array(allowed[:width]), logits, -mx.inf)

    return process


def _fim_tokens(tokenizer: Any) -> FimTokens | None:
    vocab: dict[str, int] = tokenizer.get_vocab()
    return from_vocabulary(vocab.get)


def _vocabulary(path: Path) -> frozenset[str]:
    """The texts of a model's tokens, from its tokenizer.json (empty when there is none)."""
    try:
        data = json.loads((path / "tokenizer.json").read_text())
    except (OSError, ValueError):
        return frozenset()
    added = {t.get("content") for t in data.get("added_tokens") or () if isinstance(t, dict)}
    vocab = (data.get("model") or {}).get("vocab")
    return frozenset(str(t) for t in added | set(vocab if isinstance(vocab, dict) else ()) if t)


def _template(path: Path) -> str | None:
    """The chat template in a model directory's tokenizer_config.json (or its chat_template.jinja)."""
    try:
        cfg = json.loads((path / "tokenizer_config.json").read_text())
    except (OSError, ValueError):
        cfg = {}
    template = cfg.get("chat_template") if isinstance(cfg, dict) else None
    if isinstance(template, str):
        return template
    jinja = path / "chat_template.jinja"
    return jinja.read_text() if jinja.is_file() else None


def describe_dir(path: Path, presets: Sequence[Preset] = ()) -> dict[str, Any]:
    """What `aigw models show` prints, from config.json and the file sizes alone (no loading)."""
    cfg = json.loads((path / "config.json").read_text())
    quant = cfg.get("quantization")
    bits = f"{quant.get('bits')}-bit" if isinstance(quant, dict) and quant.get("bits") else "none"
    own = _template(path)
    preset = choose(presets, own)
    caps = CHAT_CAPS | ({Capability.REASONING} if reasons(preset) else set())
    if "vision_config" in cfg:
        caps |= {Capability.VISION}
    elif spelled(_vocabulary(path)):
        caps |= {Capability.INSERT}
    text_cfg = cfg.get("text_config") if isinstance(cfg.get("text_config"), dict) else cfg
    trained = cfg.get("max_position_embeddings") or text_cfg.get("max_position_embeddings")
    return {
        "path": str(path),
        "format": "mlx",
        "size_bytes": sum(p.stat().st_size for p in path.rglob("*") if p.is_file()),
        "name": path.name,
        "architecture": cfg.get("model_type", "?"),
        "quantization": bits,
        "context": trained,
        "served_context": int(trained) if trained else DEFAULT_CONTEXT,
        "chat_template": "from the tokenizer" if own else "none in the tokenizer files",
        "template_text": own or "",
        "preset": f"{preset.family} ({preset.source})" if preset is not None else "none",
        "tool_format": preset.tool_format if preset is not None else None,
        "capabilities": sorted(c.value for c in caps),
    }
