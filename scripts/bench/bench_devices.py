"""Device-layer benchmark: abort latency, command round-trip overhead, 1 s exposure delivery.

Runs against the built-in simulators (always) and Debian's indi-bin simulators (if installed,
in a private network namespace) and prints ratios to the Debian run measured in the same run.
Targets (issue 3): abort acknowledged <= 10 ms; backend overhead <= 5 ms beyond the driver's own
round trip (measured with a raw socket on the same server); a 1 s exposure returns in <= 1.1 s.
Absolute times depend on the machine; CI does not gate on them.

    .venv/bin/python scripts/bench/bench_devices.py
"""

from __future__ import annotations

import socket
import statistics
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from devices import coords  # noqa: E402
from devices.observatory import connect  # noqa: E402
from devices.testing import debian_indi_unavailable_reason, running_debian_simulators, running_simulators  # noqa: E402


def raw_round_trip_ms(port: int, device: str, vector: str, members: dict[str, str], n: int) -> float:
    """The driver's own time: a bare socket sends newSwitchVector and waits for its setSwitchVector."""
    times = []
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        parser = ET.XMLPullParser(events=("end",))
        parser.feed(b"<root>")
        for _ in range(n):
            root = ET.Element("newSwitchVector", device=device, name=vector)
            for k, v in members.items():
                ET.SubElement(root, "oneSwitch", name=k).text = v
            t0 = time.perf_counter()
            s.sendall(ET.tostring(root))
            done = False
            while not done:
                parser.feed(s.recv(65536))
                for _, el in parser.read_events():
                    if el.tag == "setSwitchVector" and el.get("device") == device and el.get("name") == vector:
                        done = True
            times.append(time.perf_counter() - t0)
            time.sleep(0.01)
    return statistics.median(times) * 1000


def measure(port: int, names: dict | None, label: str) -> dict[str, float]:
    obs = connect("127.0.0.1", port, names=names, timeout_s=20)
    results: dict[str, float] = {}
    try:
        camera = obs.names["camera"]
        link = obs.link
        # command round trip: an instant setting, backend vs raw socket
        for _ in range(3):
            link.call(link.command(camera, "CCD_FRAME_TYPE", {"FRAME_BIAS": "On"}, timeout_s=5), 10)
        backend_times = []
        for i in range(30):
            member = "FRAME_LIGHT" if i % 2 else "FRAME_BIAS"
            t0 = time.perf_counter()
            link.call(link.command(camera, "CCD_FRAME_TYPE", {member: "On"}, timeout_s=5), 10)
            backend_times.append(time.perf_counter() - t0)
            time.sleep(0.01)
        results["command_ms"] = statistics.median(backend_times) * 1000
        results["raw_command_ms"] = raw_round_trip_ms(port, camera, "CCD_FRAME_TYPE", {"FRAME_LIGHT": "On"}, 30)
        results["overhead_ms"] = results["command_ms"] - results["raw_command_ms"]
        link.call(link.command(camera, "CCD_FRAME_TYPE", {"FRAME_LIGHT": "On"}, timeout_s=5), 10)

        # abort acknowledged during a slew
        mount = obs.mount
        if mount.state().parked:
            mount.unpark()
        aborts = []
        for i in range(5):
            lst = coords.local_sidereal_time_deg(datetime.now(UTC), obs.site.longitude_deg)
            op = mount.start_slew(ra_deg=(lst + (30 if i % 2 else -30)) % 360, dec_deg=30 + 10 * (i % 2))
            time.sleep(0.3)
            t0 = time.perf_counter()
            mount.abort()
            aborts.append(time.perf_counter() - t0)
            try:
                op.wait(5)
            except Exception:  # noqa: BLE001 - DeviceAborted expected
                pass
        results["abort_ms"] = statistics.median(aborts) * 1000

        # 1 s exposures
        exposures = []
        for _ in range(3):
            t0 = time.perf_counter()
            data = obs.camera.expose(duration_s=1.0, frame_type="DARK")
            exposures.append(time.perf_counter() - t0)
        results["exposure_1s_s"] = statistics.median(exposures)
        results["fits_mb"] = len(data) / 1e6
    finally:
        obs.close()
    print(f"  {label}: " + ", ".join(f"{k}={v:.3f}" for k, v in results.items()), flush=True)
    return results


def main() -> int:
    print("devices benchmark (medians)")
    with running_simulators(speed=10.0) as (_, port, _):
        # speed 10: the simulated camera's 0.5 s readout takes 0.05 s
        ours = measure(port, None, "built-in simulators (indipyserver, speed x10)")
    reason = debian_indi_unavailable_reason()
    debian = None
    if reason:
        print(f"  Debian indi-bin simulators: skipped ({reason})")
    else:
        with tempfile.TemporaryDirectory() as home, running_debian_simulators(home) as server:
            debian = measure(server.port, server.names, "Debian indi-bin simulators (indiserver, via netns forwarder)")

    checks = [
        ("abort acknowledged <= 10 ms", ours["abort_ms"], 10.0, "abort_ms"),
        ("backend overhead <= 5 ms", ours["overhead_ms"], 5.0, None),
        ("1 s exposure returns in <= 1.1 s", ours["exposure_1s_s"], 1.1, "exposure_1s_s"),
    ]
    if debian:
        checks += [
            ("Debian: abort acknowledged <= 10 ms", debian["abort_ms"], 10.0, None),
            ("Debian: backend overhead <= 5 ms", debian["overhead_ms"], 5.0, None),
            ("Debian: 1 s exposure returns in <= 1.1 s", debian["exposure_1s_s"], 1.1, None),
        ]
    print()
    failed = 0
    for label, value, target, key in checks:
        ok = value <= target
        failed += not ok
        ratio = ""
        if debian and key:
            ratio = f"  (ratio to Debian's simulators: {value / debian[key]:.2f})" if debian[key] > 0 else ""
        print(f"  [{'PASS' if ok else 'FAIL'}] {label}: {value:.3f}{ratio}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
