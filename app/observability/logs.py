"""Log setup shared by the API, the worker and the embedded mode.

``UNLEARND_LOG_FORMAT=json`` writes one JSON object per line (timestamp, level, logger, message, and
the request/job ids bound in :mod:`app.observability.context`), which log shippers index without
parsing rules; ``text`` is for a terminal. Either way, callers log ids, counts and hashes, never
subject identifiers or sample-ID lists: a log line outlives an erasure.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

from pythonjsonlogger.json import JsonFormatter as _LibraryJsonFormatter

from app.observability import context
from app.settings import Settings

TEXT_FORMAT = "%(asctime)s %(levelname)s %(processName)s %(name)s %(message)s"
_JSON_FIELDS = "%(levelname)s %(name)s %(message)s %(process)d"  # plus any record's ``extra=`` fields
_JSON_NAMES = {"levelname": "level", "name": "logger", "exc_info": "exception", "stack_info": "stack"}


class JsonFormatter(_LibraryJsonFormatter):
    """python-json-logger's, with our field names, a millisecond UTC timestamp and the bound ids."""

    def __init__(self):
        super().__init__(_JSON_FIELDS, rename_fields=_JSON_NAMES, json_default=str, json_ensure_ascii=False)

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        log_data["timestamp"] = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        super().add_fields(log_data, record, message_dict)
        log_data.update(context.current())  # the request/job ids win over a same-named extra


class TextFormatter(logging.Formatter):
    """The classic line, with the bound ids appended so a terminal shows them too."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = context.current()
        return line + "".join(f" {k}={v}" for k, v in ids.items()) if ids else line


class _OurHandler(logging.StreamHandler):
    """Marks the handler this module installed, so a second configure replaces it, not adds one."""


def configure_logging(settings: Settings) -> None:
    """Root logger -> stderr in the configured format; idempotent.

    Handlers someone else put on the root logger (pytest's capture, an embedding application) are
    left alone. uvicorn's access log is switched off: the request-id middleware writes the access
    line instead, with the request id and the route template, and without the query string.
    """
    formatter = JsonFormatter() if settings.log_format == "json" else TextFormatter(TEXT_FORMAT)
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _OurHandler)]:
        root.removeHandler(handler)
    handler = _OurHandler(sys.stderr)
    handler.setFormatter(formatter)
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    # "<node> ready." says a worker consumes its queue: worth a line at any level (and start-up
    # scripts, the tests and the benchmarks wait for it)
    logging.getLogger("celery.apps.worker").setLevel(min(logging.INFO, root.level))
    # warnings.warn() writes raw text to stderr; as log records they become JSON lines too
    logging.captureWarnings(settings.log_format == "json")
    for name in ("uvicorn", "uvicorn.error"):  # one format for every line of the process
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers = []
        uvicorn_logger.propagate = True
    access = logging.getLogger("uvicorn.access")
    access.handlers = []
    access.propagate = False
