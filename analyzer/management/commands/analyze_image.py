"""``python manage.py analyze_image FILE [--json]``: the analysis pipeline on one FITS file.

The same code path as the analysis queue (``analyzer.pipeline``), without the database: it runs
with no calibration masters unless master FITS files are given, and says so in the output.
Exit status 0 when the analysis succeeded, 1 when it failed (the reason is printed).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from analyzer import catalogs
from analyzer.afterglow import BurstRegion
from analyzer.calibration import AnalysisError, MasterFrame, Masters
from analyzer.pipeline import analyze_image, analyze_image_with_quicklook
from devices.catalogs import CatalogError, catalog_from_spec


class Command(BaseCommand):
    help = "Calibrate and measure one FITS image (sources, seeing, WCS check, zero point, afterglow candidates)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("file", help="FITS file of a light frame")
        parser.add_argument("--json", action="store_true", help="print the full result as JSON")
        parser.add_argument("--bias", help="master bias FITS (as written by MasterFrame.to_fits_bytes)")
        parser.add_argument("--dark", help="master dark FITS")
        parser.add_argument("--flat", action="append", default=[], help="master flat FITS (repeatable)")
        parser.add_argument("--no-catalog", action="store_true", help="skip astrometry, zero point and candidates")
        parser.add_argument("--catalog", help="reference catalogue instead of the configured one (PYROS_CATALOG): "
                            "simulated, local:PATH or gaia:CACHE_DIR")
        parser.add_argument("--index-dir", help="astrometry.net index files for a blind solve "
                            "(default: PYROS_ASTROMETRY_INDEX_DIR)")
        parser.add_argument("--burst-ra", type=float, help="burst error region centre RA (deg)")
        parser.add_argument("--burst-dec", type=float, help="burst error region centre Dec (deg)")
        parser.add_argument("--burst-error", type=float, help="burst error radius (deg)")
        parser.add_argument("--burst-t0", help="burst trigger time, ISO 8601 UTC")
        parser.add_argument("--png", help="also write a zscale quick-look PNG to this path")

    def handle(self, *args: Any, **options: Any) -> None:
        masters = self._masters(options)
        burst = self._burst(options)
        catalog = None if options["no_catalog"] else self._catalog(options)
        index_dir = options["index_dir"] or catalogs.astrometry_index_dir() or None
        if options["png"]:
            result, png = analyze_image_with_quicklook(options["file"], masters=masters, catalog=catalog, burst=burst,
                                                       astrometry_index_dir=index_dir)
            if png is not None:
                Path(options["png"]).write_bytes(png)
        else:
            result = analyze_image(options["file"], masters=masters, catalog=catalog, burst=burst,
                                   astrometry_index_dir=index_dir)
        if masters is None:
            result["warnings"].append("pass --bias/--dark/--flat (master FITS files) to calibrate")
        if options["json"]:
            self.stdout.write(json.dumps(result, indent=2, sort_keys=False))
        else:
            self.stdout.write(self._summary(result))
        if result["status"] == "failed":
            raise SystemExit(1)

    @staticmethod
    def _catalog(options: dict[str, Any]):
        if not options["catalog"]:
            return catalogs.reference_catalog()
        try:
            return catalog_from_spec(options["catalog"])
        except CatalogError as exc:
            raise CommandError(str(exc)) from exc

    @staticmethod
    def _masters(options: dict[str, Any]) -> Masters | None:
        if not (options["bias"] or options["dark"] or options["flat"]):
            return None
        try:
            bias = MasterFrame.from_fits_bytes(Path(options["bias"]).read_bytes()) if options["bias"] else None
            dark = MasterFrame.from_fits_bytes(Path(options["dark"]).read_bytes()) if options["dark"] else None
            flats = {}
            for path in options["flat"]:
                flat = MasterFrame.from_fits_bytes(Path(path).read_bytes())
                flats[flat.filter_name or Path(path).stem] = flat
        except (OSError, KeyError, ValueError, AnalysisError) as exc:
            raise CommandError(f"cannot read a master: {exc}") from exc
        return Masters(bias=bias, dark=dark, flats=flats)

    @staticmethod
    def _burst(options: dict[str, Any]) -> BurstRegion | None:
        values = [options["burst_ra"], options["burst_dec"], options["burst_error"]]
        if all(v is None for v in values):
            return None
        if any(v is None for v in values):
            raise CommandError("--burst-ra, --burst-dec and --burst-error go together")
        t0 = None
        if options["burst_t0"]:
            t0 = datetime.fromisoformat(options["burst_t0"].rstrip("Z"))
            t0 = t0.replace(tzinfo=UTC) if t0.tzinfo is None else t0.astimezone(UTC)
        return BurstRegion(ra_deg=values[0], dec_deg=values[1], error_deg=values[2], t0_utc=t0)

    @staticmethod
    def _summary(result: dict[str, Any]) -> str:
        if result["status"] != "ok":
            return f"{result['status']}: {result['failure_reason']}"
        astrometry = result.get("astrometry") or {}
        if astrometry.get("method"):
            solved = (f"WCS solved by {astrometry['method']}: residual {astrometry['residual_arcsec']} arcsec on "
                      f"{astrometry['n_matched']} stars, distortion {astrometry['distortion'] or 'none'}")
        else:
            solved = f"WCS not solved: {astrometry.get('reason') or 'no reference catalogue'}"
        catalog = result.get("catalog") or {}
        lines = [
            f"status: ok  sources: {result['n_sources']}  matched: {result['n_matched']}",
            solved,
            f"catalogue: {catalog.get('name')} ({catalog.get('n_stars')} stars, band {catalog.get('band')})",
            f"background: {result['background_adu']} ADU  noise: {result['noise_adu']} ADU",
            f"seeing FWHM: {result['fwhm_arcsec']} arcsec  WCS offset: {result['wcs_offset_arcsec']} arcsec",
            f"zero point: {result['zero_point_mag']} +- {result['zero_point_err_mag']}  "
            f"limiting mag (5 sigma): {result['limiting_mag']} (AB {result['limiting_mag_ab']})",
            f"candidates: {result['n_candidates']}",
        ]
        for cand in result["candidates"][:10]:
            lines.append(
                f"  #{cand['rank']} ra={cand['ra_deg']:.6f} dec={cand['dec_deg']:.6f} +-{cand['error_arcsec']}\" "
                f"mag={cand['mag']:.2f}+-{cand['mag_err']:.2f} snr={cand['snr']} ({cand['reason']})"
            )
        lines += [f"warning: {w}" for w in result["warnings"]]
        return "\n".join(lines)
