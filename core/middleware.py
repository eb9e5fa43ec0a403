"""Request checks every view relies on."""

from __future__ import annotations

from django.http import HttpResponseBadRequest


def _has_nul(querydict) -> bool:
    return any(
        "\x00" in key or any("\x00" in v for v in values) for key, values in querydict.lists()
    )


class RefuseNulMiddleware:
    """A NUL character in the path, the query or a form field answers 400.

    No text the panel stores may contain NUL (PostgreSQL refuses it, and it truncates
    strings in C tools); refusing it here covers every view and filter at once. JSON bodies
    are checked by the API's parser (core/api/parsers.py).
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if "\x00" in request.path or _has_nul(request.GET):
            return HttpResponseBadRequest("NUL characters are not allowed.")
        content_type = request.content_type or ""
        form = content_type in ("application/x-www-form-urlencoded", "multipart/form-data")
        if request.method == "POST" and form and _has_nul(request.POST):
            return HttpResponseBadRequest("NUL characters are not allowed.")
        return self.get_response(request)
