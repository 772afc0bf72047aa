"""Check routine_manager/data/bright_objects.csv (the request editor's offline name list) against independent
catalogues: stars against PyEphem's bright-star list (``ephem.stars``, Hipparcos-based, J2000), Messier and NGC
objects against OpenNGC (the ``pyongc`` package's bundled database). Neither is a PyROS dependency: run it from
a separate virtual environment (nothing is downloaded at run time)::

    python3 -m venv /tmp/catalogue-venv && /tmp/catalogue-venv/bin/pip install ephem pyongc
    /tmp/catalogue-venv/bin/python scripts/check_bright_objects.py            # report; exit 1 if a row is off
    /tmp/catalogue-venv/bin/python scripts/check_bright_objects.py --fix      # and rewrite the rows that are off

A row is "off" when it is farther from the reference than the tolerance of its kind (stars 2", galaxies,
globular clusters and planetary nebulae 60", nebulae, open clusters and star clouds 6'), or than a quarter of
the object's size in OpenNGC if that is more (the centre of a large object is a convention). Extended objects
that are off are only listed unless ``--fix-extended`` is given, for a person to judge. Rows without an offline
reference (stars missing from ephem's list, objects absent from OpenNGC) are listed as not checked.
"""

from __future__ import annotations

import argparse
import csv
import math
import re
import sys
from pathlib import Path

CSV = Path(__file__).resolve().parents[1] / "routine_manager" / "data" / "bright_objects.csv"
STAR_TOLERANCE_ARCSEC = 2.0
OBJECT_TOLERANCE_ARCSEC = 60.0
# Extended objects whose catalogue "position" is a matter of convention (a nebula's, a star cloud's or a large
# open cluster's centre differ by a few arcminutes between catalogues).
EXTENDED = {"nebula", "star cloud", "asterism", "open cluster"}
EXTENDED_TOLERANCE_ARCSEC = 360.0
SIZE_FRACTION = 0.25


def separation_arcsec(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    ra1, dec1, ra2, dec2 = map(math.radians, (ra1, dec1, ra2, dec2))
    # Vincenty's formula: well-conditioned at every separation.
    d_ra = ra2 - ra1
    num = math.hypot(math.cos(dec2) * math.sin(d_ra),
                     math.cos(dec1) * math.sin(dec2) - math.sin(dec1) * math.cos(dec2) * math.cos(d_ra))
    den = math.sin(dec1) * math.sin(dec2) + math.cos(dec1) * math.cos(dec2) * math.cos(d_ra)
    return math.degrees(math.atan2(num, den)) * 3600.0


def star_reference(names: list[str]):
    import ephem
    import ephem.stars

    known = {line.split(",")[0].lower(): line.split(",")[0] for line in ephem.stars.db.splitlines() if line}
    for name in names:
        if name.lower() in known:
            star = ephem.star(known[name.lower()])
            return f"ephem.stars {known[name.lower()]}", math.degrees(star._ra), math.degrees(star._dec), 0.0
    return None


def ngc_references(names: list[str]) -> list[tuple[str, float, float, float]]:
    """OpenNGC's position (and major axis, arcmin) for each of ``names`` that is a Messier, NGC or IC designation
    it knows."""
    from pyongc import ongc

    found = []
    for name in names:
        compact = re.sub(r"\s+", "", name)
        if not re.fullmatch(r"(?i)(M|NGC|IC)\d+[A-Z]?", compact):
            continue
        try:
            dso = ongc.get(compact)
            (h, m, s), (d, am, asec) = dso.coords
        except Exception:  # noqa: BLE001 - unknown to OpenNGC, or without coordinates there
            continue
        sign = -1.0 if str(dso.dec).strip().startswith("-") else 1.0
        size = (dso.dimensions or (None,))[0] or 0.0
        found.append((f"OpenNGC {dso.name} (as {name})", (h + m / 60 + s / 3600) * 15.0,
                      sign * (abs(d) + am / 60 + asec / 3600), float(size)))
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fix", action="store_true", help="rewrite compact objects and stars that are off")
    parser.add_argument("--fix-extended", action="store_true", help="also rewrite extended objects that are off")
    parser.add_argument("--csv", type=Path, default=CSV)
    args = parser.parse_args()

    lines = args.csv.read_text(encoding="utf-8").splitlines(keepends=True)
    header_at = next(i for i, line in enumerate(lines) if line.startswith("name,"))
    rows = list(csv.DictReader(lines[header_at:]))
    checked = off = fixed = 0
    unchecked: list[str] = []
    report: list[str] = []
    notes: list[str] = []
    separations: dict[str, list[float]] = {}
    new_lines = lines[: header_at + 1]
    for row, line in zip(rows, lines[header_at + 1:], strict=True):
        names = [row["name"], *[a for a in (row["aliases"] or "").split(";") if a]]
        ra, dec = float(row["ra_deg"]), float(row["dec_deg"])
        star = row["kind"] == "star"
        if star:
            found = star_reference(names)
            references = [found] if found else []
        else:
            references = ngc_references(names)
        if not references:
            unchecked.append(row["name"])
            new_lines.append(line)
            continue
        checked += 1
        # A designation the row gives that OpenNGC places elsewhere (M102 is NGC 5866 for some, a duplicate of
        # M101 for others): said, and the row is judged against the designation it agrees with best.
        by_distance = sorted((separation_arcsec(ra, dec, r_ra, r_dec), source, r_ra, r_dec, size)
                             for source, r_ra, r_dec, size in references)
        sep, source, ref_ra, ref_dec, size_arcmin = by_distance[0]
        # The centre of a large object is a convention: anywhere within a quarter of its size is the object.
        tolerance = max(STAR_TOLERANCE_ARCSEC if star else
                        EXTENDED_TOLERANCE_ARCSEC if row["kind"] in EXTENDED else OBJECT_TOLERANCE_ARCSEC,
                        SIZE_FRACTION * size_arcmin * 60.0)
        for far, other, _, _, _ in by_distance[1:]:
            if far > tolerance:
                notes.append(f"NOTE  {row['name']:<14} {other} is {far / 60:.1f}' away: another identification")
        separations.setdefault("stars" if star else "other", []).append(sep)
        if sep <= tolerance:
            new_lines.append(line)
            continue
        off += 1
        extended = row["kind"] in EXTENDED
        will_fix = args.fix and (not extended or args.fix_extended)
        report.append(f"{'FIXED' if will_fix else 'OFF  '} {row['name']:<14} {row['kind']:<18} {sep:9.1f}\" from "
                      f"{source} (CSV {ra:.5f} {dec:+.5f}, reference {ref_ra:.5f} {ref_dec:+.5f})")
        if will_fix:
            fixed += 1
            row = {**row, "ra_deg": f"{ref_ra % 360:.5f}", "dec_deg": f"{ref_dec:+.5f}"}
            new_lines.append(",".join(row[k] for k in ("name", "ra_deg", "dec_deg", "kind", "aliases")) + "\n")
        else:
            new_lines.append(line)
    print("\n".join(notes + report))
    for group, values in sorted(separations.items()):
        values.sort()
        print(f"{group}: {len(values)} checked, separation median {values[len(values) // 2]:.1f}\", "
              f"max {values[-1]:.1f}\"")
    print(f"{len(rows)} rows: {checked} checked ({off} off: stars > {STAR_TOLERANCE_ARCSEC:g}\", compact objects "
          f"> {OBJECT_TOLERANCE_ARCSEC:g}\", extended ones > {EXTENDED_TOLERANCE_ARCSEC:g}\"), {fixed} fixed, "
          f"{len(unchecked)} without an offline reference: {', '.join(unchecked)}")
    if fixed:
        args.csv.write_text("".join(new_lines), encoding="utf-8")
    return 1 if off - fixed else 0


if __name__ == "__main__":
    sys.exit(main())
