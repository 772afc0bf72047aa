"""Error pages in the site's layout (HTML) or the API's error body (JSON under /api/), for every mode a
user can reach: Django's handlers when DEBUG is off (``handler404`` ... in pyros/urls.py), and
`ErrorPageMiddleware` replacing Django's debug pages when DEBUG is on (the default of `make run`).
``PYROS_DEBUG_PAGES=1`` keeps Django's debug pages for a developer at their own machine."""

from __future__ import annotations

import logging

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.template.loader import render_to_string

from common.api import error_body

log = logging.getLogger("pyros.common")

TITLES = {
    400: ("Bad request", "The request could not be understood (a malformed form, address or body)."),
    403: ("Not allowed", "Your account may not see or do this."),
    404: ("Page not found", "There is nothing at this address."),
    405: ("Method not allowed", "This address does not accept this kind of request."),
    429: ("Too many requests", "Too many attempts in a short time: wait a little, then try again."),
    500: ("Server error", "Something went wrong on our side. It was logged; the operators can see it."),
}
# Django's debug pages (technical_404.html, technical_500.html, csrf_403.html) all carry this line.
DEBUG_PAGE_MARK = b'<meta name="robots" content="NONE,NOARCHIVE">'


def is_api(request) -> bool:
    return request.path.startswith("/api/")


def error_response(request, status: int, message: str = "") -> HttpResponse:
    title, default_message = TITLES.get(status, ("Error", "Something went wrong."))
    message = message or default_message
    if is_api(request):
        response = JsonResponse(error_body(message), status=status)
    else:
        try:
            html = render_to_string("errors/error.html", {"status": status, "title": title, "message": message},
                                    request=request)
        except Exception:  # noqa: BLE001 - the error page itself must never fail: plain text then
            log.exception("error page %s could not be rendered", status)
            html = f"<!doctype html><title>{title}</title><h1>{title}</h1><p>{message}</p>"
        response = HttpResponse(html, status=status, content_type="text/html; charset=utf-8")
    response.pyros_error_page = True
    return response


def _message(exception) -> str:
    # Only our own messages are shown (PermissionDenied("This page is for operators.")); Http404's text
    # may name a model or a query and is not.
    text = str(exception) if exception is not None else ""
    return text if text and len(text) < 200 and "\n" not in text else ""


def bad_request(request, exception=None):
    return error_response(request, 400)


def permission_denied(request, exception=None):
    return error_response(request, 403, _message(exception))


def page_not_found(request, exception=None):
    return error_response(request, 404)


def server_error(request):
    return error_response(request, 500)


def csrf_failure(request, reason=""):
    return error_response(request, 403, "The form had expired or came from elsewhere: reload the page and try again.")


class ErrorPageMiddleware:
    """With DEBUG on, Django answers errors with its debug pages (settings, paths, the traceback):
    replace them with the site's own. With DEBUG off Django already calls the handlers above."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if (response.status_code >= 400 and settings.DEBUG and not settings.PYROS_DEBUG_PAGES
                and not getattr(response, "pyros_error_page", False) and not response.streaming
                and response.get("Content-Type", "").startswith("text/html")
                and DEBUG_PAGE_MARK in response.content[:4000]):
            return error_response(request, response.status_code)
        return response
