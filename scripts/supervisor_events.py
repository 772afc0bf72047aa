"""supervisord event listener of ``make run``: every crash is reported, a process that keeps crashing too.

supervisord restarts a process that exits; this listener makes sure nobody misses it: each unexpected
exit and each FATAL process (it kept dying at start and supervisord gave up) is logged on the console,
in ``--log`` (var/log/supervision.log) and in PyROS's log (the ``Log`` table the dashboard shows, logger
``pyros.supervision``) when the database is reachable. ``CRASH_REPORT_COUNT`` unexpected exits of one
process within ``CRASH_REPORT_WINDOW_S`` are reported as "keeps crashing" (ERROR).

The protocol (supervisord's eventlistener): write READY on stdout, read one header line and its payload
on stdin, answer RESULT 2\\nOK. Everything else goes to stderr.
"""

from __future__ import annotations

import argparse
import collections
import logging
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CRASH_REPORT_COUNT = 3
CRASH_REPORT_WINDOW_S = 600.0

log = logging.getLogger("pyros.supervision")


def _parse(text: str) -> dict[str, str]:
    return dict(token.split(":", 1) for token in text.split() if ":" in token)


def _setup_logging(log_path: Path | None) -> None:
    """The file, plus PyROS's logging (console and the Log table) when Django loads; else the console."""
    log.setLevel(logging.INFO)
    try:
        sys.path.insert(0, str(ROOT))
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pyros.settings")
        import django

        django.setup()  # configures the `pyros` logger (console and database); ours propagates to it
        django_ok = True
    except Exception as exc:  # noqa: BLE001 - the console and the file are enough
        django_ok, reason = False, exc
    fmt = logging.Formatter("%(asctime)s %(levelname)-7s supervision: %(message)s")
    handlers: list[logging.Handler] = [] if django_ok else [logging.StreamHandler(sys.stderr)]
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path))
    for handler in handlers:
        handler.setFormatter(fmt)
        log.addHandler(handler)
    log.propagate = django_ok
    if not django_ok:
        log.warning("crash reports go to the console and the file only: %s", reason)


class CrashCounter:
    def __init__(self, *, count: int = CRASH_REPORT_COUNT, window_s: float = CRASH_REPORT_WINDOW_S) -> None:
        self.count, self.window_s = count, window_s
        self.exits: dict[str, collections.deque] = collections.defaultdict(collections.deque)

    def record(self, name: str, now: float | None = None) -> int:
        now = time.monotonic() if now is None else now
        exits = self.exits[name]
        exits.append(now)
        while exits and now - exits[0] > self.window_s:
            exits.popleft()
        return len(exits)


def handle(event: str, payload: dict[str, str], counter: CrashCounter) -> None:
    name = payload.get("processname", "?")
    if event == "PROCESS_STATE_EXITED":
        if payload.get("expected") == "1":
            log.info("%s exited normally (pid %s)", name, payload.get("pid"))
            return
        n = counter.record(name)
        if n >= counter.count:
            log.error("%s keeps crashing: %d unexpected exits in %.0f min (last pid %s); restarting it again",
                      name, n, counter.window_s / 60.0, payload.get("pid"))
        else:
            log.warning("%s crashed (pid %s, from state %s); supervisord restarts it", name, payload.get("pid"),
                        payload.get("from_state"))
    elif event == "PROCESS_STATE_FATAL":
        log.critical("%s could not be started (it kept exiting at start): FATAL, not restarted; see its output, "
                     "then `supervisorctl start %s`", name, name)
    elif event == "PROCESS_STATE_RUNNING" and counter.exits.get(name):
        log.info("%s running again (pid %s)", name, payload.get("pid"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--log", type=Path)
    args = parser.parse_args(argv)
    _setup_logging(args.log)
    counter = CrashCounter()
    stdin, stdout = sys.stdin, sys.stdout
    while True:
        stdout.write("READY\n")
        stdout.flush()
        header_line = stdin.readline()
        if not header_line:
            return 0
        header = _parse(header_line)
        payload_text = stdin.read(int(header.get("len", "0")))
        head, _, _ = payload_text.partition("\n")
        try:
            handle(header.get("eventname", ""), _parse(head), counter)
        except Exception:  # noqa: BLE001 - never block supervisord's event queue
            log.exception("could not report %s", header.get("eventname"))
        stdout.write("RESULT 2\nOK")
        stdout.flush()


if __name__ == "__main__":
    raise SystemExit(main())
