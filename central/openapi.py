"""What the OpenAPI document says about each route: its headers, its status codes and their
bodies. The tus routes read their headers themselves (to answer tus's own statuses, not
FastAPI's 422), so their parameters are declared here, as ``openapi_extra``; every route's
answers are declared as ``responses``. :func:`add_common_answers` adds what any route may
answer (the gate's 429, the server's 431). ``tests/test_central_openapi.py`` runs schemathesis
against a live ``recdock-central`` to hold the document to what the server does.
"""

from __future__ import annotations

from typing import Any

from fastapi import Response
from fastapi.security import HTTPBearer

#: The two kinds of bearer token, as OpenAPI security schemes (the routes check them).
STATION_TOKEN = HTTPBearer(
    auto_error=False,
    scheme_name="stationToken",
    description="A station's upload token (the centre's tokens file, [stations]).",
)
READER_TOKEN = HTTPBearer(
    auto_error=False,
    scheme_name="readerToken",
    description="A reader token of the JSON API ([readers]); station tokens are refused.",
)

_STR = {"type": "string"}
_DIGITS = {"type": "string", "pattern": "^[0-9]{1,20}$"}


def _header(description: str, schema: dict[str, Any] | None = None, *, required=False):
    return {"description": description, "required": required, "schema": schema or _STR}


ERROR = {
    "type": "object",
    "properties": {"error": _STR, "detail": _STR},
    "required": ["detail"],
}
RECEIPT = {
    "type": "object",
    "properties": {
        "upload_id": _STR,
        "object_id": _STR,
        "sha256": _STR,
        "sm3": {"type": ["string", "null"]},
        "size": {"type": "integer", "minimum": 0},
        "station": _STR,
        "metadata": {"type": "object", "additionalProperties": _STR},
        "received_at": _STR,
        "verified": {"type": "boolean"},
        "deduplicated": {"type": "boolean"},
    },
    "required": ["upload_id", "object_id", "sha256", "size", "station", "verified"],
}

TUS_RESUMABLE = _header("tus protocol version of the answer", {"type": "string", "enum": ["1.0.0"]})
_TUS_ANSWER = {"Tus-Resumable": TUS_RESUMABLE}


def _json(description: str, schema: dict[str, Any], headers: dict[str, Any] | None = None):
    answer: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": schema}},
    }
    if headers:
        answer["headers"] = headers
    return answer


def _empty(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"description": description, **({"headers": headers} if headers else {})}


def _errors(*statuses: int, head: bool = False) -> dict[int | str, dict[str, Any]]:
    """The error answers ``statuses`` of a tus route (no body for a HEAD)."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        text = _ERROR_TEXT[status]
        out[status] = _empty(text) if head else _json(text, ERROR)
    return out


_ERROR_TEXT = {
    400: "A malformed header (the error names it), or too many Upload-Metadata keys",
    401: "No station token, or an unknown one",
    403: "Another station's upload, or another station id in Upload-Metadata",
    404: "No such upload (expired, terminated, or never made)",
    409: "Upload-Offset is not the server's offset (it is in Upload-Offset), or incomplete",
    410: "The upload failed verification; re-send the file",
    412: "Tus-Resumable: 1.0.0 is missing",
    413: "Too large: above Tus-Max-Size or a station's limit; with Retry-After, the disk is short",
    415: "Content-Type is not application/offset+octet-stream",
    423: "Another request is writing this upload; retry",
    429: "A station limit (open uploads, unfinished or daily bytes) or too many requests in "
    "flight; Retry-After says when to retry",
    431: "Upload-Metadata, or the request head, is too long",
}


def _request_headers(*names: str) -> list[dict[str, Any]]:
    known = {
        "Tus-Resumable": ("tus protocol version", {"type": "string", "enum": ["1.0.0"]}),
        "Upload-Length": ("Size of the upload in bytes (ASCII digits)", _DIGITS),
        "Upload-Metadata": (
            "Comma-separated `key base64(value)` pairs; `sha256` (64 hex) is required",
            _STR,
        ),
        "Upload-Offset": ("Offset the body starts at (ASCII digits)", _DIGITS),
    }
    return [
        {
            "name": name,
            "in": "header",
            "required": True,
            "description": known[name][0],
            "schema": known[name][1],
        }
        for name in names
    ]


UPLOAD_ID = {
    "name": "upload_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "The upload's id (32 hex digits, made by the server)",
}

OPTIONS = {
    "status_code": 204,
    "response_class": Response,
    "responses": {
        204: _empty(
            "The server's tus capabilities",
            {
                **_TUS_ANSWER,
                "Tus-Version": _header("Supported versions", required=True),
                "Tus-Extension": _header("Supported extensions", required=True),
                "Tus-Max-Size": _header("Largest upload", _DIGITS, required=True),
            },
        )
    },
}
CREATE = {
    "status_code": 201,
    "response_class": Response,
    "responses": {
        201: {
            "description": "Created (Location). With Upload-Receipt, Upload-Offset equal to "
            "Upload-Length and the receipt as body: content this station already uploaded",
            "headers": {
                **_TUS_ANSWER,
                "Location": _header("The upload's URL", required=True),
                "Upload-Offset": _header("Bytes already stored", _DIGITS),
                "Upload-Receipt": _header("The receipt's URL"),
            },
            "content": {"application/json": {"schema": RECEIPT}},
        },
        **_errors(400, 401, 403, 412, 413, 429, 431),
    },
    "openapi_extra": {
        "parameters": _request_headers("Tus-Resumable", "Upload-Length", "Upload-Metadata")
    },
}
HEAD = {
    "status_code": 200,
    "response_class": Response,
    "responses": {
        200: _empty(
            "Where the upload stands",
            {
                **_TUS_ANSWER,
                "Upload-Offset": _header("Bytes received", _DIGITS, required=True),
                "Upload-Length": _header("Size of the upload", _DIGITS, required=True),
                "Upload-Metadata": _header("The metadata of the creation", required=True),
                "Upload-Receipt": _header("The receipt's URL, once complete"),
            },
        ),
        **_errors(401, 403, 404, 410, 412, head=True),
    },
    "openapi_extra": {"parameters": _request_headers("Tus-Resumable")},
}
PATCH = {
    "status_code": 204,
    "response_class": Response,
    "responses": {
        204: _empty(
            "Appended and fsynced",
            {
                **_TUS_ANSWER,
                "Upload-Offset": _header("The new offset", _DIGITS, required=True),
                "Upload-Receipt": _header("The receipt's URL, after the last byte"),
            },
        ),
        **_errors(400, 401, 403, 404, 409, 412, 413, 415, 423),
    },
    "openapi_extra": {
        "parameters": _request_headers("Tus-Resumable", "Upload-Offset"),
        "requestBody": {
            "required": True,
            "content": {
                "application/offset+octet-stream": {
                    "schema": {"type": "string", "format": "binary"}
                }
            },
        },
    },
}
DELETE = {
    "status_code": 204,
    "response_class": Response,
    "responses": {
        204: _empty("The unfinished upload is gone", _TUS_ANSWER),
        **_errors(401, 403, 404, 410, 412),
    },
    "openapi_extra": {"parameters": _request_headers("Tus-Resumable")},
}
RECEIPT_ROUTE = {
    "responses": {
        200: _json("The receipt: the stored bytes match the announced hashes", RECEIPT),
        202: _json(
            "Still verifying",
            {"type": "object", "properties": {"status": {"enum": ["verifying"]}}},
            {"Retry-After": _header("Seconds to wait", _DIGITS, required=True)},
        ),
        460: _json("The hash did not match: re-send the file", ERROR),
        500: _json("The server could not finish the verification (its disk); ask again", ERROR),
        **_errors(401, 403, 404, 409),
    },
}

API_ERRORS = {
    401: _json("No reader token, or a station's token", ERROR),
    503: _json("The server has no reader tokens configured", ERROR),
}
API_NOT_FOUND = {404: _json("No such station reported yet", ERROR)}
_LINK = {
    "description": 'RFC 8288 links to the next and previous pages (rel="next", rel="prev")',
    "schema": {"type": "string"},
}
_TOTAL = {
    "description": "How many items the whole list holds with these filters",
    "schema": {"type": "string", "pattern": "^[0-9]+$"},
}
# a paged list (?limit=&offset=, central/api.py): its total and its links
PAGED: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "One page of the list",
        "headers": {"X-Total-Count": _TOTAL, "Link": _LINK},
    }
}
# a stream read newest first (events, alerts): links only, no total
PAGED_STREAM: dict[int | str, dict[str, Any]] = {
    200: {"description": "One page, newest first", "headers": {"Link": _LINK}}
}


def add_common_answers(schema: dict[str, Any]) -> dict[str, Any]:
    """What any route may answer besides its own: the gate's 429 and the server's 431."""
    for methods in schema.get("paths", {}).values():
        for operation in methods.values():
            answers = operation.setdefault("responses", {})
            answers.setdefault(
                "429",
                _json("Too many requests in flight, or a station limit; see Retry-After", ERROR),
            )
            answers.setdefault("431", _json("The request head is too long", ERROR))
    return schema


API_BAD_PERIOD = {
    400: _json("A day that does not exist, or a period that ends before it starts", ERROR)
}
