"""Structured logs: one JSON object per line on stderr, with any ``extra={…}`` fields included."""

from __future__ import annotations

import json
import logging
import sys
import time

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("warroom")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    # kafka-python is chatty at INFO; its warnings still come through.
    logging.getLogger("kafka").setLevel(logging.WARNING)
    # clickhouse-connect logs driver failures that warroom reports itself, with context.
    logging.getLogger("clickhouse_connect").setLevel(logging.CRITICAL)
