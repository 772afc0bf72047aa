"""REST paths of the scheduler, included under /api/ by pyros/api_urls.py (no namespace: "scheduler" is the
namespace of the web pages)."""

from django.urls import path

from scheduler import views

urlpatterns = [
    path("schedule/current/", views.ScheduleCurrentAPIView.as_view(), name="api-schedule-current"),
]
