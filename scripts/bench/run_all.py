"""`make bench`: every benchmark, one after the other, each printing its own numbers, the reference
measured in the same run and the ratios; then a summary. Benchmarks never gate CI.

    .venv/bin/python scripts/bench/run_all.py [name ...]     # e.g. scheduler alerts
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = ["devices", "scheduler", "requests", "execution", "procedures", "flows", "safety", "alerts_comet", "alerts", "kafka", "tiling", "analyzer", "dashboard"]


def main(argv: list[str]) -> int:
    wanted = argv or ORDER
    summary = []
    for name in wanted:
        script = HERE / f"bench_{name}.py"
        if not script.exists():
            print(f"== {name}: no such benchmark ({script.name})")
            summary.append((name, "missing", 0.0))
            continue
        print(f"\n== bench_{name} " + "=" * 60, flush=True)
        t0 = time.monotonic()
        code = subprocess.call([sys.executable, str(script)], cwd=HERE.parent.parent)
        summary.append((name, "PASS" if code == 0 else f"FAIL (exit {code})", time.monotonic() - t0))
    print("\n== summary " + "=" * 60)
    for name, verdict, seconds in summary:
        print(f"  {name:<14} {verdict:<16} {seconds:6.1f} s")
    return 0 if all(v == "PASS" for _, v, _ in summary) else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
