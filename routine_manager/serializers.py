"""The request JSON of the REST API.

Input is read by :func:`routine_manager.request_json.builder_from_api_data` (one validation for the
forms, the API and the importers); the serializers below describe the same shapes for the OpenAPI
schema, and :func:`request_to_api` writes the output.
"""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from pyrosapp.models import Request
from routine_manager.coordinates import format_utc


def _utc(value) -> str | None:
    return format_utc(value) if value else None


def request_to_api(request: Request) -> dict[str, Any]:
    """A request as the API returns it: the input fields plus ids, statuses, times and plan progress."""
    sequences = []
    for seq in request.sequences.all():
        sequences.append({
            "id": seq.pk,
            "name": seq.name,
            "status": seq.status,
            "status_reason": seq.status_reason,
            "target": {"name": seq.target_name, "ra_deg": seq.ra_deg, "dec_deg": seq.dec_deg},
            "window": {"start": _utc(seq.window_start), "end": _utc(seq.window_end)},
            "preferred_start": _utc(seq.preferred_start),
            "tolerance_early_s": seq.tolerance_early_s,
            "tolerance_late_s": seq.tolerance_late_s,
            "priority": seq.priority,
            "constraints": {"min_altitude_deg": seq.min_altitude_deg, "max_airmass": seq.max_airmass,
                            "min_moon_separation_deg": seq.min_moon_separation_deg},
            "duration_s": seq.estimated_duration_s,
            "used_s": seq.used_s,
            "planned_start": _utc(seq.planned_start),
            "planned_end": _utc(seq.planned_end),
            "albums": [{"detector": album.detector.name,
                        "plans": [{"filter": plan.filter.name, "exposure_s": plan.exposure_s, "count": plan.count,
                                   "binning": plan.binning, "status": plan.status, "images_done": plan.images_done}
                                  for plan in album.plans.all()]}
                       for album in seq.albums.all()],
        })
    return {
        "id": request.pk,
        "name": request.name,
        "program": request.program_id,
        "program_name": request.program.name,
        "owner": request.owner.email,
        "status": request.status,
        "status_reason": request.status_reason,
        "is_alert": request.is_alert,
        "estimated_duration_s": request.estimated_duration_s,
        "reserved_s": request.reserved_s,
        "used_s": request.used_s,
        "created": _utc(request.created),
        "submitted_at": _utc(request.submitted_at),
        "sequences": sequences,
    }


# --- Shapes for the OpenAPI schema --------------------------------------------------------------
class TargetSerializer(serializers.Serializer):
    name = serializers.CharField()
    ra_deg = serializers.FloatField(help_text="J2000 degrees [0, 360); text in sexagesimal hours '13:29:52.7' is accepted")
    dec_deg = serializers.FloatField(help_text="J2000 degrees [-90, 90]; text '+47:11:43' is accepted")


class WindowSerializer(serializers.Serializer):
    start = serializers.DateTimeField(help_text="ISO 8601 with a time zone, e.g. 2026-12-16T17:00:00Z")
    end = serializers.DateTimeField()


class ConstraintsSerializer(serializers.Serializer):
    min_altitude_deg = serializers.FloatField(allow_null=True, required=False)
    max_airmass = serializers.FloatField(allow_null=True, required=False)
    min_moon_separation_deg = serializers.FloatField(allow_null=True, required=False)


class PlanSerializer(serializers.Serializer):
    filter = serializers.CharField(help_text="A filter of the detector's filter wheel")
    exposure_s = serializers.FloatField()
    count = serializers.IntegerField()
    binning = serializers.IntegerField(default=1, required=False)


class AlbumSerializer(serializers.Serializer):
    detector = serializers.CharField(help_text="Detector name")
    plans = PlanSerializer(many=True)


class SequenceSerializer(serializers.Serializer):
    name = serializers.CharField(required=False, help_text="Defaults to the target name")
    target = TargetSerializer()
    window = WindowSerializer()
    preferred_start = serializers.DateTimeField(allow_null=True, required=False)
    tolerance_early_s = serializers.FloatField(required=False, default=0)
    tolerance_late_s = serializers.FloatField(required=False, default=0)
    priority = serializers.IntegerField(default=5, help_text="1..10 (10 most important), within the program's range")
    constraints = ConstraintsSerializer(required=False)
    albums = AlbumSerializer(many=True)


class RequestInSerializer(serializers.Serializer):
    name = serializers.CharField()
    program = serializers.IntegerField(help_text="Program id")
    draft = serializers.BooleanField(required=False, default=False,
                                     help_text="true keeps it a draft; otherwise it is validated and submitted")
    sequences = SequenceSerializer(many=True)


class PlanOutSerializer(PlanSerializer):
    status = serializers.CharField()
    images_done = serializers.IntegerField()


class AlbumOutSerializer(serializers.Serializer):
    detector = serializers.CharField()
    plans = PlanOutSerializer(many=True)


class SequenceOutSerializer(SequenceSerializer):
    id = serializers.IntegerField()
    status = serializers.CharField()
    status_reason = serializers.CharField()
    duration_s = serializers.FloatField()
    used_s = serializers.FloatField()
    planned_start = serializers.DateTimeField(allow_null=True)
    planned_end = serializers.DateTimeField(allow_null=True)
    albums = AlbumOutSerializer(many=True)


class RequestOutSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    program = serializers.IntegerField()
    program_name = serializers.CharField()
    owner = serializers.EmailField()
    status = serializers.ChoiceField(choices=Request.Status.choices)
    status_reason = serializers.CharField()
    is_alert = serializers.BooleanField()
    estimated_duration_s = serializers.FloatField()
    reserved_s = serializers.FloatField()
    used_s = serializers.FloatField()
    created = serializers.DateTimeField()
    submitted_at = serializers.DateTimeField(allow_null=True)
    sequences = SequenceOutSerializer(many=True)


class SequenceReportSerializer(serializers.Serializer):
    duration_s = serializers.FloatField()
    observable_windows = serializers.ListField(child=serializers.ListField(child=serializers.DateTimeField()),
                                               help_text="[[start, end], ...]: the whole sequence fits anywhere inside")


class ValidationOkSerializer(serializers.Serializer):
    valid = serializers.BooleanField()
    duration_s = serializers.FloatField()
    sequences = SequenceReportSerializer(many=True)


class ValidationErrorSerializer(serializers.Serializer):
    """A 400 of the request endpoints: ``detail`` always; ``valid`` and ``errors`` when the body was a
    request that does not validate (a body that is not JSON has ``detail`` only, as every API error)."""

    detail = serializers.CharField()
    valid = serializers.BooleanField(required=False)
    errors = serializers.DictField(child=serializers.ListField(child=serializers.CharField()), required=False,
                                   help_text='Messages by field path, e.g. "sequences[0].window.start"')


class ImportErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()
    imported = serializers.IntegerField(required=False)
    errors = serializers.ListField(child=serializers.DictField(child=serializers.CharField()), required=False,
                                   help_text='[{"location": "row 3", "field": "exposure_s", "message": "..."}]')


class CancelSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True)
