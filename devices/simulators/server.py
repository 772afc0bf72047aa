"""indipyserver 0.0.6, patched to route INDI traffic to each client as Debian's indiserver does.

Two defects are fixed by :func:`patch_indipyserver` (called by :func:`devices.simulators.serve`):

* Its client read loop treats the empty read at end-of-stream as "no data yet" and spins at 100 %
  CPU until a later write fails (~60 s). The replacement ends on EOF and drops a client that sends
  malformed XML rather than resynchronising on garbage.
* Its ``SendChecker`` (what a client may receive) is not the protocol's: a device-level
  ``enableBLOB`` does not override an earlier property-level one (so a standard client that sends
  ``Never`` for each BLOB property as it learns of it, then ``Also`` for the device, never gets an
  image); a client's ``getProperties`` for one device or one property still brings it the traffic
  of every device; empty ``setBLOBVector``s pass ``Never``; drivers' snooping ``getProperties`` reach
  clients. :class:`ClientRouting` replaces it.

:class:`ClientRouting` follows libindi 1.9's indiserver (``ClInfo::onMessage``, ``crackBLOBHandling``,
``q2Clients``, ``findDevice``), per connection:

* Interest: any message a client sends that names a device (``getProperties``, ``new*Vector``,
  ``enableBLOB``) adds (device, property) to what it receives, the whole device when no property is
  named; a ``getProperties`` without a device opens everything, unless the client already named a
  device (as indiserver: chained servers would get too much). A client that never asked receives
  only device-less messages.
* BLOBs (``setBLOBVector`` only): ``enableBLOB`` ``Never`` (the default), ``Also`` or ``Only``,
  at any time. Property-level sets that property; device-level sets the device's default and
  overrides every earlier property-level setting of that device. A BLOB goes out if its
  property's setting, else its device's, is not ``Never``; with ``Only`` for a device nothing but
  its BLOBs goes out.
  Where indiserver differs from the protocol, this follows the protocol: indiserver applies a
  device-level ``enableBLOB`` to the client as a whole (every device), here it applies to the
  device named.
* A new connection (a client reconnecting) starts from nothing: no interest, BLOBs ``Never``.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET

logger = logging.getLogger("devices.simulators")

BLOB_POLICIES = ("Never", "Also", "Only")


class ClientRouting:
    """What one client connection receives (replaces indipyserver's ``SendChecker``)."""

    def __init__(self) -> None:
        self.all_devices = False
        self.interest: set[tuple[str, str]] = set()  # (device, property); "" = every property
        self.device_blob: dict[str, str] = {}
        self.property_blob: dict[tuple[str, str], str] = {}

    # -- what the client said ---------------------------------------------------------------------

    def client_sent(self, element: ET.Element) -> None:
        """Note what a message from the client asks for (call for every message it sends)."""
        device = element.get("device") or ""
        name = element.get("name") or ""
        if device:
            if not self.interested(device, name):
                self.interest.add((device, name))
        elif element.tag == "getProperties" and not self.interest:
            self.all_devices = True
        if element.tag == "enableBLOB" and device:
            self.enable_blob(device, name, (element.text or "").strip())

    def enable_blob(self, device: str, name: str, policy: str) -> None:
        if policy not in BLOB_POLICIES:
            return
        if name:
            self.property_blob[(device, name)] = policy
        else:
            self.device_blob[device] = policy
            for key in self.property_blob:
                if key[0] == device:
                    self.property_blob[key] = policy

    # indipyserver's SendChecker interface: its reader calls setpermissions() for enableBLOB
    def setpermissions(self, element: ET.Element) -> None:
        self.client_sent(element)

    # -- what the client gets ---------------------------------------------------------------------

    def interested(self, device: str, name: str) -> bool:
        if self.all_devices or not device:
            return True
        return (device, "") in self.interest or (device, name) in self.interest

    def blob_policy(self, device: str, name: str) -> str:
        return self.property_blob.get((device, name), self.device_blob.get(device, "Never"))

    def allowed(self, element: ET.Element) -> bool:
        """True if this message from a driver (or another client) goes to this client."""
        if element.tag == "getProperties":
            return False  # a driver snooping: for chained servers only, as indiserver
        device = element.get("device") or ""
        name = element.get("name") or ""
        if not self.interested(device, name):
            return False
        if element.tag == "setBLOBVector":
            return self.blob_policy(device, name) != "Never"
        return not device or self.device_blob.get(device) != "Only"


def patch_indipyserver() -> None:
    """Patch indipyserver 0.0.6 in this process (idempotent): the EOF-aware client reader and
    :class:`ClientRouting` for every new client connection."""
    from indipyserver import ipyserver

    if getattr(ipyserver._ClientConnection, "_pyros_patched", False):
        return

    async def _client_rx(self) -> None:
        parser = ET.XMLPullParser(events=("start", "end"))
        parser.feed(b"<root>")
        depth = 0
        root_elem = None
        for ev, el in parser.read_events():
            if ev == "start":
                depth += 1
                root_elem = el
        while self.connected:
            data = await self.reader.read(65536)
            if not data:
                raise ConnectionError("client closed the connection")  # the missing EOF check
            try:
                parser.feed(data)
            except ET.ParseError:
                logger.warning("client %s sent malformed XML: dropping the connection", self.con_id)
                raise ConnectionError("malformed XML from client") from None
            for event, element in parser.read_events():
                if event == "start":
                    depth += 1
                elif event == "end":
                    depth -= 1
                    if depth == 1:
                        if element.tag in self.TAGS:
                            self.sendchecker.client_sent(element)
                            if element.tag == "getProperties" and element.get("version") != "1.7":
                                # indipydriver ignores any other version; indiserver's drivers answer
                                element.set("version", "1.7")
                            if element.tag != "enableBLOB":  # for the server, not the drivers
                                await self.xml_data_que.put((self.con_id, element))
                        if root_elem is not None:
                            root_elem.remove(element)

    ipyserver._ClientConnection._client_rx = _client_rx
    ipyserver.SendChecker = ClientRouting  # handle_data() makes one per connection
    ipyserver._ClientConnection._pyros_patched = True
