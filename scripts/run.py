"""Start every process of the Procfile (honcho), with the virtual environment's tools on PATH.

Ctrl-C (SIGINT) or SIGTERM stops them all; honcho forwards the signal and waits for each one."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    os.chdir(ROOT)
    env = os.environ.copy()
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("PYTHONUNBUFFERED", "1")
    args = [sys.executable, "-m", "honcho", "start", "-f", str(ROOT / "Procfile"), *sys.argv[1:]]
    os.execve(sys.executable, args, env)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
