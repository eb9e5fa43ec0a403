"""Static files are fingerprinted, compressed and cached for good; pages are compressed."""

import gzip

import pytest
from django.core.management import call_command
from django.http import HttpResponse
from django.test import RequestFactory

from tests.conftest import login

pytestmark = pytest.mark.django_db


def test_collected_files_are_fingerprinted_compressed_and_immutable(tmp_path, settings, customer):
    settings.STATIC_ROOT = tmp_path
    # The admin's and the API docs' files are not needed for this page (and slow to hash).
    ignore = ["-i", "admin", "-i", "drf_spectacular_sidecar", "-i", "rest_framework"]
    call_command("collectstatic", "--noinput", "-v0", *ignore)
    page = login(customer).get("/").content.decode()
    css = next(part.split('"')[0] for part in page.split('href="/static/css/panel.')[1:])
    assert len(css.split(".")[0]) == 12  # panel.<hash>.css
    settings.WHITENOISE_USE_FINDERS = False
    settings.WHITENOISE_AUTOREFRESH = False
    from whitenoise.middleware import WhiteNoiseMiddleware

    static = WhiteNoiseMiddleware(lambda request: HttpResponse(status=404))
    request = RequestFactory().get(f"/static/css/panel.{css}", HTTP_ACCEPT_ENCODING="gzip")
    response = static(request)
    assert response.status_code == 200 and response["Content-Encoding"] == "gzip"
    assert (
        "immutable" in response["Cache-Control"]
        and "max-age=315360000" in response["Cache-Control"]
    )


def test_pages_are_compressed(customer):
    response = login(customer).get("/operations/", HTTP_ACCEPT_ENCODING="gzip")
    assert response["Content-Encoding"] == "gzip"
    assert b"operations-table" in gzip.decompress(response.content)
