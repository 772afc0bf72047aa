"""Request guards that hold for every page and endpoint."""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

from common.error_pages import error_response

# A JSON string escape of NUL that is not itself an escaped backslash followed by "u0000".
_JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000", re.IGNORECASE)
_TEXT_BODIES = ("application/json", "application/x-www-form-urlencoded", "text/")


class RejectNulBytesMiddleware:
    """A NUL byte in the path, the query or a JSON/form/text body is a 400, before any view: PostgreSQL
    refuses NUL in text (a 500 deep in a view otherwise) and no field of PyROS may hold one. Multipart
    uploads (FITS, CSV files) may contain NULs; their form fields are checked by Django's forms."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if self._has_nul(request):
            return error_response(request, 400, "NUL bytes are not accepted in addresses, queries or bodies.")
        return self.get_response(request)

    @staticmethod
    def _has_nul(request) -> bool:
        if "\x00" in request.path_info or b"\x00" in unquote_to_bytes(request.META.get("QUERY_STRING", "")):
            return True
        content_type = request.META.get("CONTENT_TYPE", "").lower()
        if request.method in {"GET", "HEAD", "OPTIONS"} or not content_type.startswith(_TEXT_BODIES):
            return False
        try:
            body = request.body
        except Exception:  # noqa: BLE001 - too large or unreadable: the view's own parsing answers that
            return False
        if b"\x00" in body:
            return True
        if content_type.startswith("application/json"):
            return _JSON_NUL.search(body) is not None
        return b"%00" in body
