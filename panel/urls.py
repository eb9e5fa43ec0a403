from importlib import import_module
from importlib.util import find_spec
from pathlib import Path

from django.apps import apps
from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from core import views
from core.api import api_docs
from monitoring import export as metrics_export
from panel import dashboard


def app_urls() -> list:
    """Each app of this repository with a ``urls.py`` is mounted at its ``url_prefix``
    (default ``<label>/``); one without pages yet shows its ``placeholder``."""
    found = []
    for config in apps.get_app_configs():
        if Path(config.path).parent != settings.BASE_DIR:
            continue  # third-party apps mount themselves below
        if find_spec(f"{config.name}.urls") is not None:
            module = import_module(f"{config.name}.urls")
            prefix = getattr(module, "url_prefix", f"{config.label}/")
            found.append(path(prefix, include(module)))
        elif hasattr(config, "placeholder"):
            found.append(
                path(f"{config.label}/", views.area, {"area": config.label}, name=config.label)
            )
    return found


urlpatterns = [
    path("", dashboard.dashboard, name="dashboard"),
    path("healthz", views.healthz, name="healthz"),
    path("healthz/live", views.healthz_live, name="healthz_live"),
    path("healthz/ready", views.healthz_ready, name="healthz_ready"),
    path("metrics", metrics_export.metrics, name="metrics"),
    path("sharing/<str:label>/<uuid:uuid>/", views.share_add, name="share_add"),
    path(
        "sharing/<str:label>/<uuid:uuid>/<int:user_id>/remove/",
        views.share_remove,
        name="share_remove",
    ),
    *app_urls(),
    path("accounts/", include("allauth.urls")),
    path("admin/", admin.site.urls),
    path("api/v1/", include("panel.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path(
        "api/docs/",
        api_docs(SpectacularSwaggerSplitView.as_view(url_name="schema")),
        name="api-docs",
    ),
]

if settings.DEBUG:
    from django.conf.urls.static import static

    urlpatterns += static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)
