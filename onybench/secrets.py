"""Keeping the API key out of every message, log and file."""

from __future__ import annotations

REDACTED = "***"


def redact(text: str, secret: str | None) -> str:
    """`text` with every occurrence of `secret` replaced.

    Error bodies and exception texts come from the target, which may echo the
    key back; they pass through here before they reach a record or a screen.
    """
    if not secret:
        return text
    return text.replace(secret, REDACTED)
