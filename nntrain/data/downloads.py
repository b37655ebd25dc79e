"""Downloads that fail fast: a run offline or behind a firewall must stop with a message, not hang."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlparse


@contextmanager
def network_timeout(seconds: float) -> Iterator[None]:
    """Give every socket opened inside (urllib's downloads included) a timeout."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def unreachable_reason(url: str, timeout: float = 5.0) -> str | None:
    """None if url's host accepts a connection within timeout seconds, else why not."""
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            return None
    except OSError as error:
        return f"cannot reach {parsed.hostname}: {error.strerror or error}"
