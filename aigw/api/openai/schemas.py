"""OpenAI wire models, used to validate request bodies.

Validation is strict (no string-to-number coercion) so the body forwarded upstream is exactly
what was checked; unknown fields are allowed and passed through.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from starlette.requests import Request

from aigw.api.body import read_json_object
from aigw.api.errors import invalid_request_from_validation
from aigw.errors import InvalidRequest

_ALLOW = ConfigDict(extra="allow", strict=True)

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]


class ChatMessage(BaseModel):
    model_config = _ALLOW
    role: Role
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None

    function_call: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _content_rules(self) -> ChatMessage:
        if self.content is None and self.role != "assistant":
            raise ValueError(f"a {self.role} message needs 'content'")
        if self.content is None and not (self.tool_calls or self.function_call) and self.role == "assistant":
            raise ValueError("an assistant message needs 'content', 'tool_calls' or 'function_call'")
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message needs 'tool_call_id'")
        return self


class StreamOptions(BaseModel):
    model_config = _ALLOW
    include_usage: bool | None = None


class ResponseFormat(BaseModel):
    model_config = _ALLOW
    type: str = Field(min_length=1)  # text | json_object | json_schema, or an upstream's own kind


class FunctionDef(BaseModel):
    model_config = _ALLOW
    name: str = Field(min_length=1, max_length=64)


class Tool(BaseModel):
    model_config = _ALLOW
    type: Literal["function"]
    function: FunctionDef


class ChatCompletionRequest(BaseModel):
    model_config = _ALLOW
    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    n: int | None = Field(default=None, ge=1, le=128)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    seed: int | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    tools: list[Tool] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: ResponseFormat | None = None
    user: str | None = None
    provider: str | None = Field(default=None, min_length=1)

    def cross_field_problem(self) -> tuple[str, str] | None:
        """(param, message) for a combination of fields OpenAI refuses."""
        if self.stream_options is not None and not self.stream:
            return "stream_options", "'stream_options' is only allowed when 'stream' is true"
        return None


class EmbeddingRequest(BaseModel):
    model_config = _ALLOW
    model: str = Field(min_length=1)
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None
    provider: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _non_empty(self) -> EmbeddingRequest:
        if isinstance(self.input, list) and not self.input:
            raise ValueError("'input' must not be empty")
        if isinstance(self.input, str) and not self.input:
            raise ValueError("'input' must not be an empty string")
        return self


class CompletionBody(BaseModel):
    """A legacy completion (/v1/completions)."""

    model_config = _ALLOW
    model: str = Field(min_length=1)
    prompt: str | list[str] | list[int] | list[list[int]]
    suffix: str | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    n: int | None = Field(default=None, ge=1, le=128)
    best_of: int | None = Field(default=None, ge=1, le=128)
    stop: str | list[str] | None = None
    echo: bool | None = None
    seed: int | None = None
    logprobs: int | None = Field(default=None, ge=0, le=5)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    user: str | None = None
    provider: str | None = Field(default=None, min_length=1)

    @field_validator("prompt")
    @classmethod
    def _non_empty(cls, v: Any) -> Any:
        if isinstance(v, list) and (not v or any(p == [] for p in v)):
            raise ValueError("'prompt' must not be empty")
        return v

    def cross_field_problem(self) -> tuple[str, str] | None:
        if self.stream_options is not None and not self.stream:
            return "stream_options", "'stream_options' is only allowed when 'stream' is true"
        return None


async def read_request(request: Request, schema: type[BaseModel], limit: int) -> dict[str, Any]:
    """The request's JSON body, checked against `schema`: the wire body as sent (unknown fields
    kept, to pass through to OpenAI-compatible upstreams), or InvalidRequest naming the field."""
    body = await read_json_object(request.scope, request.receive, limit)
    try:
        parsed = schema.model_validate(body)
    except ValidationError as e:
        raise invalid_request_from_validation(e) from None
    if isinstance(parsed, ChatCompletionRequest | CompletionBody):
        problem = parsed.cross_field_problem()
        if problem is not None:
            raise InvalidRequest(problem[1], param=problem[0])
    return body
