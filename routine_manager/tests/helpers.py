"""A small real observatory for request tests: OHP, a camera with U B V R I Clear, a program with time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from pyrosapp.models import Allocation, Detector, Filter, FilterWheel, Period, ScientificProgram, Site, Telescope, User
from pyrosapp.tests.factories import UserFactory

# Mid-December at OHP: long nights; M51 (dec +47) rises high before dawn.
NOW = datetime(2026, 12, 16, 12, 0, tzinfo=UTC)
OHP = dict(latitude_deg=43.9317, longitude_deg=5.7122, elevation_m=650.0)


@dataclass
class Observatory:
    site: Site
    telescope: Telescope
    detector: Detector
    program: ScientificProgram
    allocation: Allocation
    astronomer: User


def make_observatory(*, allocated_s: float = 100 * 3600.0) -> Observatory:
    site = Site.objects.create(name="OHP", twilight_deg=-18.0, horizon_min_altitude_deg=15.0, **OHP)
    telescope = Telescope.objects.create(site=site, name="T1", slew_rate_deg_s=5.0, settle_s=3.0, acquisition_s=10.0)
    wheel = FilterWheel.objects.create(telescope=telescope, name="Wheel", change_time_s=2.0)
    for slot, name in enumerate(("U", "B", "V", "R", "I", "Clear"), start=1):
        Filter.objects.create(wheel=wheel, name=name, slot=slot)
    detector = Detector.objects.create(telescope=telescope, filter_wheel=wheel, name="PyROS Camera", readout_s=0.5)
    astronomer = UserFactory(email="ada@example.org")
    program = ScientificProgram.objects.create(name="Galaxies", pi=astronomer, min_sequence_priority=1,
                                               max_sequence_priority=8)
    program.members.add(astronomer)
    period = Period.objects.create(name="2026B", start=datetime(2026, 7, 1, tzinfo=UTC),
                                   end=datetime(2027, 1, 1, tzinfo=UTC))
    allocation = Allocation.objects.create(program=program, period=period, allocated_s=allocated_s)
    return Observatory(site, telescope, detector, program, allocation, astronomer)


def m51_data(program_id: int, **overrides) -> dict:
    """The issue's example request."""
    sequence = {
        "name": "M51", "target": {"name": "M51", "ra_deg": 202.4696, "dec_deg": 47.1952},
        "window": {"start": "2026-12-16T17:00:00Z", "end": "2026-12-20T06:00:00Z"}, "preferred_start": None,
        "priority": 5, "constraints": {"min_altitude_deg": 30, "max_airmass": None, "min_moon_separation_deg": 30},
        "albums": [{"detector": "PyROS Camera", "plans": [{"filter": "R", "exposure_s": 60, "count": 5}]}],
    }
    data = {"name": "M51 monitoring", "program": program_id, "sequences": [sequence]}
    data.update(overrides)
    return data
