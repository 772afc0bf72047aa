"""Messages by task name: how a lower layer reaches a higher one (see the layer order in the README).

An app may call the services of the apps below it. To make something happen in an app above it (the
majordome must dispatch the next sequence, the analyzer must measure a new image...), it sends a Celery
message by task name, never an import: ``send_after_commit("pyros.analyzer.analyze_image", image_id=7)``.
The message leaves once the current transaction commits, so the receiver reads what was written.

The Celery app is the one the process configured (``pyros.celery``, loaded by Django's app registry
through the ``pyros`` app); routes by task name send each message to its queue.
"""

from __future__ import annotations

import logging

from celery import current_app
from django.db import transaction

log = logging.getLogger("pyros.common")


def send_now(name: str, /, *, countdown_s: float = 0.0, **kwargs) -> bool:
    """Send ``name`` with keyword arguments now (to run ``countdown_s`` later); False (logged) when the
    broker refused it. ``countdown_s`` is this helper's own argument, never passed to the task."""
    try:
        current_app.send_task(name, kwargs=kwargs, countdown=countdown_s or None)
    except Exception as exc:  # noqa: BLE001 - the caller's periodic sweep is the fallback; say so in the log
        log.warning("message %s(%s) not sent: %s", name, ", ".join(f"{k}={v!r}" for k, v in kwargs.items()), exc)
        return False
    return True


def send_after_commit(name: str, /, *, countdown_s: float = 0.0, **kwargs) -> None:
    """Send ``name`` with keyword arguments once the current transaction commits (at once outside one)."""
    transaction.on_commit(lambda: send_now(name, countdown_s=countdown_s, **kwargs))
