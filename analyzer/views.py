"""Pages of the analyzer (images, image detail, masters, an event's afterglow panel), its protected files
(quick-look PNG, FITS) and its REST API. Thin: selectors read, services write.

Image files are never public static files: every download goes through a view that checks the user may
see the image (astronomers their own requests' images, operators all) and answers 404 otherwise.
"""

from __future__ import annotations

import logging
from pathlib import Path

from django import forms
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import generics, serializers
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.reverse import reverse as api_reverse

from analyzer import reports, selectors, services
from pyrosapp.models import AlertEvent, AnalysisResult, CalibrationMaster, Image
from user_manager.roles import ASTRONOMER, OPERATOR, IsValidatedUser, has_role, role_required

log = logging.getLogger("pyros.analyzer")

IMAGES_PER_PAGE = 50


class ImageFilterForm(forms.Form):
    frame_type = forms.ChoiceField(required=False, choices=[("", "Any frame type"), *Image.FrameType.choices])
    filter_name = forms.ChoiceField(required=False, label="Filter")
    request = forms.IntegerField(required=False, min_value=1, label="Request id")
    status = forms.ChoiceField(required=False, label="Analysis",
                               choices=[("", "Any analysis status"), ("none", "Not analysed yet"),
                                        *AnalysisResult.Status.choices])

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["filter_name"].choices = [("", "Any filter")] + [(f, f) for f in selectors.image_filter_names()]


def _visible_image_or_404(request: HttpRequest, pk: int) -> Image:
    image = selectors.image_get(user=request.user, image_id=pk)
    if image is None:
        raise Http404("No such image.")
    return image


def _stored_file_or_404(relative_path: str) -> Path:
    try:
        path = services.data_path(relative_path)
    except services.ImageFileError as exc:
        raise Http404("File not available.") from exc
    if not path.is_file():
        raise Http404("File not available.")
    return path


@require_GET
@role_required(ASTRONOMER)
def image_list(request: HttpRequest) -> HttpResponse:
    form = ImageFilterForm(request.GET or None)
    filters = form.cleaned_data if form.is_valid() else {}
    images = selectors.image_list(
        user=request.user, frame_type=filters.get("frame_type", ""), filter_name=filters.get("filter_name", ""),
        request_id=filters.get("request"), status=filters.get("status", ""))
    page = Paginator(images, IMAGES_PER_PAGE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(request, "analyzer/image_list.html", {
        "form": form, "page": page, "images": page.object_list, "query": query.urlencode(),
        "is_operator": has_role(request.user, OPERATOR),
    })


@require_GET
@role_required(ASTRONOMER)
def image_detail(request: HttpRequest, pk: int) -> HttpResponse:
    image = _visible_image_or_404(request, pk)
    analysis = AnalysisResult.objects.filter(image=image).first()
    return render(request, "analyzer/image_detail.html", {
        "image": image,
        "analysis": analysis,
        "results": (analysis.results or {}) if analysis else {},
        "masters_used": selectors.masters_used_by(analysis),
        "header_cards": selectors.image_header_cards(image),
        "can_reanalyse": has_role(request.user, OPERATOR) and image.frame_type == Image.FrameType.LIGHT,
    })


@require_GET
@role_required(ASTRONOMER)
def image_quicklook(request: HttpRequest, pk: int) -> FileResponse:
    image = _visible_image_or_404(request, pk)
    analysis = AnalysisResult.objects.filter(image=image).first()
    if analysis is None or not analysis.quicklook_path:
        raise Http404("No quick-look for this image.")
    response = FileResponse(_stored_file_or_404(analysis.quicklook_path).open("rb"), content_type="image/png")
    response["Cache-Control"] = "private, max-age=60"
    return response


@require_GET
@role_required(ASTRONOMER)
def image_fits(request: HttpRequest, pk: int) -> FileResponse:
    image = _visible_image_or_404(request, pk)
    path = _stored_file_or_404(image.file_path)
    response = FileResponse(path.open("rb"), as_attachment=True, filename=path.name,
                            content_type="application/fits")
    response["Cache-Control"] = "private"
    return response


@require_POST
@role_required(OPERATOR)
def image_reanalyse(request: HttpRequest, pk: int) -> HttpResponse:
    image = get_object_or_404(Image, pk=pk)
    services.image_analysis_request(image_id=image.pk)
    messages.success(request, f"Image {image.pk} queued for analysis: reload the page in a few seconds.")
    return redirect("analyzer:image_detail", pk=image.pk)


@require_GET
@role_required(ASTRONOMER)
def master_list(request: HttpRequest) -> HttpResponse:
    page = Paginator(selectors.calibration_master_list(), IMAGES_PER_PAGE).get_page(request.GET.get("page"))
    return render(request, "analyzer/master_list.html", {"page": page,
                                                         "is_operator": has_role(request.user, OPERATOR)})


@require_GET
@role_required(OPERATOR)
def master_fits(request: HttpRequest, pk: int) -> FileResponse:
    master = get_object_or_404(CalibrationMaster, pk=pk)
    path = _stored_file_or_404(master.file_path)
    return FileResponse(path.open("rb"), as_attachment=True, filename=path.name, content_type="application/fits")


@require_GET
@role_required(ASTRONOMER)
def event_afterglow(request: HttpRequest, event_id: int) -> HttpResponse:
    """The afterglow panel of an alert event (light curve + candidates), loaded by htmx into the event page."""
    event = get_object_or_404(AlertEvent, pk=event_id)
    return render(request, "analyzer/_light_curve_body.html", {
        "event": event,
        "light_curve": selectors.event_light_curve(event),
        "candidates": selectors.event_candidates(event),
    })


@require_GET
@role_required(ASTRONOMER)
def event_report(request: HttpRequest, event_id: int) -> HttpResponse:
    """What the team sends out for an event: photometry (table, downloads), the finding chart and an
    editable GCN Circular draft to copy. Nothing is sent from here."""
    event = get_object_or_404(AlertEvent, pk=event_id)
    report = selectors.event_report(event)
    return render(request, "analyzer/event_report.html", {
        "event": event, "report": report, "circular": reports.circular_draft(report),
    })


@require_GET
@role_required(ASTRONOMER)
def event_photometry(request: HttpRequest, event_id: int, fmt: str) -> HttpResponse:
    event = get_object_or_404(AlertEvent, pk=event_id)
    table = reports.photometry_table(selectors.event_report(event))
    content_type = "text/csv" if fmt == "csv" else "text/plain; charset=utf-8"
    response = HttpResponse(reports.table_bytes(table, fmt), content_type=content_type)
    slug = "".join(ch if ch.isalnum() else "_" for ch in event.name).strip("_") or f"event_{event.pk}"
    response["Content-Disposition"] = f'attachment; filename="{slug}_photometry.{fmt}"'
    return response


@require_GET
@role_required(ASTRONOMER)
def event_finding_chart(request: HttpRequest, event_id: int) -> HttpResponse:
    event = get_object_or_404(AlertEvent, pk=event_id)
    png = selectors.event_finding_chart_png(event)
    if png is None:
        raise Http404("No solved image of this event to draw a finding chart from.")
    response = HttpResponse(png, content_type="image/png")
    response["Cache-Control"] = "private, max-age=60"
    return response


# --------------------------------------------------------------------------------------------
# REST API: GET /api/images/?request=<id>, GET /api/images/<id>/
# --------------------------------------------------------------------------------------------


class AnalysisSerializer(serializers.ModelSerializer):
    class Meta:
        model = AnalysisResult
        fields = ["status", "failure_reason", "n_sources", "fwhm_arcsec", "zero_point_mag", "limiting_mag",
                  "wcs_offset_arcsec", "candidates", "updated"]


class AnalysisDetailSerializer(AnalysisSerializer):
    quicklook_url = serializers.SerializerMethodField()

    class Meta(AnalysisSerializer.Meta):
        fields = [*AnalysisSerializer.Meta.fields, "results", "quicklook_url"]

    def get_quicklook_url(self, analysis: AnalysisResult) -> str | None:
        if not analysis.quicklook_path:
            return None
        return api_reverse("analyzer:image_quicklook", args=[analysis.image_id], request=self.context.get("request"))


class ImageSerializer(serializers.ModelSerializer):
    request = serializers.IntegerField(source="sequence.request_id", allow_null=True, read_only=True, default=None)
    detector = serializers.CharField(source="detector.name", read_only=True)
    fits_url = serializers.SerializerMethodField()
    analysis = serializers.SerializerMethodField()

    analysis_serializer = AnalysisSerializer

    class Meta:
        model = Image
        fields = ["id", "request", "sequence", "plan", "index_in_plan", "detector", "frame_type", "date_obs",
                  "exposure_s", "filter_name", "binning", "ra_deg", "dec_deg", "airmass", "file_path", "fits_url",
                  "analysis"]

    def get_fits_url(self, image: Image) -> str:
        return api_reverse("analyzer:image_fits", args=[image.pk], request=self.context.get("request"))

    def get_analysis(self, image: Image) -> dict | None:
        try:
            analysis = image.analysis
        except AnalysisResult.DoesNotExist:
            return None
        return self.analysis_serializer(analysis, context=self.context).data


class ImageDetailSerializer(ImageSerializer):
    """One image with its full analysis result (sources, calibration provenance, timings)."""

    analysis_serializer = AnalysisDetailSerializer


class ImagePagination(PageNumberPagination):
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 500


@extend_schema_view(get=extend_schema(parameters=[
    OpenApiParameter("request", int, description="Only the images of this request (id)")]))
class ImageListAPIView(generics.ListAPIView):
    """Images the caller may see (astronomers: their own requests'; operators: all), newest first.
    ``?request=<id>`` keeps one request's images."""

    serializer_class = ImageSerializer
    permission_classes = [IsValidatedUser]
    pagination_class = ImagePagination

    def get_queryset(self):
        raw = self.request.query_params.get("request")
        request_id = None
        if raw not in (None, ""):
            try:
                request_id = int(raw)
            except ValueError as exc:
                raise ValidationError({"request": "must be a request id (an integer)"}) from exc
        return selectors.image_list(user=self.request.user, request_id=request_id)


class ImageDetailAPIView(generics.RetrieveAPIView):
    serializer_class = ImageDetailSerializer
    permission_classes = [IsValidatedUser]

    def get_queryset(self):
        return selectors.images_visible_to(self.request.user)
