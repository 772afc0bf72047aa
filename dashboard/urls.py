from django.urls import path

from dashboard import views

app_name = "dashboard"

urlpatterns = [
    path("", views.home, name="home"),
    path("dashboard/alert-banner/", views.alert_banner, name="alert_banner"),
    path("dashboard/my-requests/", views.my_requests, name="my_requests"),
    path("dashboard/timeline.json", views.timeline_data, name="timeline_data"),
]
