"""Structured logs: one JSON object per line (PANEL_LOG_FORMAT=json), for journald/Loki/ELK.

Each line has time, level, logger, message, process id and, when set, the exception's
traceback and any scalar ``extra=`` fields the caller gave (objects such as Django's
``request`` are dropped).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

# Attributes every LogRecord has: anything else on a record came from ``extra=``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
_SCALARS = (str, int, float, bool, type(None))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        for key, value in vars(record).items():
            # Scalars only: Django's ``request`` (its repr carries the query string, which
            # may hold a token) and other objects are left out, not stringified.
            if key not in _STANDARD and not key.startswith("_") and isinstance(value, _SCALARS):
                entry[key] = value
        return json.dumps(entry, default=str, ensure_ascii=False)
