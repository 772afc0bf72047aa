"""Turn a recorded VOEvent into a fresh one for the "send a test packet" page: pure, no Django.

A real notice from the corpus is years old: its burst time is past every strategy window, Comet has
seen its bytes, and its trigger id is stored already. ``as_fresh_burst`` gives it a new IVORN, the
current time, a new trigger id and optionally a position, keeping everything else byte for byte
as the mission wrote it. The packet is read with the same guards as ``voevent.parse_voevent``.
"""

from __future__ import annotations

import time
from datetime import datetime

from lxml import etree

from alert_manager.voevent import VOEventRejected, parse_voevent

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
_TRIGGER_PARAMS = ("TrigID", "Burst_Id", "GraceID")


def _local(tag: object) -> str:
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""


def as_fresh_burst(raw: bytes, *, now: datetime, ra_deg: float | None = None, dec_deg: float | None = None) -> bytes:
    """A copy of ``raw`` that reads as a new burst happening ``now`` (optionally at ra/dec, degrees)."""
    parse_voevent(raw)  # same refusals as the pipeline (DOCTYPE, size, not a VOEvent): VOEventRejected
    root = etree.fromstring(raw, parser=_PARSER)
    stamp = f"{time.time_ns() // 1_000_000 % 10**9:09d}"
    iso = now.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-4]
    renamed: dict[str, str] = {}
    for element in root.iter():
        name = _local(element.tag)
        if name == "ISOTime" or (name == "Date" and _local(element.getparent().tag) == "Who"):
            element.text = iso
        elif name == "Param" and element.get("name") in _TRIGGER_PARAMS:
            old = (element.get("value") or "").strip()
            # Keep the mission's format: digits stay digits (Swift/Fermi), text gets a suffix (SVOM, LVK).
            new = renamed.setdefault(old, f"9{stamp}" if old.isdigit() else f"{old}p{stamp}")
            element.set("value", new)
        elif name == "Value2" and ra_deg is not None and dec_deg is not None:
            for child in element:
                if _local(child.tag) == "C1":
                    child.text = f"{ra_deg:.5f}"
                elif _local(child.tag) == "C2":
                    child.text = f"{dec_deg:.5f}"
    # The IVORN carries the trigger id in most streams (SWIFT#BAT_GRB_Pos_<TrigID>-<n>, svom#<Burst_Id>_<type>):
    # rename it there, so that the notice type read from the IVORN stays the mission's; else add a suffix.
    ivorn = root.get("ivorn") or ""
    head, sep, local_id = ivorn.partition("#")
    for old, new in renamed.items():
        if old and old in local_id:
            local_id = local_id.replace(old, new, 1)
            break
    else:
        local_id = f"{local_id}_pyros{stamp}" if local_id else f"pyros{stamp}"
    root.set("ivorn", f"{head}#{local_id}")
    out = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    notice = parse_voevent(out)
    if ra_deg is not None and not notice.position_usable:
        raise VOEventRejected("this packet has no position to move (pick a notice with a position)")
    return out
