from django.urls import path

from . import views

app_name = "routine_manager"

urlpatterns = [
    path("", views.request_list, name="request_list"),
    path("new/", views.request_edit, name="request_create"),
    path("import/", views.request_import, name="request_import"),
    path("resolve/", views.target_resolve, name="target_resolve"),
    path("altitude-preview/", views.target_altitude_preview, name="target_altitude_preview"),
    path("<int:pk>/", views.request_detail, name="request_detail"),
    path("<int:pk>/edit/", views.request_edit, name="request_edit"),
    path("<int:pk>/live/", views.request_live, name="request_live"),
    path("<int:pk>/submit/", views.request_submit, name="request_submit"),
    path("<int:pk>/cancel/", views.request_cancel, name="request_cancel"),
    path("<int:pk>/clone/", views.request_clone, name="request_clone"),
]
