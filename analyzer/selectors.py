"""Reads of the analyzer, for its own pages and for the pages of other apps (request, alert event, dashboard).

Light curves are computed on read from the stored analysis results of an event's images: an alert
image's analysis has nothing else to update, and a re-analysed image is reflected at once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Count, Q, QuerySet

from analyzer import reports
from analyzer.afterglow import match_candidates_across_images
from pyrosapp.models import AlertEvent, AnalysisResult, CalibrationMaster, Image
from user_manager.roles import OPERATOR, has_role


def _with_analysis(images: QuerySet[Image]) -> QuerySet[Image]:
    return images.select_related("analysis", "detector", "sequence__request")


def images_visible_to(user) -> QuerySet[Image]:
    """Operators (and administrators) see every image, calibration frames included; an astronomer the
    images of their own requests."""
    images = _with_analysis(Image.objects.all())
    if has_role(user, OPERATOR):
        return images
    return images.filter(sequence__request__owner=user)


def image_list(*, user, frame_type: str = "", filter_name: str = "", request_id: int | None = None,
               status: str = "") -> QuerySet[Image]:
    """The images a user may see, newest first, filtered. ``status="none"`` means not analysed yet."""
    images = images_visible_to(user)
    if frame_type:
        images = images.filter(frame_type=frame_type)
    if filter_name:
        images = images.filter(filter_name__iexact=filter_name)
    if request_id is not None:
        images = images.filter(sequence__request_id=request_id)
    if status == "none":
        images = images.filter(analysis__isnull=True)
    elif status:
        images = images.filter(analysis__status=status)
    return images.order_by("-date_obs", "-pk")


def image_get(*, user, image_id: int) -> Image | None:
    """One image, or None when it does not exist or the user may not see it (the page says 404 for both,
    so nobody learns which ids exist)."""
    return images_visible_to(user).filter(pk=image_id).first()


def image_filter_names() -> list[str]:
    return sorted(set(Image.objects.exclude(filter_name="").values_list("filter_name", flat=True)))


def images_for_request(request_id: int) -> QuerySet[Image]:
    """The images of one request with their analysis, in the order they were taken."""
    return _with_analysis(Image.objects.filter(sequence__request_id=request_id)).order_by("date_obs", "pk")


def images_for_sequence(sequence_id: int) -> QuerySet[Image]:
    """The images of one sequence with their analysis, in the order they were taken."""
    return _with_analysis(Image.objects.filter(sequence_id=sequence_id)).order_by("date_obs", "pk")


def images_for_event(event: AlertEvent) -> QuerySet[Image]:
    """The images of every request made for an alert event."""
    return _with_analysis(Image.objects.filter(sequence__request__alert_event=event)).order_by("date_obs", "pk")


def calibration_master_list() -> QuerySet[CalibrationMaster]:
    return CalibrationMaster.objects.select_related("detector").order_by("-created")


def masters_used_by(analysis: AnalysisResult | None) -> list[dict[str, Any]]:
    """The masters an analysis applied (from its provenance), with the row when it still exists."""
    if analysis is None:
        return []
    used = list((analysis.results or {}).get("calibrated_with") or [])
    rows = CalibrationMaster.objects.in_bulk([m["id"] for m in used if m.get("id") is not None])
    return [{**m, "row": rows.get(m.get("id"))} for m in used]


# --------------------------------------------------------------------------------------------
# Afterglow of an alert event
# --------------------------------------------------------------------------------------------


def _event_results(event: AlertEvent) -> list[dict[str, Any]]:
    # Only the keys the matching reads: a stored result also lists up to 200 sources, and an event page
    # that refreshes every minute must not parse megabytes of JSON each time.
    rows = (AnalysisResult.objects.filter(image__sequence__request__alert_event=event,
                                          status=AnalysisResult.Status.OK)
            .order_by("image__date_obs")
            .values("image_id", "candidates", "limiting_mag", "results__mid_time_utc", "results__field"))
    return [{"image_id": row["image_id"], "candidates": row["candidates"], "limiting_mag": row["limiting_mag"],
             "mid_time_utc": row["results__mid_time_utc"], "field": row["results__field"]} for row in rows]


def _event_tracks(event: AlertEvent) -> tuple[list[dict[str, Any]], int]:
    results = _event_results(event)
    return match_candidates_across_images(results, t0_utc=event.burst_time), len(results)


def _seconds_since(t0: datetime | None, iso_time: str) -> float | None:
    if t0 is None:
        return None
    return round((datetime.fromisoformat(iso_time) - t0).total_seconds(), 3)


def event_light_curve(event: AlertEvent) -> dict[str, Any]:
    """The light curve of the best afterglow candidate of an event.

    ``{"has_track", "n_images", "n_tracks", "track": {ra_deg, dec_deg, n_detections, ...} | None,
    "points": [{t_s, mag, mag_err, time_utc, image_id}], "upper_limits": [{t_s, limiting_mag, time_utc,
    image_id}], "decay_index", "decay_index_err", "fading", "burst_time"}``; times in seconds since the burst.
    """
    tracks, n_images = _event_tracks(event)
    curve: dict[str, Any] = {
        "has_track": False, "n_images": n_images, "n_tracks": len(tracks), "track": None, "points": [],
        "upper_limits": [], "decay_index": None, "decay_index_err": None, "fading": None, "mag_at_1000s": None,
        "burst_time": event.burst_time.isoformat() if event.burst_time else None,
    }
    if not tracks:
        return curve
    best = tracks[0]
    t0 = event.burst_time
    points = [
        {"t_s": _seconds_since(t0, d["time_utc"]), "mag": d["mag"], "mag_err": d["mag_err"],
         "time_utc": d["time_utc"], "image_id": d["image_id"]}
        for d in best["detections"]
    ]
    # Only points after the burst go on a log-time axis; without a burst time there is no light curve.
    points = [p for p in points if p["t_s"] is not None and p["t_s"] > 0]
    limits = [
        {"t_s": _seconds_since(t0, u["time_utc"]), "limiting_mag": u["limiting_mag"], "time_utc": u["time_utc"],
         "image_id": u["image_id"]}
        for u in best.get("upper_limits") or []
        if u.get("limiting_mag") is not None
    ]
    limits = [u for u in limits if u["t_s"] is not None and u["t_s"] > 0]
    fit = best.get("light_curve") or {}
    curve.update(
        has_track=bool(points), track=_track_summary(best), points=points, upper_limits=limits,
        decay_index=fit.get("decay_index"), decay_index_err=fit.get("decay_index_err"), fading=fit.get("fading"),
        mag_at_1000s=fit.get("mag_at_1000s"),
    )
    return curve


def event_candidates(event: AlertEvent) -> list[dict[str, Any]]:
    """The afterglow candidates of an event, one per sky position, best first."""
    tracks, _ = _event_tracks(event)
    return [_track_summary(track) for track in tracks]


def _track_summary(track: dict[str, Any]) -> dict[str, Any]:
    detections = track["detections"]
    fit = track.get("light_curve") or {}
    last = detections[-1]
    return {
        "rank": track["rank"],
        "ra_deg": track["ra_deg"],
        "dec_deg": track["dec_deg"],
        "error_arcsec": track.get("error_arcsec"),
        "n_detections": track["n_detections"],
        "n_upper_limits": len(track.get("upper_limits") or []),
        "best_snr": track["best_snr"],
        "first_seen_utc": track["first_seen_utc"],
        "last_seen_utc": track["last_seen_utc"],
        "last_mag": last["mag"],
        "last_mag_err": last["mag_err"],
        "kind": last.get("kind"),
        "decay_index": fit.get("decay_index"),
        "decay_index_err": fit.get("decay_index_err"),
        "fading": fit.get("fading"),
        "score": track["score"],
        "image_ids": [d["image_id"] for d in detections],
    }


# --------------------------------------------------------------------------------------------
# What the team sends out: photometry table, finding chart, GCN circular draft
# --------------------------------------------------------------------------------------------


def event_report(event: AlertEvent) -> reports.EventReport:
    """The event's photometry rows (every analysed image: the best candidate's AB magnitude, or the
    5-sigma AB upper limit), its best candidate, the telescope and catalogue used."""
    rows = (AnalysisResult.objects.filter(image__sequence__request__alert_event=event,
                                          status=AnalysisResult.Status.OK)
            .order_by("image__date_obs")
            .values("image_id", "candidates", "limiting_mag", "results__mid_time_utc", "results__field",
                    "results__limiting_mag_ab", "results__catalog", "image__filter_name", "image__exposure_s",
                    "image__detector__telescope__name", "image__detector__telescope__site__name"))
    rows = [row for row in rows if row["results__mid_time_utc"]]
    images = [{"image_id": r["image_id"], "candidates": r["candidates"], "limiting_mag": r["limiting_mag"],
               "limiting_mag_ab": r["results__limiting_mag_ab"], "mid_time_utc": r["results__mid_time_utc"],
               "field": r["results__field"], "filter": r["image__filter_name"], "exposure_s": r["image__exposure_s"]}
              for r in rows]
    tracks = match_candidates_across_images(images, t0_utc=event.burst_time)
    best = tracks[0] if tracks else None
    candidate = None
    if best is not None:
        fit = best.get("light_curve") or {}
        candidate = {"ra_deg": best["ra_deg"], "dec_deg": best["dec_deg"], "error_arcsec": best["error_arcsec"],
                     "decay_index": fit.get("decay_index"), "decay_index_err": fit.get("decay_index_err"),
                     "fading": fit.get("fading"), "burst_ra_deg": event.ra_deg, "burst_dec_deg": event.dec_deg,
                     "image_ids": [d["image_id"] for d in best["detections"]],
                     "best_image_id": max(best["detections"], key=lambda d: d.get("snr") or 0.0)["image_id"]}
        # mag_ab of each detection, from the candidate stored with the image
        by_image = {i["image_id"]: i for i in images}
        for detection in best["detections"]:
            stored = next((c for c in by_image[detection["image_id"]]["candidates"]
                           if abs(c["ra_deg"] - detection["ra_deg"]) < 1e-9 and abs(c["dec_deg"] - detection["dec_deg"])
                           < 1e-9), {})
            detection["mag_ab"] = stored.get("mag_ab")
    catalog = next((r["results__catalog"] for r in reversed(rows) if r["results__catalog"]), None) or {}
    first = rows[0] if rows else {}
    return reports.EventReport(
        event_name=event.name, trigger_time_utc=event.burst_time, burst_ra_deg=event.ra_deg,
        burst_dec_deg=event.dec_deg, burst_error_deg=event.error_deg, missions=list(event.missions or []),
        telescope=first.get("image__detector__telescope__name") or "PyROS telescope",
        site=first.get("image__detector__telescope__site__name") or "", catalog_name=catalog.get("name"),
        rows=reports.photometry_rows(images, best, event.burst_time), candidate=candidate,
    )


def event_finding_chart_png(event: AlertEvent, report: reports.EventReport | None = None) -> bytes | None:
    """The finding chart of the event: the image where the candidate is the most significant (else the
    first analysed image) around the candidate (else the alert position); None without a solved image."""
    import warnings

    from astropy.wcs import WCS, FITSFixedWarning

    from analyzer.calibration import AnalysisError, load_fits
    from analyzer.services import ImageFileError, data_path

    report = report or event_report(event)
    if not report.rows:
        return None
    image_id = report.candidate["best_image_id"] if report.candidate else report.rows[0]["image_id"]
    image = Image.objects.select_related("analysis").filter(pk=image_id).first()
    if image is None:
        return None
    solved = ((image.analysis.results or {}).get("wcs_header") if hasattr(image, "analysis") else None)
    try:
        data, header = load_fits(data_path(image.file_path))
    except (AnalysisError, ImageFileError):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        from astropy.io import fits

        wcs = WCS(fits.Header(solved) if solved else header, naxis=2)
    if not wcs.has_celestial:
        return None
    if report.candidate:
        ra, dec = report.candidate["ra_deg"], report.candidate["dec_deg"]
    elif report.burst_ra_deg is not None:
        ra, dec = report.burst_ra_deg, report.burst_dec_deg
    else:
        return None
    row = next((r for r in report.rows if r["image_id"] == image_id), None)
    try:
        return reports.finding_chart_png(data, wcs, centre_ra_deg=ra, centre_dec_deg=dec, candidate=report.candidate,
                                         error_radius_deg=report.burst_error_deg,
                                         title=reports.chart_title(report, row))
    except ValueError:
        return None


# --------------------------------------------------------------------------------------------
# Dashboard
# --------------------------------------------------------------------------------------------


def analysis_queue_status() -> dict[str, int]:
    """Counts for the dashboard: images waiting for their analysis (no result yet, or pending), running,
    failed, and done. Calibration frames do not wait for an analysis."""
    counts = AnalysisResult.objects.aggregate(
        pending=Count("pk", filter=Q(status=AnalysisResult.Status.PENDING)),
        running=Count("pk", filter=Q(status=AnalysisResult.Status.RUNNING)),
        failed=Count("pk", filter=Q(status=AnalysisResult.Status.FAILED)),
        ok=Count("pk", filter=Q(status=AnalysisResult.Status.OK)),
    )
    not_started = Image.objects.filter(analysis__isnull=True, frame_type=Image.FrameType.LIGHT).count()
    return {"pending": counts["pending"] + not_started, "running": counts["running"], "failed": counts["failed"],
            "ok": counts["ok"]}


def image_header_cards(image: Image) -> list[tuple[str, str]]:
    """The FITS header of an image as (keyword, value) pairs: the copy stored with the row, or else read
    from the file (a missing or corrupt file gives what could be read, possibly nothing)."""
    if image.header:
        return [(str(key), str(value)) for key, value in image.header.items()]
    import warnings

    from astropy.io import fits

    from analyzer.services import ImageFileError, data_path

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            header = fits.getheader(data_path(image.file_path))
    except (OSError, ValueError, TypeError, ImageFileError, IndexError):
        return []
    return [(card.keyword, str(card.value)) for card in header.cards if card.keyword not in ("", "COMMENT", "HISTORY")]
