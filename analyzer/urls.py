"""Web pages of the analyzer, under /images/ (included by pyros/urls.py)."""

from django.urls import path

from analyzer import views

app_name = "analyzer"

urlpatterns = [
    path("", views.image_list, name="image_list"),
    path("<int:pk>/", views.image_detail, name="image_detail"),
    path("<int:pk>/quicklook.png", views.image_quicklook, name="image_quicklook"),
    path("<int:pk>/fits/", views.image_fits, name="image_fits"),
    path("<int:pk>/reanalyse/", views.image_reanalyse, name="image_reanalyse"),
    path("masters/", views.master_list, name="master_list"),
    path("masters/<int:pk>/fits/", views.master_fits, name="master_fits"),
    path("events/<int:event_id>/afterglow/", views.event_afterglow, name="event_afterglow"),
    path("events/<int:event_id>/report/", views.event_report, name="event_report"),
    path("events/<int:event_id>/photometry.<str:fmt>", views.event_photometry, name="event_photometry"),
    path("events/<int:event_id>/finding-chart.png", views.event_finding_chart, name="event_finding_chart"),
]
