"""A response as the simulator's endpoints build it, before the HTTP layer sends it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

JSON_TYPE = "application/json; charset=utf-8"
HTML_TYPE = "text/html; charset=utf-8"


@dataclass
class Reply:
    """Status, body bytes, content type and extra headers of one response."""

    status: int
    body: bytes
    content_type: str = JSON_TYPE
    headers: dict[str, str] = field(default_factory=dict)


def json_reply(status: int, payload: Any) -> Reply:
    """A compact JSON response (no spaces, as the venues send it)."""
    return Reply(status, json.dumps(payload, separators=(",", ":")).encode("utf-8"))


def html_error(status: int) -> Reply:
    """The kind of HTML page a CDN or load balancer answers with when the service behind it fails."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    page = (
        f"<html>\r\n<head><title>{status} {phrase}</title></head>\r\n<body>\r\n"
        f"<center><h1>{status} {phrase}</h1></center>\r\n</body>\r\n</html>\r\n"
    )
    return Reply(status, page.encode("utf-8"), HTML_TYPE)


def custom_body(status: int, body: str) -> Reply:
    """A response with a body a test chose; JSON content type when it looks like JSON."""
    stripped = body.lstrip()
    kind = JSON_TYPE if stripped.startswith(("{", "[")) else HTML_TYPE
    return Reply(status, body.encode("utf-8"), kind)


def retry_after_text(seconds: float) -> str:
    """``Retry-After`` as delta-seconds: an integer when whole, else a decimal (tests use fractions)."""
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"
