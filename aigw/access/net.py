"""Addresses on this machine only. Pure, light (the CLI imports it)."""

from __future__ import annotations

import ipaddress

_LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "127.0.0.1", "::1", "[::1]"})


def is_loopback(host: str) -> bool:
    """Whether a listen address or Host name is on this machine only."""
    name = host.strip().lower()
    if name in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False


LOOPBACK = "loopback"
"""The one rate-limit subject of every anonymous client on this machine (127.0.0.0/8, ::1)."""


def anonymous_subject(address: str) -> str:
    """An anonymous client's rate-limit subject: its address, except that every loopback
    address is one subject (else binding to 127.0.0.2, .3, ... would escape the limits)."""
    if address.startswith("127.") or address == "::1" or address.startswith("::ffff:127."):
        return LOOPBACK
    return address
