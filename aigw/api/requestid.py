"""Request ids: every response carries `x-request-id`, as OpenAI's does and as the SDKs read it.

A client's own `x-request-id` (a short token) is kept, so one id follows a request through the
client's logs and aigw's; otherwise aigw makes one. The id is in the ASGI scope (`aigw.request_id`),
in the request's usage row, and, through `RequestIdFilter`, in every log line written while the
request runs (a context variable: each request runs in its own task, with its own value).
"""

from __future__ import annotations

import logging
import os
from contextvars import ContextVar

SCOPE_REQUEST_ID = "aigw.request_id"
HEADER = b"x-request-id"
MAX_LEN = 128
_ALLOWED = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:")
CURRENT: ContextVar[str | None] = ContextVar("aigw_request_id", default=None)
"""The id of the request the running task serves (None outside a request)."""


def new_request_id() -> str:
    return "req_" + os.urandom(12).hex()


def request_id_for(sent: bytes | None) -> str:
    """The client's id when it is a plain token of at most MAX_LEN characters, else a new one."""
    if sent:
        text = sent.decode("latin-1")
        if len(text) <= MAX_LEN and _ALLOWED.issuperset(text):
            return text
    return new_request_id()


class RequestIdFilter(logging.Filter):
    """Adds `request_tag` to each record: " [req_...]" while a request runs, else "" (for a
    format's `%(request_tag)s`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        rid = CURRENT.get()
        record.request_tag = f" [{rid}]" if rid else ""
        return True
