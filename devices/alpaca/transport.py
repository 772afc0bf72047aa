"""How the Alpaca backend talks HTTP: alpyca's device classes with PyROS's transport underneath.

alpyca 3.1.3 sends every request of a process under one class-wide lock (a slow answer from one device
delays an abort sent to another), and reads images without a timeout. Its classes are kept for what they
define (every property and method of the ASCOM interfaces, the ASCOM error numbers mapped to exception
types); :class:`AlpacaTransport` replaces their ``_get``/``_put`` with one ``requests`` session per
device and thread, connect and read timeouts on every call, and no global lock. Images are read by
:func:`read_image` (ImageBytes when the device offers it, else JSON), within a deadline.

Errors become the device layer's (``translate``): no answer -> DeviceDisconnected / DeviceTimeout
(retry may help), ASCOM refusals (invalid value, parked, invalid operation, driver error) ->
DeviceRefused (permanent), HTTP 400 (no such device or method) -> DeviceNotFound.
"""

from __future__ import annotations

import itertools
import json
import logging
import random
import re
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import requests
from alpaca import exceptions as ascom

from devices.errors import (
    DeviceAborted,
    DeviceDisconnected,
    DeviceError,
    DeviceNotFound,
    DeviceProtocolError,
    DeviceRefused,
    DeviceTimeout,
)

logger = logging.getLogger("devices.alpaca")

CONNECT_TIMEOUT_S = 2.0
READ_TIMEOUT_S = 5.0

_client_id = random.randint(1, 65535)
_transaction_ids = itertools.count(1)


class AlpacaServer:
    """One Alpaca server (host:port) shared by the devices it serves.

    Remembers when it stopped answering: the first call that gets through afterwards runs the
    ``on_reconnect`` hooks (send Connected again, site and time to the mount) before anything else, so
    a restarted server is set up again without anyone asking."""

    def __init__(self, host: str, port: int, *, timeout_s: float = READ_TIMEOUT_S) -> None:
        self.host = host
        self.port = port
        self.address = f"{host}:{port}"
        self.timeout_s = timeout_s
        self.lost = False
        self._hooks: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._in_hooks = threading.local()

    def __repr__(self) -> str:
        return f"AlpacaServer({self.address})"

    def on_reconnect(self, hook: Callable[[], None]) -> None:
        self._hooks.append(hook)

    def mark_lost(self) -> None:
        if not self.lost:
            logger.warning("Alpaca server %s stopped answering", self.address)
        self.lost = True

    def answered(self) -> None:
        """A request got an HTTP answer: if the server had been lost, set it up again first."""
        if not self.lost or getattr(self._in_hooks, "active", False):
            return
        with self._lock:
            if not self.lost:
                return
            self._in_hooks.active = True
            try:
                logger.info("Alpaca server %s answers again: setting its devices up", self.address)
                for hook in self._hooks:
                    hook()
                self.lost = False
            except DeviceError as exc:
                logger.warning("setting up %s again failed (%s); retried at the next call", self.address, exc)
            finally:
                self._in_hooks.active = False


class AlpacaTransport:
    """Mixin placed before an alpyca device class: its HTTP requests go through here."""

    server: AlpacaServer
    pyros_name: str

    def _pyros_init(self, server: AlpacaServer, name: str) -> None:
        self.server = server
        self.pyros_name = name
        self._sessions = threading.local()

    def _session(self) -> requests.Session:
        session = getattr(self._sessions, "session", None)
        if session is None:
            session = requests.Session()
            self._sessions.session = session
        return session

    def _request(self, method: str, attribute: str, data: dict, timeout_s: float | None) -> requests.Response:
        payload = {"ClientTransactionID": str(next(_transaction_ids)), "ClientID": str(_client_id)}
        payload.update({k: _form_value(v) for k, v in data.items()})
        url = f"{self.base_url}/{attribute}"
        timeout = (CONNECT_TIMEOUT_S, timeout_s or self.server.timeout_s)
        try:
            if method == "GET":
                response = self._session().get(url, params=payload, timeout=timeout)
            else:
                response = self._session().put(url, data=payload, timeout=timeout)
        except requests.RequestException as exc:
            if isinstance(exc, requests.ConnectionError):
                self.server.mark_lost()
            raise translate(exc, self.pyros_name, attribute) from exc
        self.server.answered()
        return response

    def _checked(self, response: requests.Response, attribute: str) -> dict:
        try:
            self._Device__check_error(response)  # alpyca's ASCOM error numbers -> its exception types
            return response.json()
        except (ascom.AlpacaRequestException, ascom.DriverException, ascom.NotImplementedException,
                ascom.InvalidValueException, ascom.ValueNotSetException, ascom.NotConnectedException,
                ascom.ParkedException, ascom.SlavedException, ascom.InvalidOperationException,
                ascom.ActionNotImplementedException, ascom.OperationCancelledException, ValueError, KeyError) as exc:
            if isinstance(exc, ascom.NotConnectedException):
                self.server.mark_lost()  # a restarted driver: set it up again at the next call
            raise translate(exc, self.pyros_name, attribute) from exc

    def _get(self, attribute: str, tmo: float | None = None, **data):
        response = self._request("GET", attribute, data, tmo)
        body = self._checked(response, attribute)
        if "Value" not in body:
            raise DeviceProtocolError(f"{attribute}: answer without a Value", device=self.pyros_name)
        return body["Value"]

    def _put(self, attribute: str, tmo: float | None = None, **data):
        response = self._request("PUT", attribute, data, tmo)
        return self._checked(response, attribute)

    def call(self, what: str, fn: Callable[[], object]):
        """Run an alpyca call, with any error it raises translated to a DeviceError."""
        try:
            return fn()
        except DeviceError:
            raise
        except Exception as exc:  # noqa: BLE001 - alpyca and requests raise many kinds
            raise translate(exc, self.pyros_name, what) from exc


def _form_value(value) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    if hasattr(value, "value") and isinstance(value.value, int):  # alpyca's enums
        return str(value.value)
    return str(value)


def translate(exc: BaseException, device: str, what: str) -> DeviceError:
    """The device layer's error for an exception of requests or alpyca."""
    if isinstance(exc, DeviceError):
        return exc
    message = f"{what}: {exc}"
    if isinstance(exc, requests.ConnectTimeout | requests.ConnectionError):
        return DeviceDisconnected(f"{what}: Alpaca server not reachable ({exc.__class__.__name__})", device=device)
    if isinstance(exc, requests.Timeout):
        return DeviceTimeout(f"{what}: no answer within the HTTP timeout", device=device)
    if isinstance(exc, requests.RequestException):
        return DeviceDisconnected(f"{what}: HTTP error {exc}", device=device)
    if isinstance(exc, ascom.NotConnectedException):
        return DeviceDisconnected(f"{what}: the driver says it is not connected ({exc})", device=device)
    if isinstance(exc, ascom.OperationCancelledException):
        return DeviceAborted(message, device=device)
    if isinstance(exc, ascom.NotImplementedException | ascom.ActionNotImplementedException):
        return DeviceRefused(f"{what}: not implemented by the driver ({_ascom_message(exc)})", device=device)
    if isinstance(exc, ascom.ParkedException):
        return DeviceRefused(f"{what}: refused, parked ({_ascom_message(exc)})", device=device)
    if isinstance(exc, ascom.InvalidValueException | ascom.ValueNotSetException | ascom.SlavedException
                  | ascom.InvalidOperationException):
        return DeviceRefused(f"{what}: refused ({_ascom_message(exc)})", device=device)
    if isinstance(exc, ascom.DriverException):
        return DeviceRefused(f"{what}: driver error {_ascom_message(exc)}", device=device)
    if isinstance(exc, ascom.AlpacaRequestException):
        status = getattr(exc, "number", None)
        if status is not None and 400 <= status < 500:
            return DeviceNotFound(f"{what}: HTTP {status} {_ascom_message(exc)}", device=device, permanent=True)
        return DeviceError(f"{what}: HTTP {status} {_ascom_message(exc)}", device=device, permanent=False)
    if isinstance(exc, ValueError | KeyError | TypeError):
        return DeviceProtocolError(f"{what}: unusable answer ({exc})", device=device)
    return DeviceError(message, device=device, permanent=False)


def _ascom_message(exc: BaseException) -> str:
    number = getattr(exc, "number", None)
    text = getattr(exc, "message", None) or str(exc)
    return f"0x{number:X}: {text}" if isinstance(number, int) and not isinstance(exc, ascom.AlpacaRequestException) \
        else str(text)


# ---------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------

# ImageArrayElementTypes of the Alpaca ImageBytes protocol
_ELEMENT_DTYPES = {1: "<i2", 2: "<i4", 3: "<f8", 4: "<f4", 5: "<u8", 6: "u1", 7: "<i8", 8: "<u2", 9: "<u4"}


@dataclass(frozen=True)
class ImageTransfer:
    """A downloaded image: ``data[y, x]`` (numpy order, row 0 = the device's first row, its top),
    the wire format used, its size in bytes, the transfer time (request to decoded pixels) and the part of
    it spent decoding the answer after its last byte (JSON pixels are parsed while they arrive)."""

    data: np.ndarray
    transport: str  # "imagebytes" or "json"
    nbytes: int
    seconds: float
    decode_seconds: float = 0.0


def read_image(device: AlpacaTransport, *, imagebytes: bool = True, deadline_s: float = 120.0,
               stop: threading.Event | None = None) -> ImageTransfer:
    """GET ``imagearray``, asking for ImageBytes (``imagebytes=False``: JSON only), within ``deadline_s``
    (DeviceTimeout after it; DeviceAborted as soon as ``stop`` is set)."""
    what = "image download"
    accept = "application/imagebytes, application/json;q=0.9" if imagebytes else "application/json"
    payload = {"ClientTransactionID": str(next(_transaction_ids)), "ClientID": str(_client_id)}
    t0 = time.perf_counter()
    try:
        response = device._session().get(
            f"{device.base_url}/imagearray", params=payload, headers={"Accept": accept},
            timeout=(CONNECT_TIMEOUT_S, max(device.server.timeout_s, 30.0)), stream=True,
        )
    except requests.RequestException as exc:
        if isinstance(exc, requests.ConnectionError):
            device.server.mark_lost()
        raise translate(exc, device.pyros_name, what) from exc
    chunks: list[bytes] = []
    stream: JsonImageStream | None = None
    try:
        with response:
            if response.status_code >= 300:
                raise translate(ascom.AlpacaRequestException(response.status_code, response.text[:200]),
                                device.pyros_name, what)
            if "imagebytes" not in response.headers.get("Content-Type", "").lower():
                stream = JsonImageStream()  # JSON pixels parsed while the rest of the answer arrives
            for chunk in response.iter_content(chunk_size=1 << 20):
                chunks.append(chunk)
                if stream is not None:
                    stream.feed(chunk)
                if stop is not None and stop.is_set():
                    raise DeviceAborted(f"{what} aborted", device=device.pyros_name)
                if time.perf_counter() - t0 > deadline_s:
                    raise DeviceTimeout(f"{what} still running after {deadline_s:.0f} s", device=device.pyros_name)
            content_type = response.headers.get("Content-Type", "")
    except requests.RequestException as exc:
        device.server.mark_lost()
        raise translate(exc, device.pyros_name, what) from exc
    body = b"".join(chunks)
    device.server.answered()
    t_decode = time.perf_counter()
    if "imagebytes" in content_type.lower():
        data = _decode_imagebytes(body, device.pyros_name)
        transport = "imagebytes"
    else:
        data = stream.finish(device.pyros_name) if stream is not None else None
        if data is None:
            data = _decode_json_image_slowly(body, device.pyros_name)
        transport = "json"
    end = time.perf_counter()
    return ImageTransfer(data=data, transport=transport, nbytes=len(body), seconds=end - t0,
                         decode_seconds=end - t_decode)


def _decode_imagebytes(body: bytes, device: str) -> np.ndarray:
    if len(body) < 44:
        raise DeviceProtocolError(f"ImageBytes answer of {len(body)} bytes", device=device)
    header = np.frombuffer(body[:44], dtype="<i4")
    error, data_start, transmission, rank = int(header[1]), int(header[4]), int(header[6]), int(header[7])
    if error:
        message = body[data_start:].decode("utf-8", "replace")
        raise translate(_ascom_error(error, message), device, "image download")
    if rank != 2:
        raise DeviceProtocolError(f"image of rank {rank}: only monochrome (rank 2) images are supported", device=device)
    dtype = _ELEMENT_DTYPES.get(transmission)
    if dtype is None:
        raise DeviceProtocolError(f"unknown ImageBytes element type {transmission}", device=device)
    dim1, dim2 = int(header[8]), int(header[9])
    pixels = np.frombuffer(body, dtype=dtype, offset=data_start)
    if pixels.size != dim1 * dim2:
        raise DeviceProtocolError(f"ImageBytes: {pixels.size} pixels for {dim1}x{dim2}", device=device)
    # Alpaca arrays are [x][y] with x varying slowest: numpy's [y, x] is the transpose
    return pixels.reshape(dim1, dim2).T


# ImageArrayElementTypes of a JSON answer ("Type") -> the array it is parsed into: Int16, Int32, Byte and
# UInt16 fit an int32 (half the memory of int64, and the FITS conversion reads less); floats as float64
_JSON_DTYPES = {1: np.int32, 2: np.int32, 6: np.int32, 8: np.int32, 3: np.float64, 4: np.float64}


class JsonImageStream:
    """The pixel array (``Value``, [x][y]) of a JSON image answer parsed as the answer arrives: each complete run
    of numbers goes through numpy's C text reader (~0.02 s for 1280x1024 integers in all, against ~0.12 s and
    as many Python ints for json), so that almost nothing is left to decode after the last byte. The rest of
    the answer (type, rank, error) is read with json at the end. ``finish`` returns numpy [y, x] (a transposed
    view of the array as sent), or None when the answer is not shaped as expected (whitespace inside the
    array, a rank other than 2...): the caller then decodes the whole answer with json."""

    _TYPE = re.compile(rb'"Type"\s*:\s*(\d+)')

    def __init__(self) -> None:
        self.where = "head"  # head (before the array) -> values -> tail (after it)
        self.pending = b""
        self.head = self.tail = b""
        self.parts: list[np.ndarray] = []
        self.brackets = 0
        self.dtype = None
        self.broken = False

    def feed(self, chunk: bytes) -> None:
        if self.broken:
            return
        buf = self.pending + chunk
        if self.where == "head":
            start = buf.find(b'"Value"')
            bracket = buf.find(b"[", start) if start >= 0 else -1
            if bracket < 0:
                self.pending = buf
                return
            self.head, buf, self.where = buf[:start], buf[bracket:], "values"
            found = self._TYPE.search(self.head)
            # Int16, Int32, Byte and UInt16 fit an int32 (half the memory of int64, and the FITS conversion
            # reads less); floats as float64; a type sent after the array: float64, cast at the end
            self.dtype = _JSON_DTYPES.get(int(found.group(1)), np.int64) if found else np.float64
        if self.where == "values":
            end = buf.find(b"]]")  # a rank-2 array closes with the only "]]" of the answer
            if end >= 0:
                self._parse(buf[:end + 2])
                self.where, buf = "tail", buf[end + 2:]
            else:
                cut = buf.rfind(b",")
                if cut >= 0:
                    self._parse(buf[:cut])
                    buf = buf[cut + 1:]
                self.pending = buf
                return
        self.pending = buf  # the tail, kept whole

    def _parse(self, values: bytes) -> None:
        self.brackets += values.count(b"[")
        text = values.translate(None, b"[] \n\r\t")
        if not text:
            return
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                part = np.fromstring(text, dtype=self.dtype, sep=",")
        except ValueError:  # what the reader cannot read (numpy 2: an error; before: it stopped there)
            part = None
        if part is None or part.size != text.count(b",") + 1:
            self.broken = True
            return
        self.parts.append(part)

    def finish(self, device: str) -> np.ndarray | None:
        if self.broken or self.where != "tail":
            return None
        try:
            answer = json.loads(self.head + b'"Value":null' + self.pending)
        except ValueError:
            return None
        error = int(answer.get("ErrorNumber") or 0)
        if error:
            raise translate(_ascom_error(error, answer.get("ErrorMessage", "")), device, "image download")
        rows = self.brackets - 1
        if int(answer.get("Rank") or 2) != 2 or rows < 1:
            raise DeviceProtocolError("JSON image: only monochrome (rank 2) images are supported", device=device)
        flat = np.concatenate(self.parts) if self.parts else np.empty(0)
        if flat.size == 0 or flat.size % rows:
            return None
        wanted = _JSON_DTYPES.get(int(answer.get("Type") or 0), np.int64)
        if flat.dtype != wanted:
            flat = flat.astype(wanted)
        return flat.reshape(rows, flat.size // rows).T


def _decode_json_image(body: bytes, device: str) -> np.ndarray:
    """A whole JSON image answer as numpy [y, x] (``JsonImageStream`` fed at once; json when it cannot)."""
    stream = JsonImageStream()
    stream.feed(body)
    data = stream.finish(device)
    return data if data is not None else _decode_json_image_slowly(body, device)


def _decode_json_image_slowly(body: bytes, device: str) -> np.ndarray:
    try:
        answer = json.loads(body)
    except ValueError as exc:
        raise DeviceProtocolError(f"image answer is neither ImageBytes nor JSON ({exc})", device=device) from exc
    error = int(answer.get("ErrorNumber") or 0)
    if error:
        raise translate(_ascom_error(error, answer.get("ErrorMessage", "")), device, "image download")
    value = answer.get("Value")
    if int(answer.get("Rank") or 2) != 2 or not value:
        raise DeviceProtocolError("JSON image: only non-empty monochrome (rank 2) images are supported", device=device)
    dtype = np.float64 if int(answer.get("Type") or 2) in (3, 4) else np.int64
    try:
        return np.asarray(value, dtype=dtype).T
    except (TypeError, ValueError) as exc:
        raise DeviceProtocolError(f"JSON image: {exc}", device=device) from exc


def _ascom_error(number: int, message: str) -> Exception:
    from alpaca.camera import raise_alpaca_if

    try:
        raise_alpaca_if(number, message)
    except Exception as exc:  # noqa: BLE001 - the typed ASCOM exception
        return exc
    return ascom.DriverException(number, message)
