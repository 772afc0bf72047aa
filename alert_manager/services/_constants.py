"""Constants shared by the alert manager's services."""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from pathlib import Path

from django.conf import settings

from alert_manager.grouping import (
    DEFAULT_TIME_TOLERANCE_S,
)
from pyrosapp.models import AlertEvent
from routine_manager import lifecycle

log = logging.getLogger("pyros.alert_manager")

# Any constant: the key of the PostgreSQL advisory lock serialising grouping decisions.
GROUPING_LOCK_KEY = 0x50_59_52_4F_53_07  # "PYROS" 7
# Candidate events for a time coincidence: the pure grouping's tolerance, and a bound on how many are loaded.
COINCIDENCE_WINDOW = timedelta(seconds=DEFAULT_TIME_TOLERANCE_S)
MAX_COINCIDENT_CANDIDATES = 50
# Stored raw bytes of a packet too large to parse: enough to see what it was.
OVERSIZE_KEEP_BYTES = 64 * 1024
PENDING_AFTER_S = 30.0  # a row still `received` after this was not queued (broker down): queue it again
STUCK_AFTER_S = 300.0  # a row `processing` this long lost its worker (task limit is 90 s)
VISIBILITY_HOURS = 24.0

_IVORN_ATTR_RE = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?VOEvent\b[^>]{0,4000}?\bivorn\s*=\s*([\"'])([^\"'<>]{1,500})\1",
                            re.DOTALL)
# The request aggregate's status sets (declared once, in routine_manager.lifecycle).
_FINAL_REQUEST_STATES = lifecycle.REQUEST_FINAL
_OPEN_SEQUENCE_STATES = lifecycle.SEQUENCE_OPEN
_EVENT_OPEN_STATES = (AlertEvent.Status.NEW, AlertEvent.Status.NOT_ACTIONABLE, AlertEvent.Status.IGNORED)


def spool_dir() -> Path:
    return Path(settings.VAR_DIR) / "alert-spool"
