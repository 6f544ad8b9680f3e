"""Error responses in each origin's own dialect: GitHub JSON, object-store XML, plain text."""

from __future__ import annotations

import json

from aiohttp import web

JSON_TYPE = "application/json; charset=utf-8"
_DOCS = "https://docs.github.com/rest"


def api_error(status: int, message: str) -> web.Response:
    """A GitHub REST API error: JSON with ``message`` and ``documentation_url``."""
    payload = {"message": message, "documentation_url": _DOCS, "status": str(status)}
    return web.Response(
        status=status, body=json.dumps(payload), headers={"Content-Type": JSON_TYPE}
    )


def xml_error(status: int, code: str, message: str) -> web.Response:
    """An object-store (S3/Azure style) XML error."""
    body = f"<?xml version='1.0' encoding='UTF-8'?>\n<Error><Code>{code}</Code>"
    body += f"<Message>{message}</Message></Error>"
    return web.Response(status=status, text=body, content_type="application/xml")


def expired() -> web.Response:
    """What the object store answers for a signed URL past its expiry."""
    return xml_error(403, "AccessDenied", "Request has expired")


def not_found(origin: str) -> web.Response:
    """A 404 as ``origin`` (``"api"``, ``"uploads"``, ``"web"`` or ``"objects"``) words it."""
    if origin in ("api", "uploads"):
        return api_error(404, "Not Found")
    if origin == "objects":
        return xml_error(404, "NoSuchKey", "The specified key does not exist.")
    return web.Response(status=404, text="Not Found")
