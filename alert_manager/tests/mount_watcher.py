"""An independent INDI client that records when the mount announces a slew (tests and benchmarks)."""

from __future__ import annotations

import re
import time

from devices.indi_watcher import VectorWatcher

_NUMBER = re.compile(rb"<(?:oneNumber|defNumber)[^>]*name=[\"'](RA|DEC)[\"'][^>]*>\s*([-+0-9.eE]+)")


class MountWatcher(VectorWatcher):
    """Records when the mount announces EQUATORIAL_EOD_COORD Busy (slewing), and its last position."""

    vector = b"EQUATORIAL_EOD_COORD"
    kinds = (b"Number",)

    def __init__(self, port: int) -> None:
        self.busy_unix: list[float] = []
        self.last_position: tuple[float, float] | None = None
        self.last_state = ""
        super().__init__(port)

    def on_update(self, state: str, body: bytes, now: float) -> None:
        # Only the start of a slew counts: the mount repeats Busy with every position update while moving.
        if state == "Busy" and self.last_state != "Busy":
            self.busy_unix.append(now)
        self.last_state = state
        values = dict(_NUMBER.findall(body))
        if b"RA" in values and b"DEC" in values:
            self.last_position = (float(values[b"RA"]) * 15.0, float(values[b"DEC"]))

    def first_busy_after(self, t_unix: float, timeout_s: float = 10.0) -> float | None:
        return self.first_after(self.busy_unix, t_unix, timeout_s)

    def wait_not_slewing(self, timeout_s: float = 30.0) -> bool:
        """Block until the mount's last announced state is not Busy (the previous slew has ended)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.last_state != "Busy":
                return True
            time.sleep(0.01)
        return False
