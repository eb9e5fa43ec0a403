"""Limit/offset pagination that refuses what it cannot honour instead of guessing.

A missing ``limit`` gives the default page; a malformed, negative or oversized one answers
400 (DRF's own class silently falls back, and passes a 20-digit offset on to the database).
"""

from __future__ import annotations

import re

from django.conf import settings
from rest_framework import pagination
from rest_framework.exceptions import ValidationError

_NUMBER = re.compile(r"[0-9]{1,18}")
MAX_OFFSET = 2**31 - 1


def whole_number(raw: str, name: str, *, minimum: int, maximum: int) -> int:
    """A plain ASCII whole number within bounds, else a 400 naming the parameter."""
    if not _NUMBER.fullmatch(raw) or not minimum <= int(raw) <= maximum:
        raise ValidationError({name: f"Must be a whole number from {minimum} to {maximum}."})
    return int(raw)


class Pagination(pagination.LimitOffsetPagination):
    default_limit = settings.REST_FRAMEWORK["PAGE_SIZE"]
    max_limit = settings.PANEL_API_MAX_LIMIT

    def get_limit(self, request):
        raw = request.query_params.get(self.limit_query_param)
        if raw is None:
            return self.default_limit
        return whole_number(raw, self.limit_query_param, minimum=1, maximum=self.max_limit)

    def get_offset(self, request):
        raw = request.query_params.get(self.offset_query_param)
        if raw is None:
            return 0
        return whole_number(raw, self.offset_query_param, minimum=0, maximum=MAX_OFFSET)

    def get_schema_operation_parameters(self, view):
        params = super().get_schema_operation_parameters(view)
        for param in params:
            if param["name"] == self.limit_query_param:
                param["schema"].update(minimum=1, maximum=self.max_limit)
            elif param["name"] == self.offset_query_param:
                param["schema"].update(minimum=0, maximum=MAX_OFFSET)
        return params
