"""What every REST endpoint shares: one error body, throttles whose rates come from the settings, and
the OpenAPI post-processing that documents both (issue #16: "an API that holds").

Every error answer of /api/ is JSON ``{"detail": "...", "errors": {...}}``: ``detail`` always, ``errors``
(messages by field) when input was understood but invalid. The schema says so for every operation
(400 when it takes input, 401, 403, 404 when it has a path parameter or pages, 429), so a client, and
schemathesis in the tests, can rely on it.
"""

from __future__ import annotations

from django.db import DataError
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

ERROR_SCHEMA_NAME = "Error"
ERROR_SCHEMA = {
    "type": "object",
    "description": "Every error answer of the API.",
    "properties": {
        "detail": {"type": "string", "description": "What went wrong, in words"},
        "errors": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}},
                   "description": 'Messages by field, when the input was understood but is invalid, e.g. '
                                  '{"sequences[0].window.start": ["..."]}'},
    },
    "required": ["detail"],
}


def _flatten(value) -> list[str]:
    if isinstance(value, dict):
        return [f"{key}: {message}" for key, inner in value.items() for message in _flatten(inner)]
    if isinstance(value, list | tuple):
        return [message for inner in value for message in _flatten(inner)]
    return [str(value)]


def error_body(detail: str, errors: dict | None = None) -> dict:
    body: dict = {"detail": detail}
    if errors:
        body["errors"] = {str(key): _flatten(messages) for key, messages in errors.items()}
    return body


def exception_handler(exc, context):
    """DRF's handler, with the one error body: a field-by-field ValidationError becomes
    ``{"detail": "Invalid input.", "errors": {...}}``; everything else keeps DRF's ``detail``."""
    if isinstance(exc, OverflowError | DataError):
        # An id or a count beyond the database's integers (SQLite: OverflowError; PostgreSQL: DataError
        # "out of range") is bad input, not a server error.
        return Response(error_body("A number in the request is out of range."), status=400)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        data = exc.detail
        if isinstance(data, dict):
            response.data = error_body("Invalid input.", data)
        else:
            messages = _flatten(data)
            response.data = error_body(messages[0] if len(messages) == 1 else "Invalid input.",
                                       {"non_field_errors": messages} if len(messages) > 1 else None)
    elif not (isinstance(response.data, dict) and isinstance(response.data.get("detail"), str)):
        response.data = error_body(" ".join(_flatten(response.data)) or "Error.")
    return response


def _error_response(description: str) -> dict:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ERROR_SCHEMA_NAME}"}}}}


def postprocess_schema(result, generator, request, public):
    """drf-spectacular post-processing hook: the shared error answers on every operation, and JSON
    bodies for the error responses views declared without one."""
    result.setdefault("components", {}).setdefault("schemas", {})[ERROR_SCHEMA_NAME] = ERROR_SCHEMA
    for path, item in result.get("paths", {}).items():
        for method, operation in item.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            responses = operation.setdefault("responses", {})
            parameter_names = {p.get("name") for p in operation.get("parameters", [])}
            wanted = {
                # NUL bytes are refused anywhere (query or body), so any operation may answer 400.
                "400": "Invalid input (including NUL bytes in the query or the body)",
                "401": "Not authenticated (no or an unknown token/session)",
                "403": "Not allowed for this account",
                "429": "Too many requests: wait the seconds of the Retry-After header",
            }
            if "{" in path or "page" in parameter_names or "offset" in parameter_names:
                wanted["404"] = "No such object (or no such page)"
            for code, description in wanted.items():
                responses.setdefault(code, _error_response(description))
            for code, response in responses.items():
                if code.startswith(("4", "5")) and "content" not in response:
                    response["content"] = _error_response(response.get("description", ""))["content"]
    return result
