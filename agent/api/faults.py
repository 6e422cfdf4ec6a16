"""nova's fault bodies: `{"<kind>": {"code": N, "message": "..."}}` as application/json, the
shape every compute client prints from. ApiError is raised anywhere below the application and
becomes one such answer."""

from __future__ import annotations

import json

# nova's fault names by status code (webob's exception classes as nova wraps them).
KINDS = {400: "badRequest", 403: "forbidden", 404: "itemNotFound", 405: "badMethod",
         406: "notAcceptable", 409: "conflictingRequest", 413: "overLimit",
         415: "badMediaType", 500: "computeFault", 501: "notImplemented"}


class ApiError(Exception):
    """A client-visible refusal: HTTP `code` and nova's `message`."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def kind(code: int) -> str:
    """nova's fault name for an HTTP status (computeFault for any unlisted one; 406 answers
    computeFault as nova's microversion check does)."""
    if code == 406:
        return "computeFault"
    return KINDS.get(code, "computeFault")


def body(code: int, message: str) -> bytes:
    return json.dumps({kind(code): {"code": code, "message": message}}).encode()
