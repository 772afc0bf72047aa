from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from pyrosapp.models import Log

log = logging.getLogger("pyros.common")


def log_purge(*, older_than_days: int | None = None) -> int:
    days = settings.PYROS_LOG_RETENTION_DAYS if older_than_days is None else older_than_days
    deleted, _ = Log.objects.filter(time__lt=timezone.now() - timedelta(days=days)).delete()
    if deleted:
        log.info("purged %d log records older than %d days", deleted, days)
    return deleted
