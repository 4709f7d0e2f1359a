"""Logging: per-queue loggers, the task id in every record, secrets masked everywhere."""

from __future__ import annotations

import logging
import os
import re
import sys
from contextvars import ContextVar
from typing import Any

current_task_id: ContextVar[str | None] = ContextVar("boostkernel_task_id", default=None)

_URL_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]+)@")
_KV_SECRET = re.compile(r"(?i)\b(password|passwd|pwd|secret|token|api_key|apikey)=([^&\s,;]+)")


def mask_url(url: str | None) -> str | None:
    """``redis://user:secret@host`` → ``redis://user:**@host``; also masks ``password=…`` query values."""
    if url is None:
        return None
    return _KV_SECRET.sub(r"\1=**", _URL_PASSWORD.sub(r"\g<scheme>\g<user>:**@", url))


def mask(text: str) -> str:
    """Mask every URL password and ``password=`` value in free text."""
    return _KV_SECRET.sub(r"\1=**", _URL_PASSWORD.sub(r"\g<scheme>\g<user>:**@", text))


class ContextFilter(logging.Filter):
    """Adds ``task_id`` to every record and masks secrets in the rendered message."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.task_id = current_task_id.get() or "-"
        if record.args:
            try:
                record.msg, record.args = record.getMessage(), None
            except Exception:  # noqa: BLE001 - never let logging break the caller
                return True
        if isinstance(record.msg, str) and "://" in record.msg or "=" in str(record.msg):
            record.msg = mask(str(record.msg))
        return True


_factory_installed = False


def install_task_record_factory() -> None:
    """Give every log record the running task's id (``record.task_id``, ``-`` outside a task) and mask
    secrets (URL passwords, ``password=…``) in records emitted while a task runs — whichever logger the
    user's code logs to. Installed once, when the first consumer or framework worker starts; the cost per
    record is one context-variable read, plus the masking of records logged inside a task."""
    global _factory_installed
    if _factory_installed:
        return
    _factory_installed = True
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        tid = current_task_id.get()
        record.task_id = tid or "-"
        if tid is not None:
            try:
                text = record.getMessage()
            except Exception:  # noqa: BLE001 - a bad format string is the handler's to report
                return record
            if "=" in text or "://" in text:
                masked = mask(text)
                if masked != text:
                    record.msg, record.args = masked, None
        return record

    logging.setLogRecordFactory(factory)


_configured = False


def setup_logging(level: str | int = "INFO", json: bool | None = None, stream: Any = None) -> None:
    """Configure the ``boostkernel`` logger once: colored console lines, or JSON lines.

    ``json=None`` reads ``BOOSTKERNEL_LOG_JSON=1``. Colors are used when the stream is a terminal and
    ``NO_COLOR`` is not set (``BOOSTKERNEL_LOG_COLOR=1/0`` forces them on/off).
    """
    global _configured
    root = logging.getLogger("boostkernel")
    root.setLevel(level)
    if _configured:
        return
    _configured = True
    if json is None:
        json = os.environ.get("BOOSTKERNEL_LOG_JSON", "").lower() in ("1", "true", "yes", "on")
    out = stream or sys.stderr
    handler: logging.Handler = logging.StreamHandler(out)
    if json:
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(_ConsoleFormatter(_use_color(out)))
    handler.addFilter(ContextFilter())
    root.addHandler(handler)
    root.propagate = False


def _use_color(stream: Any) -> bool:
    forced = os.environ.get("BOOSTKERNEL_LOG_COLOR")
    if forced is not None:
        return forced.lower() in ("1", "true", "yes", "on")
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


_LEVEL_COLORS = {"DEBUG": "\x1b[2m", "INFO": "\x1b[32m", "WARNING": "\x1b[33m", "ERROR": "\x1b[31m",
                 "CRITICAL": "\x1b[1;31m"}


class _ConsoleFormatter(logging.Formatter):
    """``time LEVEL logger [task id] message``; the level colored on terminals; secrets masked."""

    def __init__(self, color: bool) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s [%(task_id)s] %(message)s", "%H:%M:%S")
        self.color = color

    def format(self, record: logging.LogRecord) -> str:
        if not hasattr(record, "task_id"):
            record.task_id = current_task_id.get() or "-"
        text = super().format(record)
        if record.exc_info or record.exc_text:
            text = mask(text)  # tracebacks carry URLs and passwords too
        if self.color:
            c = _LEVEL_COLORS.get(record.levelname)
            if c:
                text = text.replace(record.levelname, f"{c}{record.levelname}\x1b[0m", 1)
        return text


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        from .message import dumps

        data: dict[str, Any] = {
            "time": record.created, "level": record.levelname, "logger": record.name,
            "task_id": getattr(record, "task_id", None) or current_task_id.get() or "-",
            "message": mask(record.getMessage()),
        }
        if record.exc_info:
            data["exc"] = mask(self.formatException(record.exc_info))
        return dumps(data).decode()


def queue_logger(queue: str) -> logging.Logger:
    """The logger of one queue: ``boostkernel.queue.<name>``."""
    logger = logging.getLogger(f"boostkernel.queue.{queue}")
    if not any(isinstance(f, ContextFilter) for f in logger.filters):
        logger.addFilter(ContextFilter())
    return logger
