"""Answers that plain ASGI middleware sends itself, before any handler runs."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["send_json_error"]


async def send_json_error(
    send: Any, status: int, detail: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """A JSON `{"detail": ...}` response, the shape FastAPI's own errors have."""
    body = json.dumps({"detail": detail}).encode()
    start = [(b"content-type", b"application/json"), *(headers or [])]
    await send({"type": "http.response.start", "status": status, "headers": start})
    await send({"type": "http.response.body", "body": body})
