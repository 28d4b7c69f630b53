"""What the mock answers before any completion is planned: routes, methods, the key, fields.

Pure code shared by both engines (the hypercorn app and the lean loop), so they refuse
the same requests with the same bodies.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from onybench.mock.dialects import Dialect
from onybench.mock.encode import error_body
from onybench.mock.plan import CompletionRequest, Kind

# path -> (method, completion kind, or None for the model list)
ROUTES: Final[dict[str, tuple[str, Kind | None]]] = {
    "/v1/chat/completions": ("POST", "chat"),
    "/v1/completions": ("POST", "text"),
    "/v1/models": ("GET", None),
}


@dataclass(frozen=True, slots=True)
class Refusal:
    """An OpenAI-style JSON error answer: status, body, extra headers."""

    status: int
    body: bytes
    headers: tuple[tuple[bytes, bytes], ...] = ()


def invalid_request(status: int, message: str, code: str | None = None) -> Refusal:
    return Refusal(status, error_body(message, "invalid_request_error", code))


def route(
    path: str, method: str, authorizations: Iterable[bytes], api_key: str | None
) -> Kind | Refusal | None:
    """The completion kind `path` serves, None for the model list, or why not.

    `authorizations`: the request's ``Authorization`` header values; with `api_key`
    set, one must be ``Bearer <api_key>``.
    """
    known = ROUTES.get(path)
    if known is None:
        return invalid_request(404, f"No route {path}.")
    allowed, kind = known
    if method != allowed:
        refusal = invalid_request(405, f"{path} accepts {allowed} only.")
        return Refusal(refusal.status, refusal.body, ((b"allow", allowed.encode()),))
    if api_key is not None and b"Bearer " + api_key.encode() not in authorizations:
        return invalid_request(401, "Incorrect API key provided.", "invalid_api_key")
    return kind


def refused_fields(request: CompletionRequest, dialect: Dialect) -> Refusal | None:
    """A strict dialect's 400 for request fields outside OpenAI's schema, else None."""
    if dialect.strict_fields and request.unknown_fields:
        fields = ", ".join(request.unknown_fields)
        return invalid_request(400, f"Unrecognized request argument supplied: {fields}")
    return None
