"""Safety benchmark (issue #15, "Safety that cannot be starved, fooled or stopped"): weather turning unsafe ->
dome close command at the INDI dome, on the real safety process.

Run: ``.venv/bin/python scripts/bench/bench_safety.py [--trials 20]`` (about 5 minutes; loopback only). Needs
PostgreSQL (``BENCH_POSTGRES_URL``, default postgres://postgres@127.0.0.1:5432/postgres: a throw-away database
is created and dropped) and RabbitMQ (``CELERY_BROKER_URL``, default amqp://guest:guest@127.0.0.1:5672//; a
throw-away vhost when ``rabbitmqctl`` is available).

Processes: the INDI simulators; the safety process exactly as the Procfile's ``safety`` line
(``celery -A pyros worker -Q monitoring -P threads -c 2``: its own thread polls every PYROS_MONITORING_PERIOD_S
= 1 s and enforces closing); for the loaded phase, the Procfile's ``worker`` line (analysis, prefork -c 2).

Each trial: good weather, wait until PyROS says safe (PYROS_SAFETY_HOLD_S = 2 s here), open the shutter, wait a
random fraction of the poll period, then make the weather unsafe at the station (``set_weather``, wind 30 m/s).
Measured: from just before that INDI message to the moment the dome announces it is closing (DOME_SHUTTER Busy
with SHUTTER_CLOSE On, seen by an independent INDI client: the close command has reached the dome).
Target: p99 <= 1 s, idle and under load (1,500 analyses queued, topped up to 1,500 every second, and three
operator close commands queued at the start of the phase, run by the safety process's pool). Reference in the same run: the poll period (intervals
between the polls stored by the safety process), p50/p99.

``BENCH_LOGS=<folder>`` keeps the processes' logs.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_alerts import bench_django, pct, run_with_services  # noqa: E402 - the bench folder is on the path just above

from devices.indi_watcher import VectorWatcher  # noqa: E402

TARGET_P99_S = 1.0
ANALYSES = 1500
CLOSES = 3
GOOD = {"wind_m_s": 2, "gust_m_s": 3, "rain_mm_h": 0, "humidity_pct": 40, "cloud_cover_pct": 0}

_SWITCH = re.compile(rb"<(?:oneSwitch|defSwitch)[^>]*name=[\"'](SHUTTER_OPEN|SHUTTER_CLOSE)[\"'][^>]*>\s*(On|Off)")


class DomeWatcher(VectorWatcher):
    """Records when the dome announces DOME_SHUTTER Busy with SHUTTER_CLOSE On (a close command received and
    the shutter moving), and its last state."""

    vector = b"DOME_SHUTTER"
    kinds = (b"Switch",)

    def __init__(self, port: int) -> None:
        self.closing_unix: list[float] = []
        self.state = ("", "")  # (vector state, member On)
        super().__init__(port)

    def on_update(self, state: str, body: bytes, now: float) -> None:
        members = dict(_SWITCH.findall(body))
        on = "close" if members.get(b"SHUTTER_CLOSE") == b"On" else "open"
        if state == "Busy" and on == "close" and self.state != ("Busy", "close"):
            self.closing_unix.append(now)
        self.state = (state, on)

    def first_closing_after(self, t_unix: float, timeout_s: float = 10.0) -> float | None:
        return self.first_after(self.closing_unix, t_unix, timeout_s)


class PollRecorder(threading.Thread):
    """Reads the time of the last stored poll every 20 ms (as anyone would: from the database)."""

    def __init__(self) -> None:
        super().__init__(name="poll-recorder", daemon=True)
        self.stamps: list[str] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        from django.db import connection

        from majordome.selectors import observatory_state

        while not self.stopping.wait(0.02):
            try:
                stamp = (observatory_state().devices_snapshot or {}).get("time")
            except Exception:  # noqa: BLE001 - keep recording
                continue
            if stamp and (not self.stamps or stamp != self.stamps[-1]):
                self.stamps.append(stamp)
        connection.close()

    def intervals_since(self, index: int) -> list[float]:
        times = [datetime.fromisoformat(s) for s in self.stamps[index:]]
        return [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args()
    return run_with_services("safety", _scenario, [], args.trials)


def _procfile(name: str) -> list[str]:
    """The Procfile's command of a process, as `make run` starts it (node names made unique to this run)."""
    for line in (REPO_ROOT / "Procfile").read_text().splitlines():
        if line.startswith(f"{name}:"):
            command = line.partition(":")[2].strip()
            command = re.sub(r"-n \S+", f"-n bench-{name}-{os.getpid()}@localhost", command)
            parts = command.split()
            return [sys.executable, "-m", parts[0], *parts[1:]]
    raise SystemExit(f"no {name!r} line in the Procfile")


def _scenario(db_url: str, broker: str, workdir: Path, procs: list[subprocess.Popen], trials: int) -> int:  # noqa: PLR0915
    env = {**os.environ, "DATABASE_URL": db_url, "CELERY_BROKER_URL": broker, "PYROS_VAR_DIR": str(workdir / "var"),
           "PYROS_DATA_DIR": str(workdir / "data"), "DJANGO_SETTINGS_MODULE": "pyros.settings",
           "PYROS_MONITORING_PERIOD_S": "1", "PYROS_SAFETY_HOLD_S": "2", "PYROS_WATCHDOG_S": "60",
           "PYROS_LOG_LEVEL": "INFO"}
    bench_django(env, ("DATABASE_URL", "CELERY_BROKER_URL", "PYROS_VAR_DIR", "PYROS_DATA_DIR",
                       "DJANGO_SETTINGS_MODULE", "PYROS_SAFETY_HOLD_S"))
    from devices.observatory import connect
    from devices.simulators.control import set_weather
    from devices.testing import start_simulators
    from majordome.selectors import observatory_state
    from pyros.celery import app
    from pyros.demo import seed_demo
    from pyrosapp.models import ObservatoryState

    seed = seed_demo()
    ObservatoryState.objects.filter(site=seed.site).update(phase="night", safety="safe", mode="automatic")
    site = seed.site
    sim, port = start_simulators(speed=10.0, extra_args=(
        "--latitude", str(site.latitude_deg), "--longitude", str(site.longitude_deg), "--elevation",
        str(site.elevation_m)), log_path=workdir / "simulators.log")
    procs.append(sim)
    env.update(PYROS_INDI_HOST="127.0.0.1", PYROS_INDI_PORT=str(port))
    set_weather(port=port, **GOOD)
    watcher = DomeWatcher(port)
    watcher.start()
    obs = connect("127.0.0.1", port, site=None, timeout_s=10, blobs=False)

    safety_log = workdir / "safety.log"
    with open(safety_log, "wb") as out:
        procs.append(subprocess.Popen(_procfile("safety"), cwd=REPO_ROOT, env=env, stdout=out,
                                      stderr=subprocess.STDOUT))
    recorder = PollRecorder()
    recorder.start()
    _wait(lambda: len(recorder.stamps) >= 3, 60, "first polls of the safety process", safety_log)
    print(f"simulators on 127.0.0.1:{port} (speed 10); safety process pid {procs[-1].pid} "
          f"({' '.join(_procfile('safety')[2:])})")

    def trial_run(what: str) -> tuple[list[float], list[float], int]:
        latencies: list[float] = []
        missed = 0
        first_stamp = len(recorder.stamps)
        rng = random.Random(15)
        for _ in range(trials):
            set_weather(port=port, **GOOD)
            _wait(lambda: observatory_state().safety == "safe", 30, f"{what}: safe again", safety_log)
            if obs.dome.state().parked:
                obs.dome.unpark()
            obs.dome.open_shutter(timeout_s=30)
            _wait(lambda: watcher.state == ("Ok", "open"), 10, f"{what}: shutter open")
            time.sleep(rng.uniform(0.0, 1.0))  # any phase of the poll period
            changed = time.time()
            set_weather(port=port, wind_m_s=30)
            closing = watcher.first_closing_after(changed, timeout_s=10)
            if closing is None:
                missed += 1
                continue
            latencies.append(closing - changed)
            _wait(lambda: watcher.state == ("Ok", "close"), 30, f"{what}: shutter closed")
        return latencies, recorder.intervals_since(first_stamp), missed

    results: list[tuple[str, float, bool]] = []
    lines: list[str] = []

    def report(what: str, latencies: list[float], periods: list[float], missed: int) -> None:
        p50, p99 = statistics.median(latencies), pct(latencies, 99)
        passed = p99 <= TARGET_P99_S and missed == 0
        results.append((f"{what}: weather unsafe -> dome close command p99 <= {TARGET_P99_S:g} s", p99, passed))
        lines.append(f"  {what}: {len(latencies)} of {trials} trials closed ({missed} without a close within 10 s): "
                     f"p50 {p50 * 1e3:.0f} ms, p99 {p99 * 1e3:.0f} ms, max {max(latencies) * 1e3:.0f} ms; poll period "
                     f"(reference, same run, {len(periods)} intervals) p50 {statistics.median(periods) * 1e3:.0f} ms, "
                     f"p99 {pct(periods, 99) * 1e3:.0f} ms, max {max(periods) * 1e3:.0f} ms")
        print(lines[-1], flush=True)

    # 1. Idle ----------------------------------------------------------------------------------------
    report("idle", *trial_run("idle"))

    # 2. Under the analysis load -----------------------------------------------------------------------
    analysis_log = workdir / "analysis.log"
    with open(analysis_log, "wb") as out:
        procs.append(subprocess.Popen(_procfile("worker"), cwd=REPO_ROOT, env=env, stdout=out,
                                      stderr=subprocess.STDOUT))
    _wait(lambda: "ready" in analysis_log.read_text(errors="replace"), 60, "analysis worker ready", analysis_log)
    next_image = iter(range(10_000_000, 20_000_000))

    def queue_depth() -> int:
        with app.connection_for_write() as conn:
            return conn.default_channel.queue_declare("analysis", passive=True).message_count

    def send_analyses(count: int) -> None:
        with app.producer_or_acquire() as producer:
            for _ in range(count):
                app.send_task("pyros.analyzer.analyze_image", kwargs={"image_id": next(next_image)}, producer=producer)

    send_analyses(ANALYSES)
    for i in range(CLOSES):  # three operator "close" clicks, queued for the safety process's pool
        app.send_task("pyros.majordome.close_and_park", kwargs={"reason": f"bench close {i}"})
    depths: list[int] = []
    topping = threading.Event()

    def top_up() -> None:  # keep at least ANALYSES analyses queued for the whole phase
        while not topping.wait(1.0):
            depth = queue_depth()
            depths.append(depth)
            if depth < ANALYSES:
                send_analyses(ANALYSES - depth)

    topper = threading.Thread(target=top_up, name="analysis-top-up", daemon=True)
    topper.start()
    cpu_before = _cpu_s(procs[-1].pid)
    t_loaded = time.monotonic()
    try:
        loaded = trial_run("loaded")
    finally:
        topping.set()
        topper.join(timeout=10)
    cpu_share = (_cpu_s(procs[-1].pid) - cpu_before) / (time.monotonic() - t_loaded)
    report("loaded", *loaded)
    done = len(re.findall(r"analyze_image\[[^]]+\] (?:succeeded|raised)",
                          analysis_log.read_text(errors="replace")))
    lines.append(f"  load: analysis queue depth during the trials min {min(depths or [0])}, median "
                 f"{statistics.median(depths or [0]):.0f}; {done} analyses run; analysis worker (with its pool) "
                 f"{cpu_share:.2f} CPU; {CLOSES} close commands queued at the start of the phase ({os.cpu_count()} CPUs)")
    print(lines[-1])
    recorder.stopping.set()
    watcher.close()
    obs.close()

    failed = 0
    print()
    for name, value, ok in results:
        failed += not ok
        print(f"  [{'PASS' if ok else 'FAIL'}] {name}: {value * 1e3:.0f} ms")
    print(f"{failed} target(s) failed")
    return 1 if failed else 0


def _cpu_s(pid: int) -> float:
    total = 0.0
    pids = [pid] + [int(p) for p in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True
                                                   ).stdout.split()]
    for one in pids:
        try:
            fields = Path(f"/proc/{one}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _wait(predicate, timeout_s: float, what: str, log: Path | None = None) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    tail = log.read_text(errors="replace")[-3000:] if log is not None and log.exists() else ""
    raise SystemExit(f"{what}: not reached within {timeout_s} s\n{tail}")


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    sys.exit(main())
