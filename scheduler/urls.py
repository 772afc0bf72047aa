from django.urls import path

from scheduler import views

app_name = "scheduler"

urlpatterns = [
    path("", views.schedule_current_page, name="current"),
    path("history/", views.schedule_history_page, name="history"),
    path("live/", views.schedule_live, name="live"),
    path("<int:pk>/", views.schedule_detail_page, name="detail"),
    path("replan/", views.schedule_replan, name="replan"),
    path("simulate/", views.schedule_simulate_page, name="simulate"),
]
