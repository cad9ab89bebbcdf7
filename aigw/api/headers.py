"""Response headers aigw adds to proxied calls."""

from __future__ import annotations

from aigw.routing.resolve import Target


def proxy_headers(target: Target, overhead_s: float) -> dict[str, str]:
    return {
        "x-aigw-provider": target.provider,
        "x-aigw-model": target.model,
        "x-aigw-overhead-ms": f"{max(0.0, overhead_s) * 1000:.3f}",
    }
