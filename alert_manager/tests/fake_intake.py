"""Stand-in for ``alert_manager.intake`` in the Comet integration test (loaded by the real plugin
through ``PYROS_COMET_INTAKE``): writes each packet it receives into ``$PYROS_TEST_INTAKE_DIR``."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def receive_packet(raw: bytes) -> None:
    folder = Path(os.environ["PYROS_TEST_INTAKE_DIR"])
    target = folder / f"{hashlib.sha256(raw).hexdigest()}.xml"
    tmp = target.with_suffix(".tmp")
    tmp.write_bytes(raw)
    tmp.replace(target)  # atomic: the test never sees half a packet
