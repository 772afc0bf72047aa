from django.urls import path

from . import api

urlpatterns = [
    path("requests/", api.RequestListCreateApi.as_view(), name="api-request-list"),
    path("requests/validate/", api.RequestValidateApi.as_view(), name="api-request-validate"),
    path("requests/import/", api.RequestImportApi.as_view(), name="api-request-import"),
    path("requests/<int:pk>/", api.RequestDetailApi.as_view(), name="api-request-detail"),
    path("requests/<int:pk>/cancel/", api.RequestCancelApi.as_view(), name="api-request-cancel"),
    path("requests/<int:pk>/submit/", api.RequestSubmitApi.as_view(), name="api-request-submit"),
]
