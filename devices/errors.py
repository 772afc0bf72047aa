"""The one error hierarchy of the device layer.

Every failure of a device call raises a :class:`DeviceError`. ``permanent`` says whether retrying
the same call can help (healthchecks' ``TransportError(permanent=...)`` idea): a timeout or a lost
connection may succeed on retry (``permanent=False``); a refusal by the driver (INDI Alert), an
unknown filter or a target below the horizon will fail again (``permanent=True``).
"""

from __future__ import annotations


class DeviceError(Exception):
    """A device call failed. ``device`` names the device, ``permanent`` says a retry cannot help."""

    permanent: bool = True

    def __init__(self, message: str, *, device: str = "", permanent: bool | None = None) -> None:
        super().__init__(f"{device}: {message}" if device else message)
        self.device = device
        self.detail = message
        if permanent is not None:
            self.permanent = permanent


class DeviceTimeout(DeviceError):
    """The device did not answer or finish in time (the command may still be running)."""

    permanent = False


class DeviceRefused(DeviceError):
    """The driver refused or failed the command (INDI state Alert, with the driver's message)."""

    permanent = True


class DeviceAborted(DeviceError):
    """The operation was aborted (by ``abort()`` from any thread) before it completed."""

    permanent = False


class DeviceDisconnected(DeviceError):
    """The connection to the INDI server dropped during the call; the client reconnects by itself."""

    permanent = False


class DeviceNotFound(DeviceError):
    """The device or one of its standard properties is not served by the INDI server."""

    permanent = False


class DeviceProtocolError(DeviceError):
    """The driver sent something unusable (malformed values, a corrupt FITS BLOB)."""

    permanent = False
