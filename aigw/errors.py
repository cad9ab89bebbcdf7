"""The one exception tree of aigw.

Every layer raises these; the HTTP boundary maps them to OpenAI error objects by type
(`aigw.api.errors`), the CLI prints their message as one line. Nothing decides by message text.

    AigwError                       status  type
    ├── ConfigError                   -     (startup / CLI only)
    ├── InvalidRequest               400    invalid_request_error   (param names the field)
    ├── ModelNotFound                404    invalid_request_error   code=model_not_found
    ├── PayloadTooLarge              413    invalid_request_error
    ├── UnsupportedMediaType         415    invalid_request_error   (a body encoding aigw cannot read)
    ├── CapabilityError              400    invalid_request_error   (backend cannot honour a field)
    ├── AuthenticationError          401    authentication_error    (missing, unknown or revoked key)
    ├── PermissionDenied             403    permission_error        (Host, Origin, a model not for this key)
    ├── RateLimited                  429    rate_limit_error        (.retry_after, .headers; a budget spent)
    ├── ServiceUnavailable           503    service_unavailable     (queue full, shutting down)
    └── UpstreamError                502    upstream_error          .retryable, .upstream_status
        ├── UpstreamConnectError     502    retryable
        ├── UpstreamTimeout          504    retryable
        │   └── FirstTokenTimeout    504    not retryable (stalled stream; the next target is tried)
        ├── UpstreamProtocolError    502    not retryable (garbage from upstream)
        └── UpstreamStatusError      by upstream status (see `status_code`)
"""

from __future__ import annotations

import re

# What API keys look like in the messages upstreams send back (OpenAI's "Incorrect API key
# provided: sk-proj-****abcd", a Gemini key in a URL, a bearer token echoed by a proxy).
_KEYLIKE = re.compile(
    r"\b(?:sk|pk|rk)-[A-Za-z0-9_*\-]{4,}"
    r"|\bAIza[0-9A-Za-z_\-]{8,}"
    r"|\baigw-[A-Za-z0-9_\-]{8,}"
    r"|\b(?:key|api_key|apikey|token)=[^\s&\"']+"
    r"|(?i:bearer)\s+[^\s\"',]+"
)


def redacted(text: str) -> str:
    """`text` with anything that looks like an API key (or a fragment of one) replaced."""
    return _KEYLIKE.sub("[redacted]", text)


def quoted(value: str, limit: int = 100) -> str:
    """`value` as an error message shows a client's input: quoted, and cut when long, so that no
    message echoes unbounded input back (a 1 MB model name makes a short 404)."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}… ({len(value)} characters)"


class AigwError(Exception):
    """Base of every error aigw raises on purpose."""

    status_code: int = 500
    error_type: str = "server_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class ConfigError(AigwError):
    """The configuration file or environment is invalid."""


class InvalidRequest(AigwError):
    status_code = 400
    error_type = "invalid_request_error"


class CapabilityError(InvalidRequest):
    """The request asks for something the chosen backend cannot honour."""

    code = "unsupported_parameter"


class ModelNotFound(AigwError):
    status_code = 404
    error_type = "invalid_request_error"
    code = "model_not_found"


class PayloadTooLarge(AigwError):
    status_code = 413
    error_type = "invalid_request_error"
    code = "payload_too_large"


class UnsupportedMediaType(AigwError):
    status_code = 415
    error_type = "invalid_request_error"
    code = "unsupported_media_type"


class AuthenticationError(AigwError):
    status_code = 401
    error_type = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(AigwError):
    status_code = 403
    error_type = "permission_error"


class RateLimited(AigwError):
    status_code = 429
    error_type = "rate_limit_error"

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None,
        headers: dict[str, str] | None = None,
        code: str = "rate_limit_exceeded",
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.headers = headers or {}
        self.code = code


class ServiceUnavailable(AigwError):
    status_code = 503
    error_type = "service_unavailable"

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UpstreamError(AigwError):
    """An upstream provider failed. `retryable` tells the router whether another try may succeed."""

    status_code = 502
    error_type = "upstream_error"
    retryable = False

    def __init__(self, message: str, *, provider: str, retry_after: float | None = None) -> None:
        # An upstream's words reach clients and logs: never with a key, or part of one, in them.
        super().__init__(redacted(message))
        self.provider = provider
        self.retry_after = retry_after


class UpstreamConnectError(UpstreamError):
    retryable = True
    code = "upstream_unreachable"


class UpstreamTimeout(UpstreamError):
    status_code = 504
    retryable = True
    code = "upstream_timeout"


class FirstTokenTimeout(UpstreamTimeout):
    """A stream produced no content in time while another target could answer: fall back
    rather than retry a target that is stalling."""

    retryable = False
    code = "first_token_timeout"


class UpstreamProtocolError(UpstreamError):
    code = "upstream_bad_response"


_RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504, 529})
# Upstream statuses that go back to the client with the same status when no target answers.
_PASS_THROUGH_STATUS = frozenset({400, 404, 413, 422})
# Of those, the ones that judge the request itself: no other target would answer it better.
_CLIENT_FAULT_STATUS = frozenset({400, 413, 422})


class UpstreamStatusError(UpstreamError):
    """The upstream answered with an HTTP error status."""

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        upstream_status: int,
        retry_after: float | None = None,
        upstream_type: str | None = None,
        upstream_code: str | None = None,
    ) -> None:
        super().__init__(message, provider=provider, retry_after=retry_after)
        self.upstream_status = upstream_status
        self.retryable = upstream_status in _RETRYABLE_STATUS
        if upstream_status in _PASS_THROUGH_STATUS:
            self.status_code = upstream_status
            self.error_type = upstream_type or "invalid_request_error"
        elif upstream_status == 429:
            self.status_code = 429
            self.error_type = "rate_limit_error"
        else:
            # 401/403 mean aigw's own credentials for the upstream are wrong: not the client's fault.
            self.status_code = 502
        self.code = upstream_code

    @property
    def is_client_fault(self) -> bool:
        """The upstream judged the request itself bad (400, 413, 422); the provider is healthy.
        A 404 is not: the model may be missing at this provider and present at the next."""
        return self.upstream_status in _CLIENT_FAULT_STATUS
