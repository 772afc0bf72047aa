from __future__ import annotations

from rest_framework import serializers

from pyrosapp.models import Alert, AlertEvent


class NoticeSerializer(serializers.ModelSerializer):
    received = serializers.DateTimeField(source="received_at")

    class Meta:
        model = Alert
        fields = ["ivorn", "role", "packet_type", "received"]


class NoticeDetailSerializer(serializers.ModelSerializer):
    received = serializers.DateTimeField(source="received_at")

    class Meta:
        model = Alert
        fields = ["id", "ivorn", "role", "mission", "notice_type", "packet_type", "trigger_id", "received",
                  "event_time", "ra_deg", "dec_deg", "error_deg", "position_usable", "status", "status_reason",
                  "decision", "params", "citations", "flags"]


class AlertEventSerializer(serializers.ModelSerializer):
    burst_time = serializers.DateTimeField()
    request = serializers.PrimaryKeyRelatedField(read_only=True)
    notices = NoticeSerializer(many=True, read_only=True)

    class Meta:
        model = AlertEvent
        fields = ["id", "name", "missions", "trigger_ids", "burst_time", "ra_deg", "dec_deg", "error_deg", "status",
                  "request", "notices"]


class AlertEventDetailSerializer(AlertEventSerializer):
    notices = NoticeDetailSerializer(many=True, read_only=True)

    class Meta(AlertEventSerializer.Meta):
        fields = [*AlertEventSerializer.Meta.fields, "status_reason", "is_test", "pointed_ra_deg", "pointed_dec_deg",
                  "created", "updated"]
