from django.urls import path

from majordome import views

app_name = "majordome"

urlpatterns = [
    path("", views.operator, name="operator"),
    path("control/<str:action>/", views.control, name="control"),
]
