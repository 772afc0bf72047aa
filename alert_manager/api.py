"""REST API of alerts (read-only): GET /api/alerts/, /api/alerts/<id>/, /api/alerts/in-progress/."""

from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.exceptions import NotFound
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from alert_manager import selectors
from alert_manager.serializers import AlertEventDetailSerializer, AlertEventSerializer
from user_manager.roles import IsValidatedUser

MAX_LIMIT = 500


class AlertEventListView(APIView):
    permission_classes = [IsAuthenticated, IsValidatedUser]

    @extend_schema(summary="Alert events, newest first, with their notices",
                   parameters=[OpenApiParameter("include_tests", bool, description="include role=test events"),
                               OpenApiParameter("limit", int, description=f"at most this many (default 100, max {MAX_LIMIT})")],
                   responses=AlertEventSerializer(many=True))
    def get(self, request):
        include_tests = request.query_params.get("include_tests", "").lower() in ("1", "true", "yes")
        try:
            limit = max(1, min(MAX_LIMIT, int(request.query_params.get("limit", 100))))
        except ValueError:
            limit = 100
        events = selectors.alert_event_list(include_tests=include_tests)[:limit]
        return Response(AlertEventSerializer(events, many=True).data)


class AlertEventDetailView(APIView):
    permission_classes = [IsAuthenticated, IsValidatedUser]

    @extend_schema(summary="One alert event with its notices (parsed params included)",
                   responses=AlertEventDetailSerializer)
    def get(self, request, pk: int):
        event = selectors.alert_event_get(event_id=pk)
        if event is None:
            raise NotFound("no such alert event")
        return Response(AlertEventDetailSerializer(event).data)


class AlertInProgressView(APIView):
    permission_classes = [IsAuthenticated, IsValidatedUser]

    @extend_schema(summary="The burst being followed now (JSON null if none)",
                   responses={200: {"allOf": [{"$ref": "#/components/schemas/AlertEvent"}], "nullable": True}})
    def get(self, request):
        event = selectors.alert_in_progress()
        if event is None:
            # DRF renders None as an empty body without a Content-Type: say null in JSON instead.
            return HttpResponse(b"null", content_type="application/json")
        return Response(AlertEventSerializer(event).data)
