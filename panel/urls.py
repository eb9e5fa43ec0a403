from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from core import views
from core.api import api_docs
from panel import dashboard

urlpatterns = [
    path("", dashboard.dashboard, name="dashboard"),
    path("healthz", views.healthz, name="healthz"),
    path("operations/", include("core.urls")),
    path("servers/", include("servers.urls")),
    path("websites/", views.area, {"area": "websites"}, name="websites"),
    path("dns/", views.area, {"area": "dns"}, name="dns"),
    path("vps/", views.area, {"area": "vps"}, name="vps"),
    path("monitoring/", views.area, {"area": "monitoring"}, name="monitoring"),
    path("account/", include("accounts.urls")),
    path("2fa/", include("accounts.urls_2fa")),
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
