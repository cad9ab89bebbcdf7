"""The `[telemetry]` table: exporting a span per request and the GenAI client metrics over OTLP
(see `aigw.usage.telemetry`). Off unless `otlp_endpoint` is set."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator


def _control_character(text: str) -> bool:
    return any(ord(ch) < 32 or ord(ch) == 127 for ch in text)


class TelemetryConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    otlp_endpoint: str | None = None
    """The OpenTelemetry collector's base URL, e.g. "http://127.0.0.1:4318" (OTLP/HTTP: traces go
    to /v1/traces, metrics to /v1/metrics) or "http://127.0.0.1:4317" (gRPC). Unset: no telemetry,
    and nothing of OpenTelemetry is imported."""
    protocol: Literal["http/protobuf", "grpc"] = "http/protobuf"
    """OTLP over HTTP with protobuf bodies, or gRPC (needs opentelemetry-exporter-otlp-proto-grpc)."""
    service_name: str = Field(default="aigw", min_length=1)
    """The `service.name` resource attribute of everything exported."""
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    """Sent with every export (a collector's auth, e.g. {authorization = "Bearer ..."})."""
    log_content: bool = False
    """Put prompts and completions on the spans (gen_ai.input.messages, gen_ai.output.messages).
    Off: a span carries counts, names and timings only."""
    export_interval_s: float = Field(default=15.0, gt=0)
    """How often the metrics are exported (spans are sent in batches as they end)."""
    timeout_s: float = Field(default=5.0, gt=0)
    """How long one export may take before it is given up (and its data dropped)."""

    @field_validator("otlp_endpoint")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v.rstrip("/") if v is not None else None

    @field_validator("headers")
    @classmethod
    def _no_control_characters(cls, v: Any) -> Any:
        for name, secret in v.items():
            if _control_character(name) or _control_character(secret.get_secret_value()):
                raise ValueError("contains a control character (a stray newline?)")
        return v

    @property
    def enabled(self) -> bool:
        return self.otlp_endpoint is not None
