"""Helpers for the database tests of the alert pipeline: generated GCN-like packets, sky positions."""

from __future__ import annotations

from datetime import datetime

from alert_manager.tests.packets import make_packet

# A winter night at OHP: the Sun is ~60 deg below the horizon at 23:00 UTC.
NIGHT = datetime.fromisoformat("2026-01-15T23:00:00+00:00")


def zenith_ra_dec(latitude_deg: float, longitude_deg: float, when: datetime) -> tuple[float, float]:
    """(RA, Dec) in degrees of the site's zenith at ``when`` (local apparent sidereal time, latitude)."""
    from sky.astro import to_time, u

    lst_deg = to_time(when).sidereal_time("apparent", longitude=longitude_deg * u.deg).deg
    return lst_deg % 360.0, latitude_deg


def swift_packet(notice: str, trig: int, serial: int, when: datetime, ra_deg: float, dec_deg: float, error_deg: float,
                 *, role: str = "observation", packet_type: int = 61, extra: dict[str, str] | None = None) -> bytes:
    """A Swift notice as GCN publishes it: ivo://nasa.gsfc.gcn/SWIFT#<notice>_<TrigID>-<serial>."""
    params = {"Packet_Type": str(packet_type), "TrigID": str(trig), **(extra or {})}
    return make_packet(f"ivo://nasa.gsfc.gcn/SWIFT#{notice}_{trig}-{serial}", role=role, params=params,
                       time_utc=when, ra_deg=ra_deg, dec_deg=dec_deg, error_deg=error_deg)


def svom_packet(burst_id: str, notice: str, packet_type: int, when: datetime, ra_deg: float | None = None,
                dec_deg: float | None = None, error_deg: float | None = None,
                citations: tuple[tuple[str, str], ...] = ()) -> bytes:
    return make_packet(f"ivo://org.svom/fsc#{burst_id}_{notice}", params={"Packet_Type": str(packet_type)},
                       groups={"Svom_Identifiers": {"Burst_Id": burst_id}}, time_utc=when, ra_deg=ra_deg,
                       dec_deg=dec_deg, error_deg=error_deg, citations=citations)
