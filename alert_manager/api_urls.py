from django.urls import path

from alert_manager import api

urlpatterns = [
    path("alerts/", api.AlertEventListView.as_view(), name="alerts-list"),
    path("alerts/in-progress/", api.AlertInProgressView.as_view(), name="alerts-in-progress"),
    path("alerts/<int:pk>/", api.AlertEventDetailView.as_view(), name="alerts-detail"),
]
