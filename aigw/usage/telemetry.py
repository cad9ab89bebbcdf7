"""OpenTelemetry export of every request: one span each, following the OpenTelemetry GenAI semantic
conventions, and the GenAI client metrics, sent over OTLP to a collector (`[telemetry]`).

The meter hands each request it accounts (answered, answered from the cache, failed, refused,
abandoned) to `Telemetry.request` as one `aigw.usage.genai.Finished` record. Off by default:
`open_telemetry` then returns None without importing anything of OpenTelemetry's SDK, and the
meter's only cost per request is one `is not None` check. On, the OpenTelemetry SDK
(`aigw.usage.otel`) batches the spans and exports them, and the metrics periodically, from its
own threads.
"""

from __future__ import annotations

import logging
from typing import Protocol

from aigw.config.telemetry import TelemetryConfig
from aigw.usage.genai import Finished

log = logging.getLogger("aigw.telemetry")


class Telemetry(Protocol):
    @property
    def log_content(self) -> bool:
        """Whether the spans carry prompts and completions (the meter captures them then)."""
        ...

    def request(self, done: Finished) -> None:
        """Export one request (never blocks, never raises: a collector that is down drops it)."""
        ...

    def close(self) -> None:
        """Export what is pending and stop (blocking, bounded by the export timeout)."""
        ...


def open_telemetry(cfg: TelemetryConfig, version: str) -> Telemetry | None:
    """The exporter `cfg` asks for, or None when telemetry is off (nothing imported then) or
    OpenTelemetry is not installed (logged)."""
    if cfg.otlp_endpoint is None:
        return None
    try:
        from aigw.usage.otel import OtelTelemetry

        return OtelTelemetry(cfg, version)
    except ImportError as e:  # the SDK, or (protocol = "grpc") the gRPC exporter
        from aigw.extras import install_hint

        log.error(
            "[telemetry] otlp_endpoint is set but OpenTelemetry is not installed (%s); "
            "nothing is exported. Install it: %s",
            e,
            install_hint("telemetry"),
        )
        return None
