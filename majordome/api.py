from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from majordome import controls, selectors
from majordome.state_machine import InvalidStateChange
from user_manager.roles import IsOperator, IsValidatedUser


class StatusView(APIView):
    permission_classes = [IsAuthenticated, IsValidatedUser]

    @extend_schema(summary="Observatory status",
                   responses={200: OpenApiResponse(OpenApiTypes.OBJECT, description="status JSON"),
                              503: OpenApiResponse(description="no observatory configured")})
    def get(self, request):
        try:
            return Response(selectors.observatory_status())
        except selectors.ObservatoryNotConfigured as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_503_SERVICE_UNAVAILABLE)


class PauseSerializer(serializers.Serializer):
    when = serializers.ChoiceField(choices=["deferred", "immediate"], default="deferred",
                                   help_text="deferred: after the current plan; immediate: abort the exposure now")


class ControlView(APIView):
    """POST /api/observatory/<action>/ — operators and administrators only."""

    permission_classes = [IsAuthenticated, IsOperator]
    action_name = ""

    @extend_schema(request=PauseSerializer, responses={200: OpenApiResponse(OpenApiTypes.OBJECT,
                                                                             description="status JSON after the action"),
                                                       400: OpenApiResponse(description="bad input"),
                                                       403: OpenApiResponse(description="not an operator"),
                                                       409: OpenApiResponse(description="not allowed now"),
                                                       503: OpenApiResponse(description="no observatory configured")})
    def post(self, request):
        by = request.user.email
        try:
            if self.action_name == "pause":
                data = PauseSerializer(data=request.data)
                data.is_valid(raise_exception=True)
                controls.observatory_pause(when=data.validated_data["when"], by=by)
            elif self.action_name == "resume":
                controls.observatory_resume(by=by)
            elif self.action_name == "stop":
                controls.observatory_stop(by=by)
            elif self.action_name == "abort":
                aborted = controls.observatory_abort(by=by)
                if aborted is None:
                    return Response({"detail": "no sequence is executing"}, status=status.HTTP_409_CONFLICT)
            elif self.action_name == "close":
                controls.observatory_close(by=by)
            elif self.action_name == "calibrate":
                controls.observatory_calibrate(by=by)
        except InvalidStateChange as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        except selectors.ObservatoryNotConfigured as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_503_SERVICE_UNAVAILABLE)
        return Response(selectors.observatory_status())
