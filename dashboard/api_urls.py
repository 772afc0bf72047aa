"""REST paths of the dashboard, included under /api/ by pyros/api_urls.py."""

from django.urls import path

from dashboard import api

urlpatterns = [
    path("dashboard/status/", api.DashboardStatusAPIView.as_view(), name="api-dashboard-status"),
    path("dashboard/weather/", api.DashboardWeatherAPIView.as_view(), name="api-dashboard-weather"),
    path("logs/", api.LogListAPIView.as_view(), name="api-logs"),
]
