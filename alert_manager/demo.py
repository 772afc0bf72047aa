"""Demo strategies, seeded by ``pyros.demo.seed_demo`` (idempotent)."""

from __future__ import annotations

from alert_manager.strategies import default_template
from pyrosapp.models import Strategy

DEFAULT_STRATEGY_NAME = "GRB follow-up (default)"
TILING_STRATEGY_NAME = "Large localisations (tiling)"
# The alert types whose localisations are wide: LVK gravitational-wave sky maps (igwn.gwalert; mock and test
# superevents are test notices and never trigger), Swift BAT-GUANO maps and positions, Fermi GBM circles.
TILING_MISSIONS = ["LVK", "Swift", "Fermi"]
TILING_NOTICE_TYPES = ["EarlyWarning", "Preliminary", "Initial", "Update", "GUANO_Map", "GUANO_Pos",
                       "GBM_Flt_Pos", "GBM_Gnd_Pos", "GBM_Fin_Pos"]


def seed_strategies() -> list[Strategy]:
    """The default strategy (active): any mission, error <= 0.25 deg, 10 x 60 s in R at once for the first hour,
    then 5 x 120 s in R up to 6 h after the burst. Plus two inactive ones operators can switch on: a deeper
    variant, and the tiling of large localisations (LVK and GUANO sky maps, GBM circles: 10 tiles, 90 %)."""
    default, _ = Strategy.objects.get_or_create(name=DEFAULT_STRATEGY_NAME, defaults=dict(
        description="Any GRB with an error region that fits the field: immediate series, then a slower cadence.",
        missions=[], notice_types=[], triggers=True, max_error_deg=0.25, min_altitude_deg=20.0,
        template=default_template(), is_active=True,
    ))
    deep, _ = Strategy.objects.get_or_create(name="GRB deep follow-up", defaults=dict(
        description="Longer exposures for faint afterglows: 20 x 60 s in R, then 10 x 300 s in R up to 12 h.",
        missions=[], notice_types=[], triggers=True, max_error_deg=0.25, min_altitude_deg=25.0,
        template={"sequences": [
            {"name": "immediate", "after_burst_s": [0, 3600],
             "albums": [{"plans": [{"filter": "R", "exposure_s": 60, "count": 20}]}]},
            {"name": "deep", "after_burst_s": [3600, 12 * 3600],
             "albums": [{"plans": [{"filter": "R", "exposure_s": 300, "count": 10}]}]},
        ]},
        is_active=False,
    ))
    tiling, _ = Strategy.objects.get_or_create(name=TILING_STRATEGY_NAME, defaults=dict(
        description="Sky maps (LVK, Swift BAT-GUANO) and error circles wider than the camera's field (Fermi GBM): "
                    "up to 10 fields, most probable first, until 90 % of the probability is covered; 3 x 60 s in R "
                    "each, tonight. Inactive: switch it on in Alerts > Strategies.",
        missions=TILING_MISSIONS, notice_types=TILING_NOTICE_TYPES, triggers=True, max_error_deg=0.25,
        min_altitude_deg=25.0, tile_large_localisations=True, max_tiles=10, tile_coverage=0.9,
        template={"sequences": [
            {"name": "tile", "after_burst_s": [0, 24 * 3600],
             "albums": [{"plans": [{"filter": "R", "exposure_s": 60, "count": 3}]}]},
        ]},
        is_active=False,
    ))
    return [default, deep, tiling]
