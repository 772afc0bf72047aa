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
