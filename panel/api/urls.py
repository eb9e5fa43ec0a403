"""The API: one router holding every app's ``api/urls.py`` (``routes`` and ``urlpatterns``).

An app joins by having that module; nothing here names the apps.
"""

from importlib import import_module
from importlib.util import find_spec
from pathlib import Path

from django.apps import apps
from django.conf import settings
from rest_framework.routers import DefaultRouter

router = DefaultRouter()
urlpatterns: list = []
for config in apps.get_app_configs():
    module_name = f"{config.name}.api.urls"
    ours = Path(config.path).parent == settings.BASE_DIR  # apps of this repository
    if not ours or find_spec(f"{config.name}.api") is None or find_spec(module_name) is None:
        continue
    module = import_module(module_name)
    for prefix, viewset, basename in getattr(module, "routes", []):
        router.register(prefix, viewset, basename=basename)
    urlpatterns += getattr(module, "urlpatterns", [])
urlpatterns += router.urls
