from django.contrib import admin
from django.contrib.auth.decorators import login_not_required
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("user_manager.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", login_not_required(SpectacularSwaggerView.as_view(url_name="api-schema")), name="api-docs"),
    path("api/", include("pyros.api_urls")),
    path("schedule/", include("scheduler.urls")),
    path("requests/", include("routine_manager.urls")),
    path("operations/", include("majordome.urls")),
    path("images/", include("analyzer.urls")),
    path("monitoring/", include("monitoring.urls")),
    path("alerts/", include("alert_manager.urls")),
    path("procedures/", include("procedures.urls")),
    path("", include("dashboard.urls")),
]

# Error pages in the site's layout (JSON under /api/); with DEBUG on, common.error_pages.ErrorPageMiddleware.
handler400 = "common.error_pages.bad_request"
handler403 = "common.error_pages.permission_denied"
handler404 = "common.error_pages.page_not_found"
handler500 = "common.error_pages.server_error"
