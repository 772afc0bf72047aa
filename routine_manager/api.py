"""REST API of requests (DRF; token or session auth). Thin: parse, call one service/selector, answer."""

from __future__ import annotations

from django.db.models import Prefetch
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from pyrosapp.models import Album, Request
from routine_manager.builder import RequestInvalid
from routine_manager.request_json import builder_from_api_data
from user_manager.roles import IsValidatedUser

from . import lifecycle, selectors, services
from .importers import ImportInvalid, batch_from_list, parse_batch
from .serializers import (
    CancelSerializer,
    ImportErrorSerializer,
    RequestInSerializer,
    RequestOutSerializer,
    ValidationErrorSerializer,
    ValidationOkSerializer,
    request_to_api,
)

TREE = ("sequences", Prefetch("sequences__albums", queryset=Album.objects.select_related("detector")),
        "sequences__albums__plans__filter")


INVALID = "The request is not valid: see errors."


def _flag(value) -> bool:
    return value is True or str(value).strip().lower() in {"1", "true", "yes", "on"}


def _invalid(errors: dict[str, list[str]]) -> Response:
    return Response({"detail": INVALID, "valid": False, "errors": errors}, status=status.HTTP_400_BAD_REQUEST)


def _split_draft(data):
    """The request JSON without the 'draft' flag, and the flag."""
    if isinstance(data, dict):
        data = dict(data)
        return data, _flag(data.pop("draft", False))
    return data, False


class RequestPagination(LimitOffsetPagination):
    default_limit = 50
    max_limit = 500


class RequestListCreateApi(APIView):
    permission_classes = [IsValidatedUser]

    @extend_schema(
        operation_id="requests_list",
        summary="List requests",
        description="Own requests and those of the user's programs; operators and administrators see all.",
        parameters=[OpenApiParameter("status", str), OpenApiParameter("q", str, description="name or target"),
                    OpenApiParameter("program", int), OpenApiParameter("mine", bool),
                    OpenApiParameter("limit", int), OpenApiParameter("offset", int)],
        responses=inline_serializer("PaginatedRequestOutList", {
            "count": serializers.IntegerField(), "next": serializers.URLField(allow_null=True),
            "previous": serializers.URLField(allow_null=True), "results": RequestOutSerializer(many=True)}))
    def get(self, request):
        program = request.query_params.get("program", "")
        queryset = selectors.request_list(
            user=request.user, status=request.query_params.get("status", "").strip(),
            program_id=int(program) if program.isdigit() and len(program) < 16 else None, search=request.query_params.get("q", "").strip(),
            mine_only=_flag(request.query_params.get("mine", ""))).prefetch_related(*TREE)
        paginator = RequestPagination()
        page = paginator.paginate_queryset(queryset, request, view=self)
        return paginator.get_paginated_response([request_to_api(r) for r in page])

    @extend_schema(summary="Create a request",
                   description='Validated and submitted, unless "draft": true (then only its structure is checked).',
                   request=RequestInSerializer, responses={201: RequestOutSerializer, 400: ValidationErrorSerializer})
    def post(self, request):
        data, draft = _split_draft(request.data)
        builder = builder_from_api_data(data, owner=request.user)
        try:
            created = builder.save(submit=not draft)
        except RequestInvalid as exc:
            return _invalid(exc.errors)
        created = Request.objects.prefetch_related(*TREE).get(pk=created.pk)
        return Response(request_to_api(created), status=status.HTTP_201_CREATED)


class RequestValidateApi(APIView):
    permission_classes = [IsValidatedUser]

    @extend_schema(summary="Validate a request (dry run)", request=RequestInSerializer,
                   responses={200: ValidationOkSerializer, 400: ValidationErrorSerializer})
    def post(self, request):
        data, _draft = _split_draft(request.data)
        report = builder_from_api_data(data, owner=request.user).validate()
        if not report.valid:
            return Response({"detail": INVALID, **report.to_dict()}, status=status.HTTP_400_BAD_REQUEST)
        return Response(report.to_dict())


class RequestDetailApi(APIView):
    permission_classes = [IsValidatedUser]

    @extend_schema(summary="A request with its sequences, albums and plans", responses=RequestOutSerializer)
    def get(self, request, pk: int):
        found = selectors.request_visible_to(user=request.user).filter(pk=pk).prefetch_related(*TREE).first()
        if found is None:
            return Response({"detail": "No such request."}, status=status.HTTP_404_NOT_FOUND)
        return Response(request_to_api(found))


def _changeable(request, pk: int) -> tuple[Request | None, Response | None]:
    found = selectors.request_get(user=request.user, request_id=pk)
    if found is None:
        return None, Response({"detail": "No such request."}, status=status.HTTP_404_NOT_FOUND)
    if not selectors.request_may_change(user=request.user, request=found):
        return None, Response({"detail": "Only the owner, the program's PI or an operator may change this request."},
                              status=status.HTTP_403_FORBIDDEN)
    return found, None


class RequestCancelApi(APIView):
    permission_classes = [IsValidatedUser]

    @extend_schema(summary="Cancel a request", description="Refunds unused reserved time to the program.",
                   request=CancelSerializer, responses={200: RequestOutSerializer, 409: OpenApiTypes.OBJECT})
    def post(self, request, pk: int):
        found, refusal = _changeable(request, pk)
        if refusal:
            return refusal
        reason = request.data.get("reason", "") if isinstance(request.data, dict) else ""
        try:
            services.request_cancel(request=found, reason=str(reason or f"cancelled by {request.user.email}"))
        except lifecycle.InvalidStateChange as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(request_to_api(Request.objects.prefetch_related(*TREE).get(pk=pk)))


class RequestSubmitApi(APIView):
    permission_classes = [IsValidatedUser]

    @extend_schema(summary="Submit a draft", request=None,
                   responses={200: RequestOutSerializer, 400: ValidationErrorSerializer, 409: OpenApiTypes.OBJECT})
    def post(self, request, pk: int):
        found, refusal = _changeable(request, pk)
        if refusal:
            return refusal
        try:
            services.request_submit(request=found)
        except RequestInvalid as exc:
            return _invalid(exc.errors)
        except lifecycle.InvalidStateChange as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(request_to_api(Request.objects.prefetch_related(*TREE).get(pk=pk)))


class RequestImportApi(APIView):
    permission_classes = [IsValidatedUser]
    parser_classes = [MultiPartParser, FormParser, JSONParser]

    @extend_schema(
        summary="Batch import (all or nothing)",
        description="A multipart upload `file` (JSON list of requests in the POST /api/requests/ format, or CSV: "
                    "see the import page for the columns), or a JSON body that is that list. `draft=true` keeps "
                    "them drafts. 400 lists every error with its row (CSV) or request number (JSON).",
        request={"multipart/form-data": inline_serializer("ImportUpload", {"file": serializers.FileField(),
                                                                           "draft": serializers.BooleanField()}),
                 "application/json": RequestInSerializer(many=True)},
        parameters=[OpenApiParameter("draft", bool)],
        responses={201: inline_serializer("Imported", {"imported": serializers.IntegerField(),
                                                       "ids": serializers.ListField(child=serializers.IntegerField())}),
                   400: ImportErrorSerializer})
    def post(self, request):
        draft = _flag(request.query_params.get("draft", "")) or _flag(request.data.get("draft", "")
                                                                        if hasattr(request.data, "get") else "")
        try:
            upload = request.FILES.get("file")
            if upload is not None:
                batch = parse_batch(content=upload.read(), filename=upload.name or "",
                                    content_type=upload.content_type or "")
            elif isinstance(request.data, list):
                batch = batch_from_list(request.data)
            else:
                return Response({"detail": "Nothing to import.", "imported": 0,
                                 "errors": [{"location": "request", "field": "file",
                                             "message": "Upload a file, or send a JSON list."}]},
                                status=status.HTTP_400_BAD_REQUEST)
            created = services.requests_import(owner=request.user, batch=batch, submit=not draft)
        except ImportInvalid as exc:
            return Response({"detail": "Nothing was imported: see errors.", "imported": 0, "errors": exc.errors},
                            status=status.HTTP_400_BAD_REQUEST)
        return Response({"imported": len(created), "ids": [r.pk for r in created]}, status=status.HTTP_201_CREATED)
