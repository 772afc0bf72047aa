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
    it spent decoding the answer."""

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
    try:
        with response:
            if response.status_code >= 300:
                raise translate(ascom.AlpacaRequestException(response.status_code, response.text[:200]),
                                device.pyros_name, what)
            for chunk in response.iter_content(chunk_size=1 << 20):
                chunks.append(chunk)
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
        data = _decode_json_image(body, device.pyros_name)
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


def _decode_json_image(body: bytes, device: str) -> np.ndarray:
    """A JSON image answer as numpy [y, x] (a transposed view of the array as sent). The pixel array
    (``Value``, [x][y]) is parsed with numpy's C text reader (~0.02 s for 1280x1024 integers) rather than
    json (~0.12 s, and as many Python ints); the rest of the answer with json."""
    start = body.find(b'"Value"')
    bracket = body.find(b"[", start) if start >= 0 else -1
    # the pixel array ends at the last "]]" (searched from the end: the array is most of the answer);
    # the rest of the answer must then parse as JSON, else the slow path decides
    end = body.rfind(b"]]") if bracket >= 0 else -1
    if start < 0 or bracket < 0 or end < bracket:
        return _decode_json_image_slowly(body, device)
    end += 2
    values, rest = body[bracket:end], body[:start] + b'"Value":null' + body[end:]
    try:
        answer = json.loads(rest)
    except ValueError:
        return _decode_json_image_slowly(body, device)
    error = int(answer.get("ErrorNumber") or 0)
    if error:
        raise translate(_ascom_error(error, answer.get("ErrorMessage", "")), device, "image download")
    if int(answer.get("Rank") or 2) != 2 or values.startswith(b"[[["):
        raise DeviceProtocolError("JSON image: only monochrome (rank 2) images are supported", device=device)
    rows = values.count(b"[") - 1
    element_type = int(answer.get("Type") or 0)
    dtype = _JSON_DTYPES.get(element_type, np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        flat = np.fromstring(values.translate(None, b"[] \n\r\t"), dtype=dtype, sep=",")
    if flat.size == 0 or flat.size % rows:
        return _decode_json_image_slowly(body, device)
    return flat.reshape(rows, flat.size // rows).T


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
