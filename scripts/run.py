"""Start every process of the Procfile under supervisord, with the virtual environment's tools on PATH.

    .venv/bin/python scripts/run.py                 # every process
    .venv/bin/python scripts/run.py simulators web  # some of them
    .venv/bin/python scripts/run.py --print-config  # the supervisord configuration, nothing started

A process that exits is started again (supervisord's ``autorestart``); one that dies within
``startsecs`` of its start is retried with a growing delay (1 s, 2 s, ... ``startretries`` times), then
left FATAL. Every unexpected exit and every FATAL process is reported by ``scripts/supervisor_events.py``
(console, ``var/log/supervision.log``, and PyROS's log shown on the dashboard), and a process that keeps
crashing (``CRASH_REPORT_COUNT`` exits within ``CRASH_REPORT_WINDOW_S``) is reported as such.
Ctrl-C (SIGINT) or SIGTERM stops them all. ``var/supervisor/supervisor.sock`` answers
``.venv/bin/supervisorctl -c var/supervisor/supervisord.conf status``.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Per process: seconds it must live to count as started, and how long it may take to stop.
START_SECS = {"web": 3, "simulators": 2, "comet": 3}
DEFAULT_START_SECS = 5
STOP_WAIT_SECS = {"worker-execution": 30, "safety": 20}
START_RETRIES = 5


def procfile(path: Path) -> dict[str, str]:
    """``name: command`` lines, in order."""
    processes: dict[str, str] = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_-]+):\s*(.+)$", line.strip())
        if match and not line.lstrip().startswith("#"):
            processes[match.group(1)] = match.group(2)
    return processes


def _quote(command: str) -> str:
    # supervisord splits `command` like a shell and expands %(name)s (so % doubles); the Procfile's
    # ${VAR:-default} needs a real shell, which `exec` replaces (the process supervisord watches is the real one)
    command = command.replace("%", "%%").replace("'", "'\"'\"'")
    return "/bin/sh -c '" + "exec " + command + "'"


def supervisord_config(processes: dict[str, str], *, var_dir: Path, python: str) -> str:
    state = var_dir / "supervisor"
    logs = var_dir / "log"
    lines = [
        "[supervisord]",
        "nodaemon=true",
        # Its own lines once, on the console: in the foreground it writes them to stdout besides the logfile.
        "silent=true",
        "logfile=/dev/stdout",
        "logfile_maxbytes=0",
        f"pidfile={state / 'supervisord.pid'}",
        f"childlogdir={logs}",
        "loglevel=info",
        "",
        "[unix_http_server]",
        f"file={state / 'supervisor.sock'}",
        "chmod=0700",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{state / 'supervisor.sock'}",
        "",
        "[eventlistener:supervision]",
        f"command={python} {ROOT / 'scripts' / 'supervisor_events.py'} --log {logs / 'supervision.log'}",
        "events=PROCESS_STATE_EXITED,PROCESS_STATE_FATAL,PROCESS_STATE_RUNNING",
        "autorestart=true",
        "stderr_logfile=/dev/stderr",
        "stderr_logfile_maxbytes=0",
        "",
    ]
    for name, command in processes.items():
        lines += [
            f"[program:{name}]",
            f"command={_quote(command)}",
            f"directory={ROOT}",
            "autostart=true",
            "autorestart=true",
            f"startsecs={START_SECS.get(name, DEFAULT_START_SECS)}",
            f"startretries={START_RETRIES}",
            "stopsignal=TERM",
            f"stopwaitsecs={STOP_WAIT_SECS.get(name, 10)}",
            "stopasgroup=true",
            "killasgroup=true",
            "redirect_stderr=true",
            "stdout_logfile=/dev/stdout",
            "stdout_logfile_maxbytes=0",
            "",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="processes of the Procfile to start (default: all)")
    parser.add_argument("-f", "--procfile", default=str(ROOT / "Procfile"))
    parser.add_argument("--print-config", action="store_true")
    args = parser.parse_args(argv)
    os.chdir(ROOT)
    processes = procfile(Path(args.procfile))
    unknown = [n for n in args.names if n not in processes]
    if unknown:
        parser.error(f"not in the Procfile: {', '.join(unknown)}")
    if args.names:
        processes = {n: c for n, c in processes.items() if n in args.names}
    var_dir = Path(os.environ.get("PYROS_VAR_DIR") or ROOT / "var").resolve()
    config = supervisord_config(processes, var_dir=var_dir, python=sys.executable)
    if args.print_config:
        print(config)
        return 0
    for folder in (var_dir / "supervisor", var_dir / "log"):
        folder.mkdir(parents=True, exist_ok=True)
    path = var_dir / "supervisor" / "supervisord.conf"
    path.write_text(config)
    env = os.environ.copy()
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("PYTHONUNBUFFERED", "1")
    env["PYROS_VAR_DIR"] = str(var_dir)
    os.execve(sys.executable, [sys.executable, "-m", "supervisor.supervisord", "-c", str(path)], env)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
