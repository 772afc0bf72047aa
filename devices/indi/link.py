"""One INDI server connection pair (control + BLOB) on indipyclient, run in a background asyncio thread.

* The control connection carries commands and state; BLOBs are disabled on it, so a 3 MB image
  never queues in front of an abort. The BLOB connection receives images only.
* Every update of every vector is recorded with a sequence number, so a waiting command sees all
  intermediate states (Busy then Ok) even when they arrive in one TCP read.
* indipyclient reconnects after a drop; here the retry delay is 0.5 s instead of 5 s and an
  end-of-stream is recognised at once (indipyclient 0.9.4 polls a closed socket until its 40 s
  response timer fires). Each (re)connection bumps ``epoch``: waits spanning a drop raise
  DeviceDisconnected; ``on_device_defined`` hooks re-synchronise (site, time, CONNECT).
* Malformed XML from the server drops the connection (and reconnects, which resynchronises):
  resuming a parser in the middle of garbage gives nonsense.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass

from indipyclient import IPyClient

from devices.errors import (
    DeviceAborted,
    DeviceDisconnected,
    DeviceNotFound,
    DeviceRefused,
    DeviceTimeout,
)

logger = logging.getLogger("devices.indi")

RECONNECT_DELAY_S = 0.5


@dataclass(frozen=True)
class Update:
    seq: int
    state: str | None
    message: str
    eventtype: str


class _Client(IPyClient):
    """indipyclient with a prompt reconnect, EOF detection and a hook for every event."""

    def __init__(self, host: str, port: int, *, on_event: Callable, role: str) -> None:
        super().__init__(indihost=host, indiport=port)
        self._on_event = on_event
        self.role = role
        self.enable_reports = False

    async def rxevent(self, event) -> None:
        await self._on_event(self, event)

    async def warning(self, message) -> None:  # indipyclient's connection chatter: debug level
        logger.debug("%s link: %s", self.role, message)

    async def report(self, message) -> None:
        logger.debug("%s link: %s", self.role, message)

    async def _run_rx(self) -> None:
        parser = ET.XMLPullParser(events=("start", "end"))
        parser.feed(b"<root>")
        depth = 0
        root_elem = None
        for ev, el in parser.read_events():
            if ev == "start":
                depth += 1
                root_elem = el
        while self.connected and not self._stop:
            data = await self._reader.read(65536)
            if not data:
                raise ConnectionError("server closed the connection")
            self.tx_timer = None
            self.idle_timer = time.time()
            try:
                parser.feed(data)
            except ET.ParseError as exc:
                logger.warning(
                    "%s link: malformed XML from %s:%s (%s): reconnecting", self.role, self.indihost, self.indiport, exc
                )
                raise ConnectionError("malformed XML") from None
            for event, element in parser.read_events():
                if event == "start":
                    depth += 1
                elif event == "end":
                    depth -= 1
                    if depth == 1:
                        await self._rxhandler(element)
                        if root_elem is not None:
                            root_elem.remove(element)

    async def _comms(self) -> None:
        # indipyclient's loop with a short retry delay (it waits 5 s between attempts).
        try:
            while not self._stop:
                self.tx_timer = None
                self.idle_timer = time.time()
                rx = alive = None
                try:
                    self._reader, self._writer = await asyncio.open_connection(self.indihost, self.indiport)
                    self.messages.clear()
                    self.clear()
                    from indipyclient import events

                    await self.rxevent(events.ConnectionMade())
                    rx = asyncio.create_task(self._run_rx())
                    alive = asyncio.create_task(self._check_alive())
                    done, pending = await asyncio.wait({rx, alive}, return_when=asyncio.FIRST_COMPLETED)
                    for task in pending:
                        task.cancel()
                    for task in done:
                        if not task.cancelled() and task.exception() is not None:
                            raise task.exception()
                except (OSError, ConnectionError) as exc:
                    logger.debug("%s link: %s", self.role, exc)
                except Exception:
                    logger.exception("%s link to %s:%s failed", self.role, self.indihost, self.indiport)
                for task in (rx, alive):
                    if task is not None and not task.done():
                        task.cancel()
                await self._clear_connection()
                if self._stop:
                    break
                await asyncio.sleep(RECONNECT_DELAY_S)
        finally:
            await self._clear_connection()
            self.shutdown()


class IndiLink:
    """A control and a BLOB connection to one INDI server, with a synchronous bridge.

    Async methods run on ``self.loop`` (a daemon thread); ``call()`` runs one from any thread."""

    def __init__(self, host: str, port: int, *, blobs: bool = True) -> None:
        self.host, self.port = host, port
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run_loop, name=f"indi-{host}:{port}", daemon=True)
        self.epoch = 0  # bumped on every connect and disconnect of the control connection
        self.blob_epoch = 0
        self.connected = False
        self._updates: dict[tuple[str, str], collections.deque[Update]] = {}
        self._seq = 0
        self._blobs: dict[tuple[str, str], collections.deque[tuple[int, bytes, str]]] = {}
        self._blob_seq = 0
        self.abort_generation: dict[str, int] = collections.defaultdict(int)
        self._define_hooks: list[Callable] = []
        # (device, vector) -> plain callables, run on the loop thread after each update of that vector
        self._update_listeners: dict[tuple[str, str], list[Callable[[], None]]] = {}
        self._cond: asyncio.Condition | None = None
        self._started = threading.Event()
        self.control: _Client | None = None
        self.blob: _Client | None = None
        self._want_blobs = blobs
        self._tasks: list[asyncio.Task] = []
        self._thread.start()
        self._started.wait(5)

    # -- loop thread ---------------------------------------------------------------------------

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self.loop)
        self._cond = asyncio.Condition()
        self.control = _Client(self.host, self.port, on_event=self._on_event, role="control")
        self._tasks.append(self.loop.create_task(self.control.asyncrun()))
        if self._want_blobs:
            self.blob = _Client(self.host, self.port, on_event=self._on_event, role="blob")
            self.blob.enableBLOBdefault = "Also"
            self._tasks.append(self.loop.create_task(self.blob.asyncrun()))
        self._started.set()
        try:
            self.loop.run_forever()
        finally:
            self.loop.close()

    def call(self, coro, timeout_s: float | None = None):
        """Run a coroutine on the link's loop from another thread and return its result."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout=timeout_s)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise DeviceTimeout(f"no answer from {self.host}:{self.port} within {timeout_s} s") from None

    def submit(self, coro) -> concurrent.futures.Future:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def close(self) -> None:
        async def _stop() -> None:
            for client in (self.control, self.blob):
                if client is not None:
                    client.shutdown()
            await asyncio.sleep(0)
            for task in self._tasks:
                try:
                    await asyncio.wait_for(task, 2.0)
                except (TimeoutError, asyncio.CancelledError, Exception):
                    task.cancel()

        if self.loop.is_running():
            try:
                asyncio.run_coroutine_threadsafe(_stop(), self.loop).result(timeout=5)
            except Exception:  # noqa: BLE001 - closing must not raise
                logger.debug("closing the INDI link", exc_info=True)
            self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)

    # -- events --------------------------------------------------------------------------------

    def on_device_defined(self, hook: Callable) -> None:
        """hook(device_name, vector_name) coroutine, called for each vector definition (also after
        a reconnect: indipyclient forgets every device and learns them again)."""
        self._define_hooks.append(hook)

    def on_vector_update(self, device: str, vector: str, callback: Callable[[], None]) -> None:
        """``callback()`` after each definition or update of ``device.vector``; it runs on the link's loop
        thread and must return at once (set an event, not more)."""
        self._update_listeners.setdefault((device, vector), []).append(callback)

    async def _notify(self) -> None:
        async with self._cond:
            self._cond.notify_all()

    async def _on_event(self, client: _Client, event) -> None:
        etype = getattr(event, "eventtype", "")
        if client.role == "blob":
            if etype == "SetBLOB":
                for member, value in event.items():
                    self._blob_seq += 1
                    fmt = event.sizeformat.get(member, (0, ""))[1]
                    queue = self._blobs.setdefault((event.devicename, event.vectorname), collections.deque(maxlen=4))
                    queue.append((self._blob_seq, value, fmt))
                await self._notify()
            elif etype in ("ConnectionMade", "ConnectionLost"):
                self.blob_epoch += 1
                await self._notify()
            return
        if etype == "ConnectionMade":
            self.epoch += 1
            self.connected = True
            logger.info("connected to INDI server %s:%s", self.host, self.port)
            await self._notify()
            return
        if etype == "ConnectionLost":
            self.epoch += 1
            self.connected = False
            self._updates.clear()
            if client._stop:
                await self._notify()
                return
            logger.warning("lost the INDI server %s:%s; reconnecting", self.host, self.port)
            await self._notify()
            return
        if etype == "Message" and getattr(event, "message", ""):
            logger.info("INDI %s: %s", event.devicename or "server", event.message)
        if etype in ("Define", "DefineBLOB", "Set") and event.devicename and event.vectorname:
            self._seq += 1
            key = (event.devicename, event.vectorname)
            queue = self._updates.setdefault(key, collections.deque(maxlen=64))
            vector = client.get(event.devicename, {}).get(event.vectorname) if event.devicename in client else None
            state = getattr(event, "state", None) or (vector.state if vector is not None else None)
            message = getattr(event, "message", "") or ""
            queue.append(Update(self._seq, state, message, etype))
            for listener in self._update_listeners.get(key, ()):
                try:
                    listener()
                except Exception:  # noqa: BLE001 - a failing listener must not kill the reader
                    logger.exception("update listener failed for %s.%s", *key)
            if etype in ("Define", "DefineBLOB"):
                for hook in self._define_hooks:
                    try:
                        await hook(event.devicename, event.vectorname)
                    except Exception:  # noqa: BLE001 - a failing hook must not kill the reader
                        logger.exception("define hook failed for %s.%s", event.devicename, event.vectorname)
            await self._notify()
        elif etype == "Delete":
            await self._notify()

    # -- queries (loop thread, or any thread for a snapshot read) ------------------------------

    def devices(self) -> list[str]:
        client = self.control
        return list(client.keys()) if client is not None else []

    def vector(self, device: str, name: str):
        client = self.control
        if client is None or device not in client:
            return None
        vec = client[device].get(name)
        if vec is None or not vec.enable:
            return None
        return vec

    def value(self, device: str, name: str, member: str) -> str | None:
        vec = self.vector(device, name)
        if vec is None or member not in vec:
            return None
        return vec[member]

    def number(self, device: str, name: str, member: str) -> float | None:
        vec = self.vector(device, name)
        if vec is None or member not in vec:
            return None
        try:
            return float(vec.getfloatvalue(member))
        except (TypeError, ValueError):
            return None

    def state(self, device: str, name: str) -> str | None:
        vec = self.vector(device, name)
        return None if vec is None else vec.state

    def last_seq(self, device: str, name: str) -> int:
        queue = self._updates.get((device, name))
        return queue[-1].seq if queue else 0

    def updates_since(self, device: str, name: str, seq: int) -> list[Update]:
        return [u for u in self._updates.get((device, name), ()) if u.seq > seq]

    def blob_seq(self) -> int:
        return self._blob_seq

    def blob_since(self, device: str, name: str, seq: int) -> tuple[int, bytes, str] | None:
        for item in self._blobs.get((device, name), ()):
            if item[0] > seq:
                return item
        return None

    # -- waiting -------------------------------------------------------------------------------

    async def wait_until(self, predicate: Callable[[], object], timeout_s: float, what: str, *, device: str = ""):
        """Wait until predicate() is truthy (re-checked after every event); DeviceTimeout otherwise."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        async with self._cond:
            while True:
                result = predicate()
                if result:
                    return result
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise DeviceTimeout(f"{what}: no answer within {timeout_s:g} s", device=device)
                try:
                    await asyncio.wait_for(self._cond.wait(), remaining)
                except TimeoutError:
                    pass

    async def require_vector(self, device: str, name: str, timeout_s: float):
        """The vector, waiting for it to be defined (after a connect or reconnect)."""
        vec = self.vector(device, name)
        if vec is not None:
            return vec
        try:
            return await self.wait_until(
                lambda: self.vector(device, name), timeout_s, f"waiting for {name}", device=device
            )
        except DeviceTimeout:
            if not self.connected:
                raise DeviceDisconnected(
                    f"not connected to the INDI server {self.host}:{self.port}", device=device
                ) from None
            raise DeviceNotFound(f"property {name} not defined by the driver", device=device) from None

    async def send(self, device: str, name: str, members: dict, *, timeout_s: float = 5.0) -> int:
        """Send a newVector; returns the sequence number to watch replies from."""
        await self.require_vector(device, name, timeout_s)
        seq = self._seq
        await self.control.send_newVector(device, name, members=members)
        return seq

    async def command(
        self,
        device: str,
        name: str,
        members: dict,
        *,
        timeout_s: float,
        expect_busy: bool = False,
        ack_timeout_s: float = 3.0,
        abortable: bool = False,
        what: str = "",
    ) -> str:
        """Send a newVector and wait until the driver finishes it; returns the final state.

        Completion: the vector goes Busy then Ok/Idle. Without ``expect_busy`` a first Ok/Idle
        reply completes it (instant settings). With it, an Ok/Idle before any Busy is taken as a
        routine update (e.g. the mount's periodic position) unless no Busy came within
        ``ack_timeout_s``. Alert raises DeviceRefused with the driver's message; a drop raises
        DeviceDisconnected; ``abort()`` on the device raises DeviceAborted (if ``abortable``)."""
        what = what or f"{name} command"
        epoch = self.epoch
        abort_gen = self.abort_generation[device]
        seq = await self.send(device, name, members, timeout_s=min(timeout_s, 5.0))
        loop = asyncio.get_running_loop()
        sent_at = loop.time()
        busy_seen = False
        last_state: list[str | None] = [None]

        def progress():
            nonlocal seq, busy_seen
            if self.epoch != epoch:
                return "disconnected"
            if abortable and self.abort_generation[device] != abort_gen:
                return "aborted"
            for update in self.updates_since(device, name, seq):
                seq = update.seq
                last_state[0] = update.state
                if update.state == "Alert":
                    return ("alert", update.message)
                if update.state == "Busy":
                    busy_seen = True
                elif update.state in ("Ok", "Idle") and (busy_seen or not expect_busy):
                    return ("done", update.state)
            if expect_busy and not busy_seen and last_state[0] in ("Ok", "Idle"):
                if loop.time() - sent_at > ack_timeout_s:
                    return ("done", last_state[0])
            return None

        deadline = sent_at + timeout_s
        while True:
            remaining = deadline - loop.time()
            step = min(remaining, ack_timeout_s + 0.05) if expect_busy and not busy_seen else remaining
            try:
                result = await self.wait_until(progress, max(step, 0.0), what, device=device)
            except DeviceTimeout:
                if loop.time() < deadline:
                    continue  # re-check the ack timeout
                raise DeviceTimeout(
                    f"{what} not finished within {timeout_s:g} s (last state {last_state[0]})", device=device
                ) from None
            if result == "disconnected":
                raise DeviceDisconnected(f"{what}: connection to the INDI server lost", device=device)
            if result == "aborted":
                raise DeviceAborted(f"{what} aborted", device=device)
            kind, detail = result
            if kind == "alert":
                raise DeviceRefused(f"{what} failed: {detail or 'driver answered Alert'}", device=device)
            return detail

    def bump_abort(self, device: str) -> None:
        """Mark the device's running operations as aborted (call on the loop)."""
        self.abort_generation[device] += 1
