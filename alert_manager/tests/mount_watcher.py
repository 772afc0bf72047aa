"""An independent INDI client that records when the mount announces a slew (tests and benchmarks)."""

from __future__ import annotations

import re
import socket
import threading
import time

_OPEN_TAG = re.compile(rb"<setNumberVector\b[^>]*>")
_NUMBER = re.compile(rb"<oneNumber[^>]*name=[\"'](RA|DEC)[\"'][^>]*>\s*([-+0-9.eE]+)")


class MountWatcher(threading.Thread):
    """An independent INDI client: records when the mount announces EQUATORIAL_EOD_COORD Busy (slewing)."""

    def __init__(self, port: int) -> None:
        super().__init__(name="mount-watcher", daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.sendall(b'<getProperties version="1.7"/>')
        self.sock.settimeout(0.2)
        self.busy_unix: list[float] = []
        self.last_position: tuple[float, float] | None = None
        self.last_state = ""
        self._stop_event = threading.Event()

    def run(self) -> None:
        buffer = b""
        while not self._stop_event.is_set():
            try:
                data = self.sock.recv(1 << 16)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            now = time.time()
            buffer += data
            end = 0
            for match in _OPEN_TAG.finditer(buffer):
                tag = match.group(0)
                if b"EQUATORIAL_EOD_COORD" not in tag:
                    end = match.end()
                    continue
                close = buffer.find(b"</setNumberVector>", match.end())
                if close < 0:
                    break  # the rest of this message has not arrived yet
                state_match = re.search(rb"state=[\"'](\w+)[\"']", tag)
                state = state_match.group(1).decode() if state_match else ""
                # Only the start of a slew counts: the mount repeats Busy with every position update while moving.
                if state == "Busy" and self.last_state != "Busy":
                    self.busy_unix.append(now)
                self.last_state = state
                values = dict(_NUMBER.findall(buffer[match.end():close]))
                if b"RA" in values and b"DEC" in values:
                    self.last_position = (float(values[b"RA"]) * 15.0, float(values[b"DEC"]))
                end = close
            buffer = buffer[max(end, len(buffer) - 65536):]

    def first_busy_after(self, t_unix: float, timeout_s: float = 10.0) -> float | None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            later = [t for t in self.busy_unix if t >= t_unix]
            if later:
                return later[0]
            time.sleep(0.001)
        return None

    def wait_not_slewing(self, timeout_s: float = 30.0) -> bool:
        """Block until the mount's last announced state is not Busy (the previous slew has ended)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.last_state != "Busy":
                return True
            time.sleep(0.01)
        return False

    def close(self) -> None:
        self._stop_event.set()
        self.sock.close()
