from __future__ import annotations

from django.db import models


class Log(models.Model):
    """A PyROS log record, written by common.logging.DatabaseLogHandler and shown live on the dashboard."""

    time = models.DateTimeField(db_index=True)
    level = models.PositiveSmallIntegerField(db_index=True)
    level_name = models.CharField(max_length=10)
    component = models.CharField(max_length=100, db_index=True)
    message = models.TextField()
    process = models.CharField(max_length=50, blank=True)
    # Who may read it (issue #16): astronomers see the public lines (the observatory's state) and those about
    # their own requests (``extra={"request_id": ...}`` on the log call); operators and administrators see all.
    request_id = models.IntegerField(null=True, blank=True, db_index=True)
    public = models.BooleanField(default=False, db_index=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.time:%H:%M:%S} {self.level_name} {self.component}: {self.message[:80]}"
