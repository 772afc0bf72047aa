"""Bench (operator procedures): the queue on real processes.

    .venv/bin/python scripts/bench/bench_procedures.py [--samples 60] [--cli-subprocess 20] [--starts 10] [--images 20]

Started here, on 127.0.0.1 only, and stopped by PID at the end: the INDI simulators, the web server exactly as
the Procfile's `web` line (gunicorn, API throttle raised with PYROS_API_RATE_USER), and the `procedures`
process (`python -m procedures.manager`, which opens its worker). A temporary SQLite database (seed_demo, the
observatory safe and in manual mode), a procedures folder with two bench procedures, the demo operator's token.

1. Queue command round trip: the `pyros` CLI's entry point `procedures.cli.main(["--json", "queue", "add",
   ...])` called in this process (argument parsing, its own HTTP session, POST /api/queue/items/), then
   GET /api/queue/ until the item is listed. Target p99 <= 100 ms. Reference in the same run: GET /api/queue/
   alone. For information: the same through `python -m procedures.cli` subprocesses (the interpreter's start and
   imports, measured alone, come on top). This process's own heap (Django, astropy) is frozen first (gc.freeze):
   its collections, 100-280 ms each, are not the CLI's.
2. Procedure start after `queue start` (the CLI's entry point, worker environment open, queue stopped, one item
   waiting): from just before the command to the item's `started_at` recorded by the manager when it hands the
   item to the worker. Target <= 1 s (every sample). The first `queue start` opens the environment (a cold
   start: the worker process and its device connection), printed for information.
3. Context overhead per exposure: a procedure taking N short exposures with `ctx.expose` (light frames, each
   saved as FITS + Image row by the context's save path) vs the raw device cadence (`camera.expose` back to back
   on the same simulator, before and after the procedure, in this process). Target: median cadence difference
   <= 50 ms.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_dashboard import percentile, web_server  # noqa: E402

ROUND_TRIP_P99_MS = 100.0
START_DELAY_S = 1.0
OVERHEAD_MS = 50.0
EXPOSURE_S = 0.1  # the simulator does not scale exposures by its speed

BENCH_MODULE = '''
import time
from procedures.sdk import procedure

@procedure(timeout_s=60, sky="none")
def bench_noop(ctx, *, hold_s: float = 0.0):
    """Nothing but a short wait (the start delay)."""
    ctx.set_progress(0, 1, "holding")
    ctx.sleep(hold_s)
    ctx.set_progress(1, 1, "done")

@procedure(timeout_s=300, sky="none")
def bench_frames(ctx, *, n: int = 10, exposure_s: float = 1.0):
    """n light frames through ctx.expose (saved as FITS + Image rows); the time each one came back."""
    ends = []
    for i in range(n):
        ctx.expose(exposure_s, frame_type="light", target="bench")
        ends.append(time.perf_counter())
        ctx.set_progress(i + 1, n)
    return {"ends": ends}
'''


def stats_ms(values_s: list[float]) -> str:
    ms = [v * 1e3 for v in values_s]
    return (f"n={len(ms)} p50 {percentile(ms, 50):7.1f} ms  p90 {percentile(ms, 90):7.1f} ms  "
            f"p99 {percentile(ms, 99):7.1f} ms  max {max(ms):7.1f} ms")


def cli(*argv: str) -> tuple[int, dict | str]:
    """The `pyros` CLI's Python entry point, in this process; its stdout (JSON with --json)."""
    from procedures.cli import main as cli_main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli_main(list(argv))
    text = out.getvalue()
    if "--json" in argv and text.strip():
        return code, json.loads(text)
    return code, text + err.getvalue()


def main() -> int:  # noqa: C901, PLR0915 - one bench, read top to bottom
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=60, help="CLI round trips in process (target)")
    parser.add_argument("--cli-subprocess", type=int, default=20, help="CLI round trips as subprocesses (info)")
    parser.add_argument("--starts", type=int, default=10, help="queue start samples with the environment open")
    parser.add_argument("--images", type=int, default=20, help="exposures per cadence measurement")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="pyros-bench-procedures-"))
    proc_dir = work / "procedures"
    proc_dir.mkdir()
    (proc_dir / "bench.py").write_text(BENCH_MODULE)
    env = {"DJANGO_SETTINGS_MODULE": "pyros.settings", "PYROS_VAR_DIR": str(work / "var"),
           "DATABASE_URL": f"sqlite:///{work / 'bench.sqlite3'}", "PYROS_LOG_LEVEL": "WARNING",
           "PYTHONPATH": str(REPO), "PYROS_API_RATE_USER": "1000000/min", "CELERY_BROKER_URL": "filesystem://",
           "PYROS_PROCEDURES_DIR": str(proc_dir), "PYROS_DATA_DIR": str(work / "data"),
           "PYROS_INDI_HOST": "127.0.0.1", "PYROS_CLI_CONFIG": "/nonexistent"}
    os.environ.update(env)

    import django

    django.setup()
    import requests
    from django.conf import settings
    from django.core.management import call_command
    from rest_framework.authtoken.models import Token

    from common.testing import wait_until
    from devices.observatory import connect
    from devices.testing import running_simulators
    from procedures import services
    from procedures.models import QueueItem, QueueState
    from procedures.testing import queue_manager
    from pyros.demo import seed_demo
    from pyrosapp.models import Image, ObservatoryState, Telescope, User

    print(f"seeding {work} ...", flush=True)
    call_command("migrate", "--noinput", verbosity=0)
    demo = seed_demo()
    Telescope.objects.update(settle_s=0.0)
    ObservatoryState.objects.filter(site=demo.site).update(phase="night", safety="safe", mode="manual")
    services.procedures_reload(directory=proc_dir)
    token = Token.objects.get_or_create(user=User.objects.get(email=demo.credentials["operator"][0]))[0].key
    site = demo.site
    results = []
    load1, _, _ = os.getloadavg()
    print(f"machine: {os.cpu_count()} CPUs, load average {load1:.1f} (1 min) before the run", flush=True)

    with contextlib.ExitStack() as stack:
        host, indi_port, _ = stack.enter_context(running_simulators(speed=10.0, extra_args=(
            "--latitude", str(site.latitude_deg), "--longitude", str(site.longitude_deg), "--readout", "1.0")))
        os.environ["PYROS_INDI_PORT"] = str(indi_port)
        settings.PYROS_INDI_HOST, settings.PYROS_INDI_PORT = host, indi_port
        print(f"simulators on {host}:{indi_port} (speed 10, readout 1.0 s -> 0.1 s)", flush=True)

        port, server = stack.enter_context(web_server(work / "gunicorn.log"))
        url = f"http://127.0.0.1:{port}"
        os.environ.update({"PYROS_URL": url, "PYROS_TOKEN": token})
        print(f"gunicorn (Procfile web line) pid {server.pid} on {url}", flush=True)
        manager = stack.enter_context(queue_manager(database_url=os.environ["DATABASE_URL"],
                                                    log_path=work / "manager.log"))
        print(f"procedures manager pid {manager.pid}", flush=True)

        http = requests.Session()
        http.headers["Authorization"] = f"Token {token}"

        def api(method: str, path: str, body: dict | None = None) -> dict:
            r = http.request(method, f"{url}/api/{path}", json=body, timeout=30)
            data = r.json()
            if not r.ok or not data.get("success"):
                raise RuntimeError(f"{method} /api/{path}: {r.status_code} {data}")
            return data

        def queued_uids() -> set[str]:
            return {i["uid"] for i in api("GET", "queue/")["items"]}

        def item(uid: str) -> QueueItem:
            return QueueItem.objects.get(uid=uid)

        def ended(uid: str, timeout_s: float) -> QueueItem:
            done = wait_until(lambda: (i := item(uid)).status in QueueItem.ENDED and i, timeout_s=timeout_s,
                              interval_s=0.05, what=f"item {uid} ended")
            if done.status != "completed":
                raise RuntimeError(f"item {done.procedure} {done.status}: {done.message}\n{done.traceback}")
            return done

        # warm-up: the CLI's imports (the gunicorn workers import their URLconf before they accept, pyros/wsgi.py)
        for _ in range(10):
            api("GET", "queue/")
        cli("--json", "queue", "show")
        # This process holds Django, astropy and the simulators' client: its own gen-2 collections took 100-280 ms
        # and fell inside CLI calls (gc callbacks showed them coinciding with every stall); a `pyros` process has
        # none of that heap. Freeze it, as long-lived servers do, so the collections measured are the CLI's.
        gc.collect()
        gc.freeze()

        # 1. the CLI round trip ------------------------------------------------------------------
        # Each item is removed once measured (untimed): every sample sees the same, short queue.
        def remove(uid: str) -> None:
            api("POST", "queue/remove/", {"uid": uid})

        reference, posts = [], []
        for _ in range(args.samples):
            t0 = time.perf_counter()
            api("GET", "queue/")
            reference.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            uid = api("POST", "queue/items/", {"procedure": "bench_noop"})["item"]["uid"]
            posts.append(time.perf_counter() - t0)
            remove(uid)
        round_trips, cli_calls, listings, polls = [], [], [], 0
        for k in range(args.samples):
            t0 = time.perf_counter()
            code, out = cli("--json", "queue", "add", "bench_noop", f"hold_s={k % 3 * 0.01}")
            t1 = time.perf_counter()
            if code != 0:
                raise RuntimeError(f"pyros queue add: exit {code}: {out}")
            uid = out["item"]["uid"]
            while True:
                polls += 1
                if uid in queued_uids():
                    break
                if time.perf_counter() - t0 > 10:
                    raise TimeoutError(f"item {uid} never listed")
            round_trips.append(time.perf_counter() - t0)
            cli_calls.append(t1 - t0)
            listings.append(round_trips[-1] - cli_calls[-1])
            remove(uid)
        print(f"reference GET /api/queue/ alone:              {stats_ms(reference)}")
        print(f"reference POST /api/queue/items/ (kept-alive session, no CLI): {stats_ms(posts)}")
        print(f"pyros queue add (in process) -> listed:        {stats_ms(round_trips)}  "
              f"({polls} GETs for {args.samples} items)")
        print(f"  of which the CLI call (POST on a new connection): {stats_ms(cli_calls)}")
        print(f"  of which the GET /api/queue/ that lists it:       {stats_ms(listings)}")
        sub_env = {**os.environ}
        bare, startup, sub_trips = [], [], []
        for _ in range(min(5, args.cli_subprocess)):
            for code_line, into in (("pass", bare), ("import procedures.cli", startup)):
                t0 = time.perf_counter()
                subprocess.run([sys.executable, "-c", code_line], cwd=REPO, env=sub_env, check=True, timeout=60)
                into.append(time.perf_counter() - t0)
        for _ in range(args.cli_subprocess):
            t0 = time.perf_counter()
            r = subprocess.run([sys.executable, "-m", "procedures.cli", "--json", "queue", "add", "bench_noop"],
                               cwd=REPO, env=sub_env, capture_output=True, text=True, timeout=60)
            if r.returncode != 0:
                raise RuntimeError(f"pyros queue add: exit {r.returncode}: {r.stderr}")
            uid = json.loads(r.stdout)["item"]["uid"]
            while uid not in queued_uids():
                if time.perf_counter() - t0 > 10:
                    raise TimeoutError(f"item {uid} never listed")
            sub_trips.append(time.perf_counter() - t0)
            remove(uid)
        if sub_trips:
            print(f"python -m procedures.cli queue add -> listed:  {stats_ms(sub_trips)}  (information)")
            print(f"  of which the interpreter start + CLI imports: p50 {statistics.median(startup) * 1e3:.1f} ms"
                  f" (a bare `python -c pass`: {statistics.median(bare) * 1e3:.1f} ms)")
        p99 = percentile(round_trips, 99) * 1e3
        print(f"round trip p99 {p99:.1f} ms vs GET alone p99 {percentile(reference, 99) * 1e3:.1f} ms: ratio "
              f"{p99 / (percentile(reference, 99) * 1e3):.2f}", flush=True)
        results.append((f"CLI queue add -> visible in GET /api/queue/ p99 <= {ROUND_TRIP_P99_MS:g} ms "
                        "(entry point in process)", p99, p99 <= ROUND_TRIP_P99_MS, "ms"))
        api("POST", "queue/clear/")

        # 2. start delay after `queue start` ----------------------------------------------------
        delays, seen = [], []
        cold = None
        for k in range(args.starts + 1):
            uid = api("POST", "queue/items/", {"procedure": "bench_noop", "params": {"hold_s": 0.3}})["item"]["uid"]
            time.sleep(random.uniform(0.0, 0.2))  # out of phase with the manager's 0.1 s poll
            wall0, t0 = datetime.now(UTC), time.perf_counter()
            code, out = cli("queue", "start")
            if code != 0:
                raise RuntimeError(f"pyros queue start: exit {code}: {out}")
            while True:
                data = api("GET", "queue/")
                run = data["running_item"]
                if (run and run["uid"] == uid) or uid in {h["uid"] for h in data["history"]}:
                    if k:
                        seen.append(time.perf_counter() - t0)
                    break
                if time.perf_counter() - t0 > 90:
                    raise TimeoutError(f"item {uid} never started: {data['queue']} {data['environment']}")
            done = ended(uid, 60)
            delay = (done.started_at - wall0).total_seconds()
            if k == 0:
                cold = delay
            else:
                delays.append(delay)
            api("POST", "queue/stop/")
        print(f"first queue start (environment closed: worker process + device connection): {cold:.2f} s "
              "(information)")
        print(f"queue start -> item running (started_at, env open): {stats_ms(delays)}")
        print(f"queue start -> running seen through GET /api/queue/: {stats_ms(seen)}", flush=True)
        worst = max(delays)
        results.append((f"procedure start after queue start <= {START_DELAY_S:g} s (worst of {len(delays)})",
                        worst * 1e3, worst <= START_DELAY_S, "ms"))

        # 3. context overhead per exposure ------------------------------------------------------
        raw = connect(host, indi_port, site=None, timeout_s=10)
        stack.callback(raw.close)

        def raw_cadence() -> list[float]:
            ends = []
            for _ in range(args.images + 1):
                raw.camera.expose(duration_s=EXPOSURE_S, frame_type="LIGHT", object_name="raw")
                ends.append(time.perf_counter())
            return [b - a for a, b in zip(ends, ends[1:], strict=False)]

        raw_intervals = raw_cadence()
        images_before = Image.objects.count()
        uid = api("POST", "queue/items/", {"procedure": "bench_frames",
                                           "params": {"n": args.images + 1, "exposure_s": EXPOSURE_S}})["item"]["uid"]
        api("POST", "queue/start/")
        done = ended(uid, 120)
        api("POST", "queue/stop/")
        raw_intervals += raw_cadence()
        ends = done.published["result"]["ends"]
        ctx_intervals = [b - a for a, b in zip(ends, ends[1:], strict=False)]
        saved = Image.objects.count() - images_before
        if saved != args.images + 1:
            raise RuntimeError(f"{saved} frames saved, expected {args.images + 1}")
        raw_med, ctx_med = statistics.median(raw_intervals), statistics.median(ctx_intervals)
        overhead_ms = (ctx_med - raw_med) * 1e3
        print(f"raw camera.expose cadence (before and after):  {stats_ms(raw_intervals)}")
        print(f"procedure ctx.expose cadence ({saved} frames saved): {stats_ms(ctx_intervals)}")
        print(f"median cadence ratio ctx/raw {ctx_med / raw_med:.3f}; overhead per exposure {overhead_ms:.1f} ms "
              f"(mean {(statistics.mean(ctx_intervals) - statistics.mean(raw_intervals)) * 1e3:.1f} ms)", flush=True)
        results.append((f"procedure context overhead per exposure <= {OVERHEAD_MS:g} ms", overhead_ms,
                        overhead_ms <= OVERHEAD_MS, "ms"))
        QueueState.objects.update(running=False)

    shutil.rmtree(work, ignore_errors=True)
    failed = 0
    for name, value, ok, unit in results:
        failed += not ok
        print(f"  [{'PASS' if ok else 'FAIL'}] {name}: {value:.1f} {unit}")
    print(f"{failed} target(s) failed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
