"""llama.cpp through llama-cpp-python: GGUF models, Metal on Apple Silicon, CPU elsewhere.

The chat template comes from the GGUF's own metadata (`tokenizer.chat_template`); constrained
output (response_format, forced tool calls) is held to its grammar by llguidance, which masks
each step's logits (aigw.local.constrain).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from aigw.domain import Capability, Reasoning
from aigw.engine.backend import Emit, GenParams, GenResult, LoadedModel, ModelSpec, OutputFormat, TextPrompt
from aigw.errors import CapabilityError, InvalidRequest
from aigw.local.constrain import Guide
from aigw.local.fim import FimTokens, from_ids, gguf_has_fim, no_fim, vocabulary_ids
from aigw.local.llama_cpp.batch import Batcher
from aigw.local.llama_cpp.vision import Vision
from aigw.local.prefixes import SavedPrefixes
from aigw.local.presets import Preset, choose, reasons
from aigw.local.presets import stops as preset_stops
from aigw.local.run import ByteDetok, Run
from aigw.local.thinking import opens_thinking, template_kwargs
from aigw.local.tools import template_messages, template_refused

if TYPE_CHECKING:
    import llama_cpp

# Used when a GGUF carries no chat template of its own.
FALLBACK_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)
DEFAULT_CONTEXT = 4096
AUTO_PARALLEL = 4
CHAT_CAPS = frozenset({
    Capability.CHAT, Capability.STREAM, Capability.JSON_MODE, Capability.JSON_SCHEMA, Capability.TOOLS,
    Capability.COMPLETIONS,
})  # fmt: skip
EMBED_CAPS = frozenset({Capability.EMBED})
MMPROJ_SUFFIX = ".mmproj.gguf"
"""A model's vision projector, beside it: NAME.gguf and NAME.mmproj.gguf."""


def is_projector(path: Path) -> bool:
    """A vision projector file (ours, or llama.cpp's mmproj-*.gguf naming), not a model."""
    return path.name.endswith(MMPROJ_SUFFIX) or path.name.startswith("mmproj")


def gguf_metadata(path: str) -> dict[str, Any]:
    """Scalar metadata of a GGUF file, read without loading its tensors."""
    from gguf import GGUFReader

    reader = GGUFReader(path, "r")
    out: dict[str, Any] = {}
    for name, field in reader.fields.items():
        if name.startswith(
            (
                "tokenizer.ggml.tokens",
                "tokenizer.ggml.scores",
                "tokenizer.ggml.token_type",
                "tokenizer.ggml.merges",
            )
        ):
            continue
        try:
            out[name] = field.contents()
        except (ValueError, IndexError):
            continue
    return out


class LlamaCppBackend:
    def __init__(
        self,
        *,
        gpu_layers: int = -1,
        threads: int | None = None,
        presets: Sequence[Preset] = (),
        memory_budget_bytes: int = 8 * 1024**3,
        prompt_cache_bytes: int = 1024**3,
    ) -> None:
        self.gpu_layers = gpu_layers
        self.threads = threads
        self.presets = presets
        self.memory_budget_bytes = memory_budget_bytes
        self.prompt_cache_bytes = prompt_cache_bytes

    def estimate_bytes(self, spec: ModelSpec) -> int:
        """Weights (the file, memory-mapped) plus an f16 KV cache for each slot's context."""
        size = spec.path.stat().st_size
        try:
            meta = gguf_metadata(str(spec.path))
        except Exception:  # an unreadable header is reported when loading; estimate from size
            return int(size * 1.2)
        slots = 1 if spec.embedding else self.parallel(spec, meta)
        return size + slots * self._kv_bytes(spec, meta)

    def _kv_bytes(self, spec: ModelSpec, meta: dict[str, Any]) -> int:
        """One sequence's f16 KV cache over the served context."""
        arch = meta.get("general.architecture", "llama")
        layers = int(meta.get(f"{arch}.block_count", 0))
        embd = int(meta.get(f"{arch}.embedding_length", 0))
        heads = int(meta.get(f"{arch}.attention.head_count", 1)) or 1
        kv_heads = int(meta.get(f"{arch}.attention.head_count_kv", heads)) or heads
        return 2 * layers * self._context(spec, meta) * (embd * kv_heads // heads) * 2

    def parallel(self, spec: ModelSpec, meta: dict[str, Any]) -> int:
        """The model's slots: its own or its provider's `parallel`, else as many (up to
        AUTO_PARALLEL) as keep their KV caches within a quarter of the memory budget."""
        if spec.parallel:
            return spec.parallel
        kv = max(1, self._kv_bytes(spec, meta))
        return max(1, min(AUTO_PARALLEL, self.memory_budget_bytes // 4 // kv))

    def _context(self, spec: ModelSpec, meta: dict[str, Any]) -> int:
        if spec.context:
            return spec.context
        arch = meta.get("general.architecture", "llama")
        trained = int(meta.get(f"{arch}.context_length", DEFAULT_CONTEXT))
        return min(trained, DEFAULT_CONTEXT)

    def load(self, spec: ModelSpec) -> LoadedModel:
        try:
            import llama_cpp
        except ImportError:
            from aigw.extras import install_hint

            raise RuntimeError(f"llama-cpp-python is not installed ({install_hint('local')})") from None

        meta = gguf_metadata(str(spec.path))
        context = self._context(spec, meta)
        # A chat model's real context is made by its batcher (a sequence per slot); the one
        # llama-cpp-python makes is kept small until then.
        llm = llama_cpp.Llama(
            model_path=str(spec.path),
            n_ctx=context if spec.embedding else min(context, 512),
            n_gpu_layers=self.gpu_layers if sys.platform == "darwin" else 0,
            n_threads=self.threads,
            embedding=spec.embedding,
            verbose=False,
        )
        preset = choose(self.presets, llm.metadata.get("tokenizer.chat_template"))
        try:
            batcher = None
            if not spec.embedding:
                saved: SavedPrefixes[Any] = SavedPrefixes(self.prompt_cache_bytes)
                batcher = Batcher(llm, self.parallel(spec, meta), context, saved)
            return LlamaModel(spec, llm, meta, preset, threads=self.threads, batcher=batcher)
        except Exception:
            llm.close()  # a projector that fails to load must not leave the weights loaded
            raise


def _token_text(llm: llama_cpp.Llama, token: int) -> str:
    """A special token's text (`</s>`), which detokenizing would render as nothing."""
    if token < 0:
        return ""
    text: bytes | str = llm._model.token_get_text(token)
    return text.decode("utf-8", errors="ignore") if isinstance(text, bytes) else text


class LlamaModel:
    def __init__(
        self,
        spec: ModelSpec,
        llm: llama_cpp.Llama,
        meta: dict[str, Any],
        preset: Preset | None = None,
        *,
        threads: int | None = None,
        batcher: Batcher | None = None,
    ) -> None:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self.spec = spec
        self.llm = llm
        self.batcher = batcher
        self.context = batcher.context if batcher is not None else llm.n_ctx()
        self.meta = meta
        self.preset = preset
        own = llm.metadata.get("tokenizer.chat_template")
        if preset is not None and preset.chat_template:
            template, self.template_source = preset.chat_template, f"preset {preset.family}"
        else:
            template, self.template_source = (own, "gguf") if own else (FALLBACK_TEMPLATE, "fallback")
        eos, bos = _token_text(llm, llm.token_eos()), _token_text(llm, llm.token_bos())
        self.formatter = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)
        self.template = template
        self.knows_tools = "tool_calls" in template
        self.vision = Vision(spec.mmproj, llm, threads) if spec.mmproj is not None else None
        self._lltokenizer: Any = None
        think = preset is not None and preset.reasoning == "think"
        probe = self.formatter(messages=cast(Any, [{"role": "user", "content": "x"}])).prompt if think else ""
        tools = preset.tool_format if preset is not None else None
        self._format = OutputFormat(tools, think, think and opens_thinking(probe))
        self.fim = self._fim_tokens()

    def _fim_tokens(self) -> FimTokens | None:
        import llama_cpp

        vocab = self.llm._model.vocab
        return from_ids(
            llama_cpp.llama_vocab_fim_pre(vocab),
            llama_cpp.llama_vocab_fim_suf(vocab),
            llama_cpp.llama_vocab_fim_mid(vocab),
        )

    def capabilities(self) -> frozenset[Capability]:
        if self.spec.embedding:
            return EMBED_CAPS
        caps = CHAT_CAPS | {Capability.INSERT} if self.fim is not None else CHAT_CAPS
        return caps | {Capability.VISION} if self.vision is not None else caps

    def _guide(self, grammar: str | None) -> Guide | None:
        if grammar is None:
            return None
        if self._lltokenizer is None:  # built once per loaded model (about a second on a big vocab)
            from llguidance.llamacpp import lltokenizer_from_vocab

            self._lltokenizer = lltokenizer_from_vocab(self.llm._model.vocab)
        return Guide(self._lltokenizer, grammar, self.llm.n_vocab())

    def _render(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None, **kwargs: Any
    ) -> Any:
        """The formatter's answer for these messages: the prompt's text (the model's own chat
        template, images as the vision projector's marker) and its stop strings."""
        marker = self.vision.marker if self.vision is not None else None
        shown = template_messages(messages, self.knows_tools, marker)
        try:
            return self.formatter(messages=cast(Any, shown), tools=cast(Any, tools), **kwargs)
        except Exception as e:
            raise template_refused(self.spec.name, e) from None

    def _tokens(self, formatted: Any) -> list[int]:
        return self.llm.tokenize(
            formatted.prompt.encode("utf-8"), add_bos=not formatted.added_special, special=True
        )

    def _vision(self, images: tuple[bytes, ...]) -> Vision | None:
        if images and self.vision is None:
            raise CapabilityError(
                f"{self.spec.name} takes no images (it has no vision projector: mmproj)", param="messages"
            )
        return self.vision if images else None

    def count_prompt(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        images: tuple[bytes, ...] = (),
        reasoning: Reasoning | None = None,
    ) -> int:
        kwargs = template_kwargs(self.template, reasoning, False, self.spec.name)
        formatted = self._render(messages, tools, **kwargs)
        if (vision := self._vision(images)) is not None:
            return vision.count(formatted.prompt, list(images))
        return len(self._tokens(formatted))

    def begin(
        self,
        messages: list[dict[str, Any]],
        params: GenParams,
        emit: Emit,
        alive: Callable[[], bool] = lambda: True,
    ) -> Run:
        """Start a generation: it joins the batch at the next `step`."""
        if self.spec.embedding or self.batcher is None:
            raise CapabilityError(f"{self.spec.name} is an embedding model", param="model")
        reasoning = template_kwargs(
            self.template, params.reasoning, params.reasoning_required, self.spec.name
        )
        formatted = self._render(messages, params.tools, **reasoning)
        vision = self._vision(params.images)
        prefill: Callable[[int, int], list[int]] | None = None
        if vision is not None:
            text, images, context = formatted.prompt, list(params.images), self.context
            prompt: list[int] = [0] * vision.count(text, images)

            def prefill(seq: int, n_batch: int) -> list[int]:
                return vision.prefill(text, images, seq, n_batch, context)
        else:
            prompt = self._tokens(formatted)
        stops = list(params.stop)
        stops.extend([formatted.stop] if isinstance(formatted.stop, str) else (formatted.stop or []))
        stops = preset_stops(self.preset, stops)  # drops empty ones: they would end every generation
        return self._start(prompt, params, stops, emit, alive=alive, prefill=prefill, field="messages")

    def begin_text(
        self, prompt: TextPrompt, params: GenParams, emit: Emit, alive: Callable[[], bool] = lambda: True
    ) -> Run:
        """Start a legacy completion: the prompt's tokens as they are, no chat template."""
        if self.spec.embedding or self.batcher is None:
            raise CapabilityError(f"{self.spec.name} is an embedding model", param="model")
        tokens = self._text_tokens(prompt)
        if not tokens:
            raise InvalidRequest("The prompt is empty: there is nothing to continue", param="prompt")
        stops = [s for s in params.stop if s]
        return self._start(tokens, params, stops, emit, alive=alive, prefill=None, field="prompt")

    def _text_tokens(self, prompt: TextPrompt) -> list[int]:
        llm = self.llm
        if prompt.tokens is not None:
            return vocabulary_ids(prompt.tokens, llm.n_vocab(), self.spec.name)
        text = prompt.text or ""
        if prompt.suffix is None:
            return llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)
        if self.fim is None:
            raise no_fim(self.spec.name)
        import llama_cpp

        def plain(s: str) -> list[int]:  # the code itself: special tokens' texts in it are text
            return llm.tokenize(s.encode("utf-8"), add_bos=False, special=False) if s else []

        bos = llm.token_bos() if llama_cpp.llama_vocab_get_add_bos(llm._model.vocab) else None
        return self.fim.prompt(plain(text), plain(prompt.suffix), bos)

    def _start(
        self,
        prompt: list[int],
        params: GenParams,
        stops: list[str],
        emit: Emit,
        *,
        alive: Callable[[], bool],
        prefill: Callable[[int, int], list[int]] | None,
        field: str,
    ) -> Run:
        assert self.batcher is not None
        n_ctx = self.context
        if len(prompt) >= n_ctx:
            raise CapabilityError(
                f"The prompt is {len(prompt)} tokens; {self.spec.name}'s context is {n_ctx}", param=field
            )
        run = Run(
            prompt=prompt,
            max_tokens=min(params.max_tokens or n_ctx, n_ctx - len(prompt)),
            params=params,
            stops=stops,
            emit=emit,
            alive=alive,
            detok=ByteDetok(lambda token: self.llm.detokenize([token], special=True)),
            is_eog=self._is_eog,
            guide=self._guide(params.grammar),
            key=params.cache_key,
            vision=prefill,
        )
        self.batcher.add(run)
        return run

    def step(self) -> None:
        """Decode one batch for every started generation."""
        assert self.batcher is not None
        self.batcher.step()

    @property
    def pending(self) -> int:
        """Generations started and not yet done."""
        return self.batcher.pending if self.batcher is not None else 0

    def generate(self, messages: list[dict[str, Any]], params: GenParams, emit: Emit) -> GenResult:
        """One generation, run to its end (with any others already started)."""
        run = self.begin(messages, params, emit)
        while not run.done:
            self.step()
        return run.outcome()

    def slots(self) -> tuple[int, int] | None:
        return (self.batcher.parallel, self.batcher.active) if self.batcher is not None else None

    def cache_bytes(self) -> int:
        """Memory held by saved prompt states (beyond the slots' own KV cells)."""
        return self.batcher.saved_bytes if self.batcher is not None else 0

    def drop_cache(self) -> int:
        """Forget the saved prompt states; the bytes freed. Safe from any thread."""
        return self.batcher.drop_saved() if self.batcher is not None else 0

    def _is_eog(self, token: int) -> bool:
        import llama_cpp

        return bool(llama_cpp.llama_vocab_is_eog(self.llm._model.vocab, token))

    def embed(self, texts: list[str]) -> tuple[list[list[float]], int]:
        if not self.spec.embedding:
            raise CapabilityError(f"{self.spec.name} is not an embedding model", param="model")
        vectors: list[list[float]] = []
        tokens = 0
        for text in texts:
            tokens += len(self.llm.tokenize(text.encode("utf-8"), add_bos=True))
            out: Any = self.llm.embed(text, normalize=True)
            if out and isinstance(out[0], list):  # no pooling in the model: mean-pool the tokens
                dim = len(out[0])
                mean = [sum(row[i] for row in out) / len(out) for i in range(dim)]
                norm = sum(v * v for v in mean) ** 0.5 or 1.0
                out = [v / norm for v in mean]
            vectors.append([float(v) for v in out])
        return vectors, tokens

    def output_format(self) -> OutputFormat:
        return self._format

    def describe(self) -> dict[str, Any]:
        arch = self.meta.get("general.architecture", "?")
        return {
            "format": "gguf",
            "architecture": arch,
            "context": self.context,
            "parallel": self.batcher.parallel if self.batcher is not None else 1,
            "trained_context": self.meta.get(f"{arch}.context_length"),
            "file_type": self.meta.get("general.file_type"),
            "template": self.template_source,
            "preset": self.preset.family if self.preset is not None else None,
        }

    def close(self) -> None:
        if self.batcher is not None:
            self.batcher.close()
        if self.vision is not None:
            self.vision.close()
        self.llm.close()


def describe_file(path: Path, presets: Sequence[Preset] = ()) -> dict[str, Any]:
    """What `aigw models show` prints, from the GGUF header alone (no loading)."""
    from gguf import LlamaFileType

    meta = gguf_metadata(str(path))
    arch = meta.get("general.architecture", "?")
    ftype = meta.get("general.file_type")
    try:
        quant = LlamaFileType(int(ftype)).name if ftype is not None else "?"
    except ValueError:
        quant = str(ftype)
    quant = quant.removeprefix("MOSTLY_").removeprefix("ALL_")
    embedding = f"{arch}.pooling_type" in meta or arch in ("bert", "nomic-bert", "jina-bert-v2")
    preset = choose(presets, meta.get("tokenizer.chat_template"))
    caps = EMBED_CAPS if embedding else CHAT_CAPS | ({Capability.REASONING} if reasons(preset) else set())
    if not embedding and (gguf_has_fim(meta) or gguf_has_fim(meta, _vocabulary(path))):
        caps |= {Capability.INSERT}
    trained = meta.get(f"{arch}.context_length")
    return {
        "path": str(path),
        "format": "gguf",
        "size_bytes": path.stat().st_size,
        "name": meta.get("general.name", path.stem),
        "architecture": arch,
        "quantization": quant,
        "context": trained,
        "served_context": min(int(trained), DEFAULT_CONTEXT) if trained else DEFAULT_CONTEXT,
        "parameters": meta.get("general.size_label"),
        "chat_template": "from the GGUF"
        if meta.get("tokenizer.chat_template")
        else "none (aigw's plain fallback)",
        "template_text": str(meta.get("tokenizer.chat_template") or FALLBACK_TEMPLATE),
        "preset": _preset_name(preset),
        "tool_format": preset.tool_format if preset is not None else None,
        "capabilities": sorted(c.value for c in caps),
    }


def _vocabulary(path: Path) -> frozenset[str]:
    """The texts of a GGUF's tokens (read only when its metadata names no FIM tokens)."""
    from gguf import GGUFReader

    field = GGUFReader(str(path), "r").fields.get("tokenizer.ggml.tokens")
    if field is None:
        return frozenset()
    try:
        return frozenset(str(t) for t in field.contents())
    except (ValueError, IndexError):
        return frozenset()


def _preset_name(preset: Preset | None) -> str:
    return f"{preset.family} ({preset.source})" if preset is not None else "none"
