"""Messages by task name are the only way up the layers: every name sent must be a task some app registers
(a typo would otherwise be a message nobody ever receives)."""

from __future__ import annotations

import re
from pathlib import Path

from common.testing import REPO

SENT = re.compile(r"""send_(?:after_commit|now)\(\s*["']([\w.]+)["']""")


def test_every_task_sent_by_name_is_registered():
    from pyros.celery import app

    app.loader.import_default_modules()
    registered = set(app.tasks)
    sent = {}
    for path in Path(REPO).rglob("*.py"):
        if ".venv" in path.parts or "tests" in path.parts:
            continue
        for name in SENT.findall(path.read_text(encoding="utf-8")):
            sent.setdefault(name, str(path.relative_to(REPO)))
    assert "pyros.majordome.sequence_withdrawn" in sent and "pyros.scheduler.make_schedule" in sent
    missing = {name: where for name, where in sent.items() if name not in registered}
    assert not missing, f"messages sent to no registered task: {missing}"
