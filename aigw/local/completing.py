"""Legacy text completions on local models: each choice (a prompt times `n`) is one engine job, so
on a model with slots the choices are decoded together in its batch.

The prompt goes to the model as it is, with no chat template; a `suffix` makes a
fill-in-the-middle prompt from the model's own FIM tokens (aigw.local.fim). A local model honours
exactly the fields in `HONOURED` and refuses any other with a 400 naming it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace

from aigw.completion import CompletionRequest
from aigw.domain import TEXT_COMPLETION, ChatChunk, ChatResponse, Usage
from aigw.engine.backend import GenParams, GenResult, LoadedModel, Pending, TextPrompt
from aigw.engine.engine import Engine, Job
from aigw.errors import CapabilityError, InvalidRequest, quoted
from aigw.local.sampling import cache_key, parse_keep_alive, refuse_unhonoured, sampling_extra, usage_of

HONOURED = frozenset({
    "model", "prompt", "suffix", "max_tokens", "temperature", "top_p", "stop", "echo", "n", "seed",
    "stream", "stream_options", "user", "keep_alive", "best_of", "logprobs", "presence_penalty",
    "frequency_penalty", "top_k", "min_p", "repeat_penalty", "prompt_cache_key",
})  # fmt: skip


def completion_params(req: CompletionRequest, model: str) -> GenParams:
    """The sampling a completion asks for, checked against what a local model honours."""
    body = req.body
    refuse_unhonoured(body, HONOURED, model)
    if body.get("logprobs"):
        raise CapabilityError(f"Local model {quoted(model)} does not return logprobs", param="logprobs")
    best_of = body.get("best_of")
    if best_of is not None and best_of != req.n:
        raise CapabilityError(
            f"Local model {quoted(model)} returns every choice it generates (best_of must equal n)",
            param="best_of",
        )
    temperature, top_p, seed = body.get("temperature"), body.get("top_p"), body.get("seed")
    return GenParams(
        max_tokens=req.max_tokens,
        temperature=0.8 if temperature is None else float(temperature),
        top_p=0.95 if top_p is None else float(top_p),
        stop=tuple(req.stop),
        seed=None if seed is None else int(seed),
        extra=sampling_extra(body),
        cache_key=cache_key(body),
    )


def text_prompts(req: CompletionRequest) -> list[TextPrompt]:
    prompts = []
    for p in req.prompts:
        if isinstance(p, str):
            prompts.append(TextPrompt(text=p, suffix=req.suffix))
        elif req.echo:
            raise InvalidRequest("echo needs a text prompt on local models, not token ids", param="echo")
        elif req.suffix is not None:
            raise InvalidRequest("suffix needs a text prompt, not token ids", param="suffix")
        else:
            prompts.append(TextPrompt(tokens=tuple(p)))
    return prompts


@dataclass(frozen=True, slots=True)
class Choice:
    index: int
    echo: str
    """Text the answer starts with (the prompt, when echo is set)."""
    job: Job[GenResult]


class Completer:
    """The legacy completions of one local provider's models."""

    def __init__(self, engine: Engine, engine_key: Callable[[str], str]) -> None:
        self._engine = engine
        self._key = engine_key
        """The engine key of a model name (ModelNotFound when there is none)."""

    async def _choices(self, req: CompletionRequest) -> list[Choice]:
        """Every choice's job, submitted (cancelled again when a later one cannot be)."""
        key = self._key(req.model)
        params = completion_params(req, req.model)
        prompts = text_prompts(req)
        keep_alive = parse_keep_alive(req.body.get("keep_alive"))
        choices: list[Choice] = []
        try:
            for prompt in prompts:
                for j in range(req.n):  # with a seed, each of n choices its own (seed, seed+1, ...)
                    seeded = (
                        params if params.seed is None or j == 0 else replace(params, seed=params.seed + j)
                    )
                    started = time.perf_counter()
                    job = await self._engine.submit(key, _runner(prompt, seeded), keep_alive)
                    job.waited_s = time.perf_counter() - started
                    echo = (prompt.text or "") if req.echo else ""
                    choices.append(Choice(len(choices), echo, job))
        except BaseException:
            _cancel(choices)
            raise
        return choices

    async def complete(self, req: CompletionRequest) -> ChatResponse:
        choices = await self._choices(req)
        try:
            results = await asyncio.gather(*(c.job.wait() for c in choices))
        finally:
            _cancel(choices)  # any still running, when one failed or the request was cancelled
        wire = [
            {"index": c.index, "text": c.echo + r.text, "logprobs": None, "finish_reason": r.finish_reason}
            for c, r in zip(choices, results, strict=True)
        ]
        answer = ChatResponse(_id(), int(time.time()), req.model, wire, _total(req, choices, results))
        answer.object = TEXT_COMPLETION
        return answer

    async def stream(self, req: CompletionRequest) -> AsyncIterator[ChatChunk]:
        choices = await self._choices(req)
        cid, created = _id(), int(time.time())

        def chunk(index: int, text: str, finish: str | None = None) -> ChatChunk:
            c = {"index": index, "text": text, "logprobs": None, "finish_reason": finish}
            return ChatChunk(cid, created, req.model, [c], object=TEXT_COMPLETION)

        try:
            for c in choices:
                if c.echo:
                    yield chunk(c.index, c.echo)
            async for index, text in _merged(choices):
                if text is not None:
                    yield chunk(index, text)
                else:
                    yield chunk(index, "", choices[index].job.result().finish_reason)
        finally:
            _cancel(choices)
        results = [c.job.result() for c in choices]
        yield ChatChunk(cid, created, req.model, [], _total(req, choices, results), object=TEXT_COMPLETION)


def _runner(prompt: TextPrompt, params: GenParams) -> Callable[[LoadedModel, Job[GenResult]], Pending]:
    def run(model: LoadedModel, job: Job[GenResult]) -> Pending:
        return model.begin_text(prompt, params, job.emit, lambda: not job.cancelled)

    return run


async def _merged(choices: list[Choice]) -> AsyncIterator[tuple[int, str | None]]:
    """Every choice's text as it comes, (index, text); (index, None) when that choice has ended.
    One choice is read directly; several through a queue their readers fill."""
    if len(choices) == 1:
        async for text in choices[0].job.items():
            yield 0, text
        yield 0, None
        return
    queue: asyncio.Queue[tuple[int, str | None] | BaseException] = asyncio.Queue()

    async def read(c: Choice) -> None:
        try:
            async for text in c.job.items():
                queue.put_nowait((c.index, text))
            c.job.result()  # raises what failed it
            queue.put_nowait((c.index, None))
        except Exception as e:
            queue.put_nowait(e)

    readers = [asyncio.ensure_future(read(c)) for c in choices]
    ended = 0
    try:
        while ended < len(choices):
            item = await queue.get()
            if isinstance(item, BaseException):
                raise item
            ended += item[1] is None
            yield item
    finally:
        for r in readers:
            r.cancel()
        for r in readers:
            with contextlib.suppress(asyncio.CancelledError):
                await r


def _cancel(choices: list[Choice]) -> None:
    for c in choices:
        c.job.cancelled = True


def _total(req: CompletionRequest, choices: list[Choice], results: list[GenResult]) -> Usage:
    """The usage of every choice: each prompt counted once (its first choice's count)."""
    prompt = sum(r.prompt_tokens for c, r in zip(choices, results, strict=True) if c.index % req.n == 0)
    completion = sum(r.completion_tokens for r in results)
    first = usage_of(results[0], choices[0].job.waited_s)
    cached = sum(r.cached_tokens for r in results)
    extra = {"prompt_tokens_details": {"cached_tokens": cached}} if cached else {}
    return Usage(prompt, completion, prompt + completion, extra, first.timing)


def _id() -> str:
    return f"cmpl-{uuid.uuid4().hex[:24]}"

