"""REST paths of the analyzer, included under /api/ by pyros/api_urls.py (no namespace: "analyzer" is the
namespace of the web pages)."""

from django.urls import path

from analyzer import views

urlpatterns = [
    path("images/", views.ImageListAPIView.as_view(), name="api-image-list"),
    path("images/<int:pk>/", views.ImageDetailAPIView.as_view(), name="api-image-detail"),
]
