"""JSON shape of the schedule API (ISO 8601 UTC strings, ending in Z)."""

from __future__ import annotations

from datetime import UTC, datetime

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from pyrosapp.models import Schedule
from scheduler import selectors


def _utc(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


class ScheduleEntrySerializer(serializers.Serializer):
    sequence = serializers.IntegerField(source="sequence_id")
    request = serializers.IntegerField(source="sequence.request_id")
    tsp = serializers.SerializerMethodField()
    tep = serializers.SerializerMethodField()

    @extend_schema_field(serializers.DateTimeField())
    def get_tsp(self, entry) -> str:
        return _utc(entry.tsp)

    @extend_schema_field(serializers.DateTimeField())
    def get_tep(self, entry) -> str:
        return _utc(entry.tep)


class ScheduleRejectionSerializer(serializers.Serializer):
    """A sequence not in the plan: ``reason`` in words, and the same as ``code`` and ``values`` (see
    scheduler/reasons.py for the codes; null and {} for plans made before codes were recorded)."""

    sequence = serializers.IntegerField(source="sequence_id")
    reason = serializers.CharField(source="rejection_reason")
    code = serializers.SerializerMethodField()
    values = serializers.SerializerMethodField()

    def _stored(self, entry) -> dict:
        return self.context.get("reasons", {}).get(str(entry.sequence_id)) or {}

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_code(self, entry) -> str | None:
        return self._stored(entry).get("code")

    @extend_schema_field(serializers.DictField())
    def get_values(self, entry) -> dict:
        return self._stored(entry).get("values") or {}


class ScheduleCurrentSerializer(serializers.Serializer):
    """``{"id", "created", "plan_start", "plan_end", "entries": [...], "rejected": [...]}`` exactly."""

    id = serializers.IntegerField()
    created = serializers.SerializerMethodField()
    plan_start = serializers.SerializerMethodField()
    plan_end = serializers.SerializerMethodField()
    entries = serializers.SerializerMethodField()
    rejected = serializers.SerializerMethodField()

    @extend_schema_field(serializers.DateTimeField())
    def get_created(self, schedule: Schedule) -> str:
        return _utc(schedule.created)

    @extend_schema_field(serializers.DateTimeField())
    def get_plan_start(self, schedule: Schedule) -> str:
        return _utc(schedule.plan_start)

    @extend_schema_field(serializers.DateTimeField())
    def get_plan_end(self, schedule: Schedule) -> str:
        return _utc(schedule.plan_end)

    @extend_schema_field(ScheduleEntrySerializer(many=True))
    def get_entries(self, schedule: Schedule) -> list[dict]:
        return ScheduleEntrySerializer(selectors.schedule_planned_entries(schedule), many=True).data

    @extend_schema_field(ScheduleRejectionSerializer(many=True))
    def get_rejected(self, schedule: Schedule) -> list[dict]:
        rejected = schedule.entries.filter(status="rejected").order_by("sequence_id")
        reasons = (schedule.metrics or {}).get("reasons") or {}
        return ScheduleRejectionSerializer(rejected, many=True, context={"reasons": reasons}).data
