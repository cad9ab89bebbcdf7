"""Images on llama.cpp through its multimodal library (mtmd, in llama-cpp-python): a model's
vision projector (an mmproj GGUF) turns each image into embeddings placed where the prompt has
the image's marker. Runs on the model's owner thread.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from aigw.errors import CapabilityError, InvalidRequest

if TYPE_CHECKING:
    import llama_cpp


class Vision:
    """One model's projector: prompts with images, evaluated into the model's context."""

    def __init__(self, mmproj: Path, llm: llama_cpp.Llama, threads: int | None) -> None:
        import llama_cpp.mtmd_cpp as mtmd

        self._mtmd: Any = mtmd
        self._llm = llm
        params = mtmd.mtmd_context_params_default()
        params.use_gpu = True
        params.print_timings = False
        params.n_threads = threads or llm.n_threads
        self._ctx = mtmd.mtmd_init_from_file(str(mmproj).encode(), llm.model, params)
        if not self._ctx:
            raise RuntimeError(f"llama.cpp cannot load the vision projector {mmproj}")
        if not mtmd.mtmd_support_vision(self._ctx):
            mtmd.mtmd_free(self._ctx)
            raise RuntimeError(f"{mmproj} is not a vision projector")
        self.marker: str = mtmd.mtmd_default_marker().decode()

    @contextmanager
    def _chunks(self, text: str, images: list[bytes]) -> Iterator[Any]:
        mtmd = self._mtmd
        bitmaps = []
        chunks = mtmd.mtmd_input_chunks_init()
        try:
            for i, data in enumerate(images):
                buf = (ctypes.c_uint8 * len(data)).from_buffer(bytearray(data))
                bitmap = mtmd.mtmd_helper_bitmap_init_from_buf(self._ctx, buf, len(data), False)
                if not bitmap:
                    raise InvalidRequest(f"image {i + 1} could not be decoded", param="messages")
                bitmaps.append(bitmap)
            raw = text.encode("utf-8")
            given = mtmd.mtmd_input_text()
            given.text, given.text_len, given.add_special, given.parse_special = raw, len(raw), False, True
            array = (mtmd.mtmd_bitmap_p_ctypes * len(bitmaps))(*bitmaps)
            if mtmd.mtmd_tokenize(self._ctx, chunks, ctypes.byref(given), array, len(bitmaps)) != 0:
                raise InvalidRequest("the images do not match the prompt's image markers", param="messages")
            yield chunks
        finally:
            mtmd.mtmd_input_chunks_free(chunks)
            for bitmap in bitmaps:
                mtmd.mtmd_bitmap_free(bitmap)

    def count(self, text: str, images: list[bytes]) -> int:
        """The prompt's length in the model's positions (text tokens and image embeddings)."""
        mtmd = self._mtmd
        with self._chunks(text, images) as chunks:
            return sum(
                int(mtmd.mtmd_input_chunk_get_n_tokens(mtmd.mtmd_input_chunks_get(chunks, i)))
                for i in range(mtmd.mtmd_input_chunks_size(chunks))
            )

    def prefill(self, text: str, images: list[bytes], seq: int, n_batch: int, context: int) -> list[int]:
        """Evaluate the prompt into sequence `seq` of the model's context (from position 0); its
        positions' tokens, -1 where an image is (a token no prompt has, so no later request reuses
        them). The prompt ends in text: the generation prompt follows the last image."""
        import llama_cpp

        mtmd, llm = self._mtmd, cast(Any, self._llm)  # llama-cpp-python's own types are partial
        tokens: list[int] = []
        with self._chunks(text, images) as chunks:
            for i in range(mtmd.mtmd_input_chunks_size(chunks)):
                chunk = mtmd.mtmd_input_chunks_get(chunks, i)
                size = int(mtmd.mtmd_input_chunk_get_n_tokens(chunk))
                if len(tokens) + size >= context:
                    raise CapabilityError(
                        f"The prompt is over {len(tokens) + size} positions with its images; "
                        f"the model's context is {context}",
                        param="messages",
                    )
                start, end = len(tokens), llama_cpp.llama_pos(0)
                if mtmd.mtmd_helper_eval_chunk_single(
                    self._ctx, llm._ctx.ctx, chunk, llama_cpp.llama_pos(start),
                    llama_cpp.llama_seq_id(seq), n_batch, False, ctypes.byref(end),
                ) != 0:  # fmt: skip
                    raise RuntimeError("llama.cpp could not evaluate the prompt's images")
                if mtmd.mtmd_input_chunk_get_type(chunk) == mtmd.MTMD_INPUT_CHUNK_TYPE_TEXT:
                    count = ctypes.c_size_t()
                    got = mtmd.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(count))
                    tokens.extend(int(got[j]) for j in range(count.value))
                else:
                    tokens.extend([-1] * (end.value - start))
        if not tokens or tokens[-1] < 0:
            raise CapabilityError("the prompt must end in text after its images", param="messages")
        return tokens

    def close(self) -> None:
        if self._ctx:
            self._mtmd.mtmd_free(self._ctx)
            self._ctx = None
