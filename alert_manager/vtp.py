"""A minimal VOEvent Transport Protocol (VTP) client, and a tiny server for tests: pure, no Django.

VTP framing: a 4-byte big-endian length, then that many bytes of XML. An author connects to a
broker's receive port, sends one VOEvent, and reads back a Transport message whose ``role`` is
``ack`` or ``nak`` (Comet 3.1.0 closes the connection without any reply when the bytes are not
XML at all). Used by tests, benchmarks and the web page's "send a test packet".
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from lxml import etree

_LENGTH = struct.Struct("!I")
# A Transport reply is < 1 KiB; refuse to allocate for a hostile length prefix.
MAX_REPLY_BYTES = 64 * 1024
MAX_SERVER_PACKET_BYTES = 1024 * 1024

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


@dataclass(frozen=True)
class VTPResponse:
    ack: bool
    message: str  # e.g. "ack from ivo://pyros/broker", or the broker's NAK reason
    role: str | None = None  # Transport role: ack / nak / None when no reply
    elapsed_s: float = 0.0


class VTPError(OSError):
    """The broker could not be reached or the exchange broke (connection refused, timeout...)."""


def frame(payload: bytes) -> bytes:
    return _LENGTH.pack(len(payload)) + payload


def _recv_exactly(sock: socket.socket, n: int) -> bytes | None:
    chunks = []
    remaining = n
    while remaining:
        chunk = sock.recv(remaining)
        if not chunk:
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_frame(sock: socket.socket, max_bytes: int) -> bytes | None:
    """One VTP message, or None if the peer closed the connection first."""
    header = _recv_exactly(sock, _LENGTH.size)
    if header is None:
        return None
    (length,) = _LENGTH.unpack(header)
    if length > max_bytes:
        raise VTPError(f"VTP message of {length} bytes exceeds the {max_bytes}-byte limit")
    return _recv_exactly(sock, length)


def send_voevent(host: str, port: int, payload_bytes: bytes, timeout_s: float = 5.0) -> VTPResponse:
    """Send one packet to a VTP receiver and return its ack/nak.

    Raises :class:`VTPError` when the broker cannot be reached or does not answer in time.
    """
    start = time.perf_counter()
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(frame(payload_bytes))
            reply = read_frame(sock, MAX_REPLY_BYTES)
    except TimeoutError as exc:
        raise VTPError(f"no reply from {host}:{port} within {timeout_s:g} s") from exc
    except OSError as exc:
        if isinstance(exc, VTPError):
            raise
        raise VTPError(f"VTP exchange with {host}:{port} failed: {exc}") from exc
    elapsed = time.perf_counter() - start
    if reply is None:
        return VTPResponse(False, "connection closed by the broker without a reply (unparsable packet?)", None, elapsed)
    return _interpret_reply(reply, elapsed)


def _interpret_reply(reply: bytes, elapsed_s: float) -> VTPResponse:
    try:
        root = etree.fromstring(reply, parser=_PARSER)
    except etree.XMLSyntaxError as exc:
        return VTPResponse(False, f"unreadable reply from the broker: {exc}", None, elapsed_s)
    role = root.get("role")
    result = None
    origin = None
    for element in root.iter():
        if not isinstance(element.tag, str):
            continue
        name = element.tag.rpartition("}")[2]
        if name == "Result" and element.text:
            result = element.text.strip()
        elif name == "Response" and element.text:
            origin = element.text.strip()
    if role == "ack":
        return VTPResponse(True, f"ack from {origin or 'broker'}", role, elapsed_s)
    if role == "nak":
        return VTPResponse(False, result or "nak (no reason given)", role, elapsed_s)
    return VTPResponse(False, f"unexpected Transport role {role!r}", role, elapsed_s)


def transport_reply(role: str, *, local_ivo: str, origin_ivorn: str, result: str | None = None) -> bytes:
    """A Transport ack/nak as Comet sends it (used by :class:`VTPTestServer`)."""
    ns = "http://www.telescope-networks.org/xml/Transport/v1.1"
    root = etree.Element(f"{{{ns}}}Transport", nsmap={"trn": ns}, attrib={"version": "1.0", "role": role})
    etree.SubElement(root, "Origin").text = origin_ivorn
    etree.SubElement(root, "Response").text = local_ivo
    etree.SubElement(root, "TimeStamp").text = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if result:
        meta = etree.SubElement(root, "Meta")
        etree.SubElement(meta, "Result").text = result
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


@dataclass
class VTPTestServer:
    """A one-thread VTP receiver on 127.0.0.1 for tests: records packets, acks (or naks via ``judge``).

    ``judge(payload) -> None`` to ack, or a string reason to nak. Use as a context manager.
    """

    judge: Callable[[bytes], str | None] | None = None
    local_ivo: str = "ivo://pyros/test-server"
    received: list[bytes] = field(default_factory=list)
    port: int = 0
    _sock: socket.socket | None = None
    _thread: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> VTPTestServer:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.1)
        self.port = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, name="vtp-test-server", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._sock is not None:
            self._sock.close()

    def _serve(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    payload = read_frame(conn, MAX_SERVER_PACKET_BYTES)
                except (OSError, VTPError):
                    continue
                if payload is None:
                    continue
                self.received.append(payload)
                reason = self.judge(payload) if self.judge else None
                try:
                    root = etree.fromstring(payload, parser=_PARSER)
                    ivorn = root.get("ivorn") or ""
                except etree.XMLSyntaxError:
                    continue  # like Comet: no reply to bytes that are not XML
                role = "ack" if reason is None else "nak"
                try:
                    conn.sendall(
                        frame(transport_reply(role, local_ivo=self.local_ivo, origin_ivorn=ivorn, result=reason))
                    )
                except OSError:
                    continue
