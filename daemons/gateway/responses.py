"""The JSON answers every HTTP route of the gateway gives: REST, the auth proxy and the seed doors.

An error is always ``{"error": <code>, "detail": <reason>}`` with its status; a body is read by
:func:`small_body`, which decodes it strictly (no unknown fields, no duplicate keys, valid UTF-8)
or returns the 413/422 response to send instead.
"""

from __future__ import annotations

from typing import Any

import msgspec
from fastapi import Request
from fastapi.responses import JSONResponse, Response

from stockctl.wire.strictjson import decode_strict

SMALL_BODY_BYTES = 4096


async def small_body(request: Request, decoder: msgspec.json.Decoder, what: str) -> Any:
    """A small JSON body decoded strictly, or the 413/422 response that says what is wrong."""
    body = await request.body()
    if len(body) > SMALL_BODY_BYTES:
        return error_response(413, "too_large", f"{what} body over 4 KiB")
    try:
        return decode_strict(decoder, body, what)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        return error_response(422, "invalid", str(exc))


def json_response(obj: Any, status: int = 200) -> Response:
    return Response(msgspec.json.encode(obj), status_code=status, media_type="application/json")


def error_response(status: int, error: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)
