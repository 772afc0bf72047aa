"""The dashboard's live endpoints: cheap enough to be polled every second by every open page.

- GET /api/dashboard/status/?since_version=N: 204 (empty) while the observatory state's version is
  still N (one single-row read), else the status (the majordome's status dict plus the night bounds).
- GET /api/logs/?after_id=N&level=WARNING&component=majordome: new records only, newest first;
  `before_id` pages back into older records.
- GET /api/dashboard/weather/?hours=3: the weather history the sparkline draws.
"""

from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from dashboard import selectors
from majordome.selectors import ObservatoryNotConfigured, active_site, observatory_status
from monitoring.selectors import weather_history
from user_manager.roles import IsValidatedUser, is_operator


def _int_param(request, name: str) -> int | None:
    raw = request.query_params.get(name, "").strip()
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise ValidationError({name: f"must be an integer, got {raw!r}"}) from None


class _LiveAPIView(APIView):
    permission_classes = [IsAuthenticated, IsValidatedUser]
    # JSON only: the browsable renderer would make every poll render a template.
    renderer_classes = [JSONRenderer]


class DashboardStatusAPIView(_LiveAPIView):
    """The observatory status, or 204 No Content when its version has not moved since `since_version`."""

    @extend_schema(
        summary="Observatory status for live clients",
        parameters=[OpenApiParameter("since_version", int, description="the version the client already has")],
        responses={200: OpenApiResponse(OpenApiTypes.OBJECT, description="the status of /api/observatory/status/ "
                                        "plus the night's bounds"),
                   204: OpenApiResponse(description="unchanged since `since_version`")})
    def get(self, request, *args, **kwargs):
        since_version = _int_param(request, "since_version")
        if since_version is not None:
            version = selectors.observatory_version()
            if version is not None and version == since_version:
                response = HttpResponse(status=204)
                response["X-Pyros-Version"] = str(version)
                return response
        try:
            status = observatory_status()
            status["night"] = selectors.night_summary(site=active_site())
        except ObservatoryNotConfigured as exc:
            return Response({"detail": str(exc)}, status=503)
        response = Response(status)
        response["X-Pyros-Version"] = str(status["version"])
        return response


class LogListAPIView(_LiveAPIView):
    """Log records, newest first; `after_id` for the live tail, `before_id` for scroll-back."""

    @extend_schema(
        summary="Log records",
        parameters=[OpenApiParameter("after_id", int), OpenApiParameter("before_id", int),
                    OpenApiParameter("level", str, description="minimum level: DEBUG, INFO, WARNING, ERROR"),
                    OpenApiParameter("component", str), OpenApiParameter("limit", int)],
        responses={200: OpenApiResponse(OpenApiTypes.OBJECT, description='{"results": [...], "count": n}'),
                   400: OpenApiResponse(description="bad parameter")})
    def get(self, request, *args, **kwargs):
        try:
            min_level = selectors.log_level_number(request.query_params.get("level", "").strip())
        except ValueError as exc:
            raise ValidationError({"level": str(exc)}) from None
        limit = _int_param(request, "limit") or 100
        records = selectors.log_records(after_id=_int_param(request, "after_id"),
                                        before_id=_int_param(request, "before_id"), min_level=min_level,
                                        component=request.query_params.get("component", "").strip(), limit=limit,
                                        astronomer=None if is_operator(request.user) else request.user)
        return Response({"results": records, "count": len(records)})


class DashboardWeatherAPIView(_LiveAPIView):
    """Weather history for the dashboard's plots."""

    @extend_schema(summary="Weather history",
                   parameters=[OpenApiParameter("hours", float, description="how far back (default 3)")],
                   responses={200: OpenApiResponse(OpenApiTypes.OBJECT), 400: OpenApiResponse(description="bad hours")})
    def get(self, request, *args, **kwargs):
        raw = request.query_params.get("hours", "3")
        try:
            hours = float(raw)
        except ValueError:
            raise ValidationError({"hours": f"must be a number, got {raw!r}"}) from None
        return Response(weather_history(hours=hours, max_points=400))
