"""What a script procedure imports to talk to PyROS (standard library only: no Django, nothing to install).

    from procedures.script_client import api, params, progress, publish

    p = params()                                  # the validated parameters (also given as --name=value)
    publish(free_gb=12.5, ok=True)                # merged into the item's published data, at once
    progress(3, 10, "third disk")                 # the item's progress bar
    state = api("GET", "observatory/")            # PyROS's REST API, as the operator who queued the item

The published data travels as JSON lines on the file descriptor ``PYROS_PUBLISH_FD`` that the procedures
worker passes to the script (procedures/external.py describes the whole contract). Run by hand, outside
PyROS, ``publish`` and ``progress`` print the lines on stderr instead, so a script can be tried alone."""

from __future__ import annotations

import json
import os
import sys
import threading
import urllib.error
import urllib.request

PROGRESS_KEY = "$progress"
_lock = threading.Lock()


class ApiError(Exception):
    """A REST API call that PyROS refused (``status``: the HTTP status, 0 when PyROS was unreachable)."""

    def __init__(self, message: str, *, status: int = 0, body: object = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


def params() -> dict:
    """The procedure's parameters (validated and completed with their defaults by PyROS)."""
    return json.loads(os.environ.get("PYROS_PARAMS") or "{}")


def _send(obj: dict) -> None:
    line = (json.dumps(obj, allow_nan=False) + "\n").encode()
    fd = os.environ.get("PYROS_PUBLISH_FD")
    with _lock:
        if not fd:
            sys.stderr.write(f"[publish, not under PyROS] {line.decode()}")
            sys.stderr.flush()
            return
        view = memoryview(line)
        while view:
            view = view[os.write(int(fd), view):]


def publish(**data) -> None:
    """Publish results (JSON values): each call is merged into the item's published data as it arrives."""
    if PROGRESS_KEY in data:
        raise ValueError(f"{PROGRESS_KEY!r} is reserved: use progress()")
    if data:
        _send(data)


def progress(current: float, total: float | None = None, message: str = "") -> None:
    """Set the item's progress (``current`` of ``total``, with a short message)."""
    _send({PROGRESS_KEY: {"current": current, "total": total, "message": str(message)[:300]}})


def api(method: str, path: str, body: dict | None = None, *, timeout_s: float = 30.0):
    """Call PyROS's REST API (``path`` below ``/api/``, e.g. ``"queue/"``) with ``PYROS_URL`` and
    ``PYROS_TOKEN``; returns the decoded JSON answer, raises ``ApiError`` on a refusal or no answer."""
    url = os.environ.get("PYROS_URL", "http://127.0.0.1:8000").rstrip("/") + "/api/" + path.lstrip("/")
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method.upper())
    request.add_header("Accept", "application/json")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    token = os.environ.get("PYROS_TOKEN")
    if token:
        request.add_header("Authorization", f"Token {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as answer:  # noqa: S310 - PyROS's own URL
            raw = answer.read()
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            decoded = json.loads(raw)
        except ValueError:
            decoded = raw.decode(errors="replace")[:300]
        raise ApiError(f"{method.upper()} {url}: HTTP {exc.code}: {decoded}", status=exc.code, body=decoded) from exc
    except (urllib.error.URLError, OSError) as exc:
        raise ApiError(f"{method.upper()} {url}: PyROS unreachable ({exc})") from exc
    return json.loads(raw) if raw else None
