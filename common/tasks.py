from __future__ import annotations

from celery import shared_task

from common import services


@shared_task(name="pyros.common.log_purge", soft_time_limit=120, time_limit=150)
def log_purge() -> int:
    return services.log_purge()


@shared_task(name="pyros.common.ping")
def ping(*, value: int) -> dict:
    """Round-trip check used by tests and `make run`'s health check: proves broker + worker work, and says
    which database session served it (PostgreSQL's backend pid: the same one task after task)."""
    import os

    from django.db import connection

    session = None
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            session = cursor.fetchone()[0]
    return {"value": value, "pid": os.getpid(), "db_session": session}


# Retries of the deliveries that failed transiently: 30 s, 1 min, 2 min, 4 min, 8 min, then given up.
NOTIFY_MAX_RETRIES = 5


@shared_task(name="pyros.common.notify", bind=True, max_retries=NOTIFY_MAX_RETRIES, soft_time_limit=120,
             time_limit=150)
def notify(self, *, kind: str, subject: str, body: str, link: str = "", user_ids: list[int] | None = None,
           deliveries: list[list[str]] | None = None) -> int:
    """Deliver a notification (``common.notifications``); ``deliveries`` is set by a retry: only those that
    failed are tried again. Returns how many deliveries were made."""
    from common import notifications

    todo = ([notifications.Delivery(*d) for d in deliveries] if deliveries is not None
            else notifications.recipients(kind=kind, user_ids=user_ids))
    failed = notifications.deliver(deliveries=todo, subject=subject, body=body, link=link)
    if failed and self.request.retries < NOTIFY_MAX_RETRIES:
        raise self.retry(countdown=30 * 2 ** self.request.retries, kwargs={
            "kind": kind, "subject": subject, "body": body, "link": link, "user_ids": user_ids,
            "deliveries": [d.as_list() for d in failed]})
    return len(todo) - len(failed)
