"""Alert pipeline benchmark on the real processes: Comet (PyROS plugin) -> RabbitMQ -> Celery alerts worker
(4 threads) -> PostgreSQL -> majordome pre-emption -> INDI mount simulator.

Run: ``.venv/bin/python scripts/bench/bench_alerts.py`` (about 1-2 minutes; loopback only). Needs PostgreSQL
(``BENCH_POSTGRES_URL``, default postgres://postgres@127.0.0.1:5432/postgres: a throw-away database is
created and dropped) and RabbitMQ (``CELERY_BROKER_URL``, default amqp://guest:guest@127.0.0.1:5672//; a
throw-away vhost is used when ``rabbitmqctl`` is available, else a private queue on the default vhost).

``BENCH_LOGS=<folder>`` keeps the processes' logs there. Processes: Comet with the PyROS plugin in spool mode, the intake daemon (``alert_manager.intake_daemon``), the
alerts worker, the INDI simulators.

1. Latency, 100 Swift BAT notices: from just before the VTP send to Comet, to the moment the INDI mount
   announces the slew (EQUATORIAL_EOD_COORD Busy, seen by an independent INDI client). Targets: p50 <= 50 ms,
   p99 <= 200 ms. Reference measured in the same run: Comet's own send -> handler latency (the intake's
   receive mark, written in the spool file's name), and the worker's share (task start -> pre-emption call).
2. Burst: 1000 role=test packets sent by 8 concurrent senders: none lost (every packet stored and
   processed once), throughput from the first send to the last packet processed. Target >= 200 packets/s.
3. The same with 1000 real notices that do not point the telescope (error circles larger than the strategy
   allows): none lost; throughput printed (no target).
"""

from __future__ import annotations

import itertools
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

N_LATENCY = 100
N_BURST = 1000
SENDERS = 8
# Marks the pipeline writes in Alert.timings (unix s), in order: where the latency goes.
STEPS = ("received", "task_started", "loaded", "parsed", "grouped", "visibility", "pointed", "request_built", "preempt_called",
         "done")


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by a process of ours (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pids_named(*names: str) -> list[int]:
    """Processes whose command name is one of ``names`` (the local PostgreSQL and RabbitMQ servers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() in names:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:  # noqa: ANN003
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kwargs)


class RabbitVhost:
    """A throw-away RabbitMQ vhost (isolates this run's queues), or the given URL unchanged."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.name: str | None = None

    def __enter__(self) -> str:
        if shutil.which("rabbitmqctl") is None:
            return self.base_url
        name = f"pyros-bench-alerts-{os.getpid()}"
        user = urlparse(self.base_url).username or "guest"
        try:
            run(["rabbitmqctl", "add_vhost", name], timeout=60)
            run(["rabbitmqctl", "set_permissions", "-p", name, user, ".*", ".*", ".*"], timeout=60)
        except (subprocess.SubprocessError, OSError):
            return self.base_url
        self.name = name
        parsed = urlparse(self.base_url)
        return parsed._replace(path=f"/{name}").geturl()

    def __exit__(self, *exc: object) -> None:
        if self.name:
            subprocess.run(["rabbitmqctl", "delete_vhost", self.name], capture_output=True, timeout=60)


def run_with_services(label: str, scenario: Callable[..., int], procs: list | dict, *args: object) -> int:
    """``scenario(db_url, broker_url, workdir, procs, *args)`` on a throw-away PostgreSQL database
    (``BENCH_POSTGRES_URL``) and RabbitMQ vhost (``CELERY_BROKER_URL``), in a temporary folder; the processes
    it puts in ``procs`` (a list, or a dict by name) are stopped at the end, their logs kept under ``BENCH_LOGS``
    when it is set, and the database dropped. 2 when PostgreSQL is unreachable."""
    pg_admin = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    broker_base = os.environ.get("CELERY_BROKER_URL", "")
    if not broker_base.startswith("amqp"):
        broker_base = "amqp://guest:guest@127.0.0.1:5672//"
    import psycopg

    db_name = f"pyros_bench_{label}_{os.getpid()}"
    try:
        admin = psycopg.connect(pg_admin, autocommit=True)
    except psycopg.OperationalError as exc:
        print(f"PostgreSQL unreachable ({exc}): this benchmark needs PostgreSQL and RabbitMQ")
        return 2
    admin.execute(f'CREATE DATABASE "{db_name}"')
    db_url = urlparse(pg_admin)._replace(path=f"/{db_name}").geturl()
    workdir = Path(tempfile.mkdtemp(prefix=f"pyros-bench-{label}-"))
    try:
        with RabbitVhost(broker_base) as broker:
            return scenario(db_url, broker, workdir, procs, *args)
    finally:
        for proc in reversed(list(procs.values() if isinstance(procs, dict) else procs)):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        try:
            from django.db import connections

            connections.close_all()
        except Exception:  # noqa: BLE001 - Django may not be set up if we failed early
            pass
        admin.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        admin.close()
        if os.environ.get("BENCH_LOGS"):  # keep the processes' logs for a look after the run
            keep = Path(os.environ["BENCH_LOGS"])
            keep.mkdir(parents=True, exist_ok=True)
            for log_file in workdir.glob("*.log"):
                shutil.copy(log_file, keep / log_file.name)
        shutil.rmtree(workdir, ignore_errors=True)


def bench_django(env: dict, exported: tuple[str, ...]) -> None:
    """Export ``exported`` of ``env`` to this process, migrate the bench database, set Django up here."""
    os.environ.update({k: env[k] for k in exported})
    print(f"database {env['DATABASE_URL'].rpartition('/')[2]}, broker {env['CELERY_BROKER_URL'].rpartition('@')[2]}"
          + (f", queue {env['PYROS_ALERTS_QUEUE']}" if env.get("PYROS_ALERTS_QUEUE") else ""))
    started = time.perf_counter()
    run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=REPO_ROOT, env=env, timeout=300)
    print(f"migrated in {time.perf_counter() - started:.1f} s")
    import django

    django.setup()


def main() -> int:
    return run_with_services("alerts", _scenario, [])


def _scenario(db_url: str, broker: str, workdir: Path, procs: list[subprocess.Popen]) -> int:
    queue = f"alerts-bench-{os.getpid()}"
    env = {**os.environ, "DATABASE_URL": db_url, "CELERY_BROKER_URL": broker, "PYROS_ALERTS_QUEUE": queue,
           "PYROS_VAR_DIR": str(workdir / "var"), "DJANGO_SETTINGS_MODULE": "pyros.settings",
           "PYROS_LOG_LEVEL": "WARNING"}
    bench_django(env, ("DATABASE_URL", "CELERY_BROKER_URL", "PYROS_ALERTS_QUEUE", "PYROS_VAR_DIR",
                       "DJANGO_SETTINGS_MODULE", "PYROS_LOG_LEVEL"))
    from alert_manager.demo import seed_strategies
    from alert_manager.tests.helpers import swift_packet
    from alert_manager.tests.mount_watcher import MountWatcher
    from alert_manager.vtp import send_voevent
    from common.testing import zenith_target
    from devices.testing import start_simulators
    from pyros.demo import seed_demo
    from pyrosapp.models import Alert, ObservatoryState, Telescope

    seed = seed_demo()
    seed_strategies()
    Telescope.objects.update(settle_s=0.0)
    ObservatoryState.objects.filter(site=seed.site).update(phase="night", safety="safe", mode="automatic")
    site = seed.site

    sim, indi_port = start_simulators(speed=10.0, extra_args=(
        "--latitude", str(site.latitude_deg), "--longitude", str(site.longitude_deg), "--elevation",
        str(site.elevation_m)), log_path=workdir / "simulators.log")
    procs.append(sim)
    env.update(PYROS_INDI_HOST="127.0.0.1", PYROS_INDI_PORT=str(indi_port))
    os.environ.update(PYROS_INDI_HOST="127.0.0.1", PYROS_INDI_PORT=str(indi_port))
    watcher = MountWatcher(indi_port)
    watcher.start()
    time.sleep(1.0)
    from django.conf import settings

    settings.PYROS_INDI_PORT = indi_port
    from majordome.device_link import get_observatory, reset_observatory

    get_observatory().mount.unpark()  # at night the telescope is out of its park position
    reset_observatory()

    worker_log = workdir / "worker.log"
    with open(worker_log, "wb") as out:
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "pyros", "worker", "-Q", queue, "-P", "threads", "-c", "4",
             "--without-gossip", "--without-mingle", "--without-heartbeat", "-n", f"{queue}@localhost",
             "--loglevel", "INFO"], cwd=REPO_ROOT, env={**env, "PYROS_LOG_LEVEL": "INFO"}, stdout=out,
            stderr=subprocess.STDOUT))
    _wait(lambda: "alert worker warmed up" in worker_log.read_text(errors="replace"), 90, "worker warm-up",
          worker_log)
    # The intake daemon stores what Comet's plugin spools (PYROS_COMET_PLUGIN_MODE=spool, the default); with
    # PYROS_COMET_PLUGIN_MODE=intake (the former in-Comet intake, for comparison) it is started but idle.
    intake_log = workdir / "intake.log"
    with open(intake_log, "wb") as out:
        procs.append(subprocess.Popen([sys.executable, "-m", "alert_manager.intake_daemon"], cwd=REPO_ROOT, env=env,
                                      stdout=out, stderr=subprocess.STDOUT))
    _wait(lambda: "alert intake ready" in intake_log.read_text(errors="replace"), 60, "intake daemon ready",
          intake_log)
    comet_port = free_port()
    comet_log = workdir / "comet.log"
    with open(comet_log, "wb") as out:
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "alert_manager.comet_process"], cwd=REPO_ROOT, stdout=out,
            stderr=subprocess.STDOUT,
            env={**env, "PYROS_COMET_PORT": str(comet_port), "PYROS_COMET_EVENTDB": str(workdir / "eventdb")}))
    _wait(lambda: _port_open(comet_port), 30, "Comet listening", comet_log)

    def processed(ivorns: list[str]) -> int:
        return Alert.objects.filter(ivorn__in=ivorns).exclude(status__in=["received", "processing"]).count()

    # Warm-up: Django and the broker connection in Comet's threads, the worker's DB connections.
    warm = [swift_packet("BAT_GRB_Pos", 700000 + i, 1, datetime.now(UTC), 10.0, 10.0, 0.05, role="test")
            for i in range(10)]
    for raw in warm:
        assert send_voevent("127.0.0.1", comet_port, raw, timeout_s=10).ack
    warm_ivorns = [f"ivo://nasa.gsfc.gcn/SWIFT#BAT_GRB_Pos_{700000 + i}-1" for i in range(10)]
    _wait(lambda: processed(warm_ivorns) == 10, 60, "warm-up packets processed", worker_log)

    # 1. Latency ------------------------------------------------------------------------------
    slew_ms: list[float] = []
    comet_ms: list[float] = []
    worker_ms: list[float] = []
    steps: dict[str, list[float]] = {}
    per_alert: list[tuple[float, dict, float]] = []
    missed = 0
    for i in range(N_LATENCY):
        trig = 710000 + i
        ra, dec = zenith_target(site, dec_offset_deg=-10.0 + (i % 5) * 5.0)
        raw = swift_packet("BAT_GRB_Pos", trig, 1, datetime.now(UTC), ra, dec, 0.05)
        ivorn = f"ivo://nasa.gsfc.gcn/SWIFT#BAT_GRB_Pos_{trig}-1"
        watcher.wait_not_slewing()  # the previous burst's slew has ended: measure this one alone
        sent = time.time()
        if not send_voevent("127.0.0.1", comet_port, raw, timeout_s=10).ack:
            missed += 1
            continue
        busy = watcher.first_busy_after(sent, timeout_s=10)
        _wait(lambda ivorn=ivorn: processed([ivorn]) == 1, 30, f"alert {i} processed", worker_log)
        if busy is None:
            missed += 1
            continue
        timings = Alert.objects.get(ivorn=ivorn).timings
        slew_ms.append((busy - sent) * 1e3)
        comet_ms.append((timings["received"] - sent) * 1e3)
        if "preempt_called" in timings:
            worker_ms.append((timings["preempt_called"] - timings["task_started"]) * 1e3)
        per_alert.append((slew_ms[-1], timings, sent))
        marks = [("sent", sent)] + [(k, timings[k]) for k in STEPS if k in timings]
        for (_, t_prev), (name, t_next) in itertools.pairwise(marks):
            steps.setdefault(name, []).append((t_next - t_prev) * 1e3)
        time.sleep(0.05)
    watcher.close()

    # 2. Burst --------------------------------------------------------------------------------
    pids = {"Comet": procs[3].pid, "intake daemon": procs[2].pid, "alerts worker": procs[1].pid,
            "bench senders": os.getpid()}

    def cpu_now() -> dict[str, float]:
        used = {name: cpu_s(pid) for name, pid in pids.items()}
        used.update({"PostgreSQL": sum(map(cpu_s, pids_named("postgres"))),
                     "RabbitMQ": sum(map(cpu_s, pids_named("beam.smp")))})
        return used

    def run_burst(packets: list[bytes], ivorns: list[str], what: str) -> tuple[list[bool], float, float, float,
                                                                                dict[str, float]]:
        """Send ``packets`` from SENDERS threads, wait until all are processed: (acks, start, seconds to send,
        seconds to the last processed, CPU ms per packet of each process)."""
        acks = [False] * len(packets)

        def send(index: int) -> None:
            acks[index] = send_voevent("127.0.0.1", comet_port, packets[index], timeout_s=30).ack

        before = cpu_now()
        start = time.time()
        with ThreadPoolExecutor(SENDERS) as pool:
            list(pool.map(send, range(len(packets))))
        sent = time.time() - start
        _wait(lambda: processed(ivorns) == len(ivorns), 300, f"{what} processed", worker_log)
        total = time.time() - start
        after = cpu_now()
        return acks, start, sent, total, {name: (after[name] - before[name]) * 1e3 / len(packets) for name in after}

    burst = [swift_packet("BAT_GRB_Pos", 720000 + i, 1, datetime.now(UTC), 10.0, 10.0, 0.05, role="test")
             for i in range(N_BURST)]
    burst_ivorns = [f"ivo://nasa.gsfc.gcn/SWIFT#BAT_GRB_Pos_{720000 + i}-1" for i in range(N_BURST)]
    acks, t0, sent_s, total_s, cpu_ms = run_burst(burst, burst_ivorns, "burst")
    # 3. The same number of real notices that do not point the telescope (error circle of 2 deg, larger than the
    # strategy allows): each is grouped and decided on its event (strategy, event position, status).
    rng = random.Random(3)
    real = [swift_packet("BAT_GRB_Pos", 740000 + i, 1, datetime.now(UTC), rng.uniform(0, 360),
                         rng.uniform(-60, 60), 2.0) for i in range(N_BURST)]
    real_ivorns = [f"ivo://nasa.gsfc.gcn/SWIFT#BAT_GRB_Pos_{740000 + i}-1" for i in range(N_BURST)]
    time.sleep(1.0)
    real_acks, _, _, real_total_s, _ = run_burst(real, real_ivorns, "real burst")
    real_stored = Alert.objects.filter(ivorn__in=real_ivorns).count()
    stored = Alert.objects.filter(ivorn__in=burst_ivorns).count()
    last_stored = max(t["received"] for t in Alert.objects.filter(ivorn__in=burst_ivorns)
                      .values_list("timings", flat=True))

    # Report -----------------------------------------------------------------------------------
    ok = True
    print(f"\n1. VOEvent over VTP -> slew received by the INDI mount ({len(slew_ms)} of {N_LATENCY} alerts, "
          f"{missed} without a slew)")
    p50, p99 = statistics.median(slew_ms), pct(slew_ms, 99)
    c50, c99 = statistics.median(comet_ms), pct(comet_ms, 99)
    for name, value, target in (("p50", p50, 50.0), ("p99", p99, 200.0)):
        passed = value <= target
        ok &= passed
        print(f"  {name}: {value:.1f} ms (target <= {target:g} ms: {'PASS' if passed else 'FAIL'})")
    print(f"  reference, Comet's own send -> handler in the same run: p50 {c50:.1f} ms, p99 {c99:.1f} ms; "
          f"ratio end-to-end / Comet p50 {p50 / c50:.1f}")
    if worker_ms:
        print(f"  worker share (task start -> pre-emption call): p50 {statistics.median(worker_ms):.1f} ms, "
              f"p99 {pct(worker_ms, 99):.1f} ms")
    print("  steps (p50 ms, each from the previous one): " + ", ".join(
        f"{name} {statistics.median(steps[name]):.1f}" for name in STEPS if name in steps))
    for total, timings, sent in sorted(per_alert, key=lambda item: item[0])[-3:]:
        marks = [("sent", sent)] + [(k, timings[k]) for k in STEPS if k in timings]
        print(f"  slowest: {total:.1f} ms: " + ", ".join(f"{name} {(b - a) * 1e3:.1f}"
                                                         for (_, a), (name, b) in itertools.pairwise(marks)))
    print(f"  TAROT starts observing 1-1.5 s after the notice: PyROS's slew command leaves {1000 / p50:.0f}x sooner")
    ok &= missed == 0
    print(f"\n2. Burst of {N_BURST} packets from {SENDERS} senders: {sum(acks)} acked by Comet, {stored} stored, "
          f"all processed in {total_s:.2f} s (sent in {sent_s:.2f} s, stored by {last_stored - t0:.2f} s)")
    lost = N_BURST - stored
    rate = N_BURST / total_s
    print(f"  lost: {lost} ({'PASS' if lost == 0 else 'FAIL'})")
    print(f"  throughput (first send -> last processed): {rate:.0f} packets/s (target >= 200: "
          f"{'PASS' if rate >= 200 else 'FAIL'}); intake alone: {N_BURST / (last_stored - t0):.0f} packets/s")
    print(f"  CPU used during the burst ({os.cpu_count()} CPUs): " + ", ".join(
        f"{name} {ms:.2f} ms/packet" for name, ms in cpu_ms.items()))
    ok &= lost == 0 and rate >= 200
    print(f"\n3. Burst of {N_BURST} real Swift notices that do not point the telescope (2 deg error circles, "
          f"each decided on its event): {sum(real_acks)} acked, {real_stored} stored, all processed in {real_total_s:.2f} s: "
          f"{N_BURST / real_total_s:.0f} packets/s (no target; lost: {N_BURST - real_stored})")
    ok &= real_stored == N_BURST
    pauses = {name: [line.partition("paused this process for ")[2].partition(" (")[0]
                     for line in path.read_text(errors="replace").splitlines() if "garbage collection of gen" in line]
              for name, path in (("alerts worker", worker_log), ("intake daemon", intake_log))}
    print("  garbage-collector pauses >= 50 ms during the run: " + ", ".join(
        f"{name} {len(found)} {found[:5] if found else ''}" for name, found in pauses.items()))
    print(f"\noverall: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _wait(predicate, timeout_s: float, what: str, log: Path | None = None) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.005)
    tail = log.read_text(errors="replace")[-3000:] if log is not None and log.exists() else ""
    raise SystemExit(f"{what}: not reached within {timeout_s} s\n{tail}")


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    sys.exit(main())
