"""An independent INDI client for tests and benchmarks: it reads the server's raw XML (none of PyROS's client
code) and hands each update of one property vector to a subclass, with the time it arrived."""

from __future__ import annotations

import re
import socket
import threading
import time

_STATE = re.compile(rb"state=[\"'](\w+)[\"']")


class VectorWatcher(threading.Thread):
    """Calls ``on_update(state, body, now_unix)`` for every ``set``/``def`` message of the vector named
    ``vector`` (``body``: the bytes between its opening and closing tags). Subclasses record what they need."""

    vector: bytes = b""
    kinds: tuple[bytes, ...] = (b"Number", b"Switch")

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        super().__init__(name=f"{self.vector.decode().lower()}-watcher", daemon=True)
        kinds = b"|".join(self.kinds)
        self._open_tag = re.compile(rb"<((?:set|def)(?:" + kinds + rb")Vector)\b[^>]*>")
        self.sock = socket.create_connection((host, port), timeout=5)
        self.sock.sendall(b'<getProperties version="1.7"/>')
        self.sock.settimeout(0.2)
        self._stop_event = threading.Event()

    def on_update(self, state: str, body: bytes, now: float) -> None:
        raise NotImplementedError

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
            for match in self._open_tag.finditer(buffer):
                tag = match.group(0)
                if self.vector not in tag:
                    end = match.end()
                    continue
                close = buffer.find(b"</" + match.group(1) + b">", match.end())
                if close < 0:
                    break  # the rest of this message has not arrived yet
                state = _STATE.search(tag)
                self.on_update(state.group(1).decode() if state else "", buffer[match.end():close], now)
                end = close
            buffer = buffer[max(end, len(buffer) - 65536):]

    @staticmethod
    def first_after(times: list[float], t_unix: float, timeout_s: float) -> float | None:
        """The first of ``times`` (appended by the watcher's thread) at or after ``t_unix``, waiting for it."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            later = [t for t in times if t >= t_unix]
            if later:
                return later[0]
            time.sleep(0.001)
        return None

    def close(self) -> None:
        self._stop_event.set()
        self.sock.close()
