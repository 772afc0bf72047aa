"""Target names to coordinates for the request editor (issue #16).

First PyROS's own list of bright named objects (``data/bright_objects.csv``: the Messier catalogue, bright NGC
objects and bright stars, J2000), which works offline and instantly; then, only when
``PYROS_NAME_RESOLVER_ONLINE`` is on and the network answers, CDS Sesame (SIMBAD, NED, VizieR) with a short
timeout. Tests never reach the network (the setting is off in them).
"""

from __future__ import annotations

import csv
import logging
import re
import urllib.parse
import urllib.request
from dataclasses import dataclass
from functools import cache
from pathlib import Path

log = logging.getLogger("pyros.routine_manager")

BRIGHT_OBJECTS_CSV = Path(__file__).with_name("data") / "bright_objects.csv"
SESAME_URL = "https://cds.unistra.fr/cgi-bin/nph-sesame/-ox/SNV?"
SESAME_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class ResolvedTarget:
    name: str
    ra_deg: float
    dec_deg: float
    source: str  # "PyROS list" or "Sesame"
    kind: str = ""


def name_key(name: str) -> str:
    """A name as compared: case, spaces, hyphens, underscores and leading zeros of catalogue numbers ignored
    ("messier 31", "M 031", "ngc-0224" -> "M31", "M31", "NGC224")."""
    key = re.sub(r"[\s_\-]+", "", name.strip().upper())
    key = re.sub(r"^MESSIER", "M", key)
    return re.sub(r"^(M|NGC|IC)0+(?=\d)", r"\1", key)


@cache
def _bright_objects() -> dict[str, ResolvedTarget]:
    table: dict[str, ResolvedTarget] = {}
    with BRIGHT_OBJECTS_CSV.open(newline="") as handle:
        for row in csv.DictReader(line for line in handle if not line.startswith("#")):
            target = ResolvedTarget(row["name"], float(row["ra_deg"]), float(row["dec_deg"]), "PyROS list",
                                    row["kind"])
            for name in [row["name"], *filter(None, row["aliases"].split(";"))]:
                table.setdefault(name_key(name), target)
    return table


def resolve_offline(name: str) -> ResolvedTarget | None:
    return _bright_objects().get(name_key(name))


def resolve_sesame(name: str, *, timeout_s: float = SESAME_TIMEOUT_S) -> ResolvedTarget | None:
    """CDS Sesame's XML answer (``<jradeg>``, ``<jdedeg>``); None when unknown or unreachable."""
    url = SESAME_URL + urllib.parse.quote(name.strip())
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as answer:  # noqa: S310 - fixed https URL
            text = answer.read(200_000).decode("utf-8", "replace")
    except OSError as exc:
        log.info("Sesame not reached for %r: %s", name, exc)
        return None
    ra, dec = re.search(r"<jradeg>([-+\d.eE]+)</jradeg>", text), re.search(r"<jdedeg>([-+\d.eE]+)</jdedeg>", text)
    if not (ra and dec):
        return None
    return ResolvedTarget(name.strip(), float(ra.group(1)), float(dec.group(1)), "Sesame")


def resolve_target(name: str, *, online: bool) -> ResolvedTarget | None:
    if not name.strip():
        return None
    return resolve_offline(name) or (resolve_sesame(name) if online else None)
