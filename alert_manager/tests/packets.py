"""Small generated VOEvent packets for the cases the real corpus does not cover (tests only)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from xml.sax.saxutils import escape, quoteattr

from alert_manager.voevent import parse_voevent

CORPUS_README = "the real corpus lives in ../shared/data/voevents (see its README)"


def make_packet(
    ivorn: str,
    *,
    role: str = "observation",
    version: str = "2.0",
    params: Mapping[str, str] | None = None,
    groups: Mapping[str, Mapping[str, str]] | None = None,
    time_utc: datetime | None = None,
    ra_deg: float | None = None,
    dec_deg: float | None = None,
    error_deg: float | None = None,
    citations: Iterable[tuple[str, str]] = (),
) -> bytes:
    def param_xml(items: Mapping[str, str]) -> str:
        return "".join(f"<Param name={quoteattr(k)} value={quoteattr(v)}/>" for k, v in items.items())

    what = param_xml(params or {})
    for name, members in (groups or {}).items():
        what += f"<Group name={quoteattr(name)}>{param_xml(members)}</Group>"
    where = ""
    if time_utc is not None or ra_deg is not None:
        time_xml = (
            f"<Time unit='s'><TimeInstant><ISOTime>{time_utc:%Y-%m-%dT%H:%M:%S.%f}</ISOTime></TimeInstant></Time>"
            if time_utc is not None
            else ""
        )
        pos_xml = ""
        if ra_deg is not None:
            pos_xml = (
                f"<Position2D unit='deg'><Name1>RA</Name1><Name2>Dec</Name2><Value2><C1>{ra_deg}</C1>"
                f"<C2>{dec_deg}</C2></Value2><Error2Radius>{error_deg}</Error2Radius></Position2D>"
            )
        where = (
            "<WhereWhen><ObsDataLocation><ObservatoryLocation id='GEOLUN'/><ObservationLocation>"
            "<AstroCoordSystem id='UTC-ICRS-GEO'/><AstroCoords coord_system_id='UTC-ICRS-GEO'>"
            f"{time_xml}{pos_xml}</AstroCoords></ObservationLocation></ObsDataLocation></WhereWhen>"
        )
    cites = ""
    if citations:
        cites = (
            "<Citations>"
            + "".join(f"<EventIVORN cite={quoteattr(c)}>{escape(i)}</EventIVORN>" for i, c in citations)
            + "</Citations>"
        )
    return (
        "<?xml version='1.0' encoding='UTF-8'?>\n"
        f"<voe:VOEvent xmlns:voe='http://www.ivoa.net/xml/VOEvent/v{version}' ivorn={quoteattr(ivorn)} "
        f"role={quoteattr(role)} version={quoteattr(version)}>"
        "<Who><AuthorIVORN>ivo://pyros/tests</AuthorIVORN><Date>2026-03-01T00:00:00</Date></Who>"
        f"<What>{what}</What>{where}{cites}</voe:VOEvent>"
    ).encode()


def parsed(raw: bytes):  # noqa: ANN201 - ParsedNotice
    return parse_voevent(raw)
