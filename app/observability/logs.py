"""Log setup shared by the API, the worker and the embedded mode.

``UNLEARND_LOG_FORMAT=json`` writes one JSON object per line (timestamp, level, logger, message, and
the request/job ids bound in :mod:`app.observability.context`), which log shippers index without
parsing rules; ``text`` is for a terminal. Either way, callers log ids, counts and hashes, never
subject identifiers or sample-ID lists: a log line outlives an erasure.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from app.observability import context
from app.settings import Settings

# Attributes every LogRecord has; anything else on a record came from ``extra=`` and is a field.
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
TEXT_FORMAT = "%(asctime)s %(levelname)s %(processName)s %(name)s %(message)s"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        entry.update(context.current())
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


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
