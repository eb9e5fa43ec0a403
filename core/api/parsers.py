"""JSON bodies with NUL characters are refused before any view sees them (PostgreSQL cannot
store NUL in text or JSON; forms refuse it the same way)."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from core.validators import refuse_nul


class StrictJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        data = super().parse(stream, media_type, parser_context)
        try:
            refuse_nul(data, "request")
        except ValidationError as exc:
            raise ParseError(exc.messages[0]) from exc
        return data
