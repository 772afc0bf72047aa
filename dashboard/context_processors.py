from __future__ import annotations

from django.conf import settings
from django.urls import NoReverseMatch, reverse

from user_manager.roles import has_role

# (label, url name, role needed). Modules appear in the navigation once their pages exist.
NAVIGATION = [
    ("Dashboard", "dashboard:home", "astronomer"),
    ("Requests", "routine_manager:request_list", "astronomer"),
    ("Schedule", "scheduler:current", "astronomer"),
    ("Alerts", "alert_manager:event_list", "astronomer"),
    ("Images", "analyzer:image_list", "astronomer"),
    ("Operations", "majordome:operator", "operator"),
    ("Procedures", "procedures:queue", "astronomer"),
    ("Weather", "monitoring:weather", "operator"),
    ("API", "api-docs", "astronomer"),
    ("Backoffice", "admin:index", "administrator"),
]


def pyros(request):
    user = getattr(request, "user", None)
    items = []
    if user is not None and user.is_authenticated:
        for label, name, role in NAVIGATION:
            if not has_role(user, role):
                continue
            try:
                url = reverse(name)
            except NoReverseMatch:
                continue
            active = url != "/" and request.path.startswith(url) or url == request.path
            items.append({"label": label, "url": url, "active": active})
    return {
        "nav_items": items,
        "is_operator": has_role(user, "operator"),
        "is_administrator": has_role(user, "administrator"),
        "pyros_debug": settings.DEBUG,
    }
