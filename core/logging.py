"""Structured logging: JSON lines in production, readable lines in a terminal.

The JSON lines are encoded by msgspec rather than the standard library's ``json`` (every API request
writes one, ``http.request``, so the encoder is on the hot path); objects it cannot encode are written
as their ``repr``, as structlog's own JSON renderer does."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import msgspec
import structlog

_JSON = msgspec.json.Encoder(enc_hook=repr)


def render_json(_logger: Any, _name: str, event_dict: MutableMapping[str, Any]) -> str:
    """The event as one JSON object (UTF-8, non-ASCII as is), for a line of the log."""
    return _JSON.encode(event_dict).decode()


def configure_logging(*, json: bool = True, level: str = "INFO") -> None:
    processors: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
    ]
    renderer: structlog.typing.Processor = render_json if json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[*processors, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=level.upper(), stream=sys.stderr, format="%(message)s")
    for noisy in ("httpx", "httpcore", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
