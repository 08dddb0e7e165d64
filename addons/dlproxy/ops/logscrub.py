"""Nothing secret in dlproxy's own output: every log record, mitmproxy's and dlproxy's, is scrubbed when it is
created, before any handler formats or writes it.

mitmproxy's own messages carry request data (an error text quoting a header or a trailer, a hostname in a
connection error, a traceback whose exception message holds a value). A log-record factory, installed once per
process, runs the current profile's detector over each record's message (and the text of its exception and
stack, formatted there and then) and replaces each credential found by its masked form. Records without a
prefix hit cost one prefilter pass over the message.

    install(lambda: state.current.detector if state.current else None)   # wiring.make_addons does this
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from ..inspect.redact import mask_found

_lock = threading.Lock()
_source: Callable[[], object] | None = None  # -> the detector to scrub with, or None (no profile yet)
_base_factory: Callable[..., logging.LogRecord] | None = None


def install(source: Callable[[], object]) -> None:
    """Scrub every log record from now on with the detector `source()` returns (the latest install wins)."""
    global _source, _base_factory
    with _lock:
        _source = source
        if _base_factory is None:
            _base_factory = logging.getLogRecordFactory()
            logging.setLogRecordFactory(_scrubbed_record)


def _scrubbed_record(*args, **kwargs) -> logging.LogRecord:
    record = _base_factory(*args, **kwargs)
    try:
        scrub_record(record)
    except Exception:  # never let a secret through because scrubbing failed: drop the text instead
        record.msg, record.args, record.exc_info, record.exc_text = "dlproxy: log record withheld", (), None, None
    return record


def scrub_record(record: logging.LogRecord) -> None:
    detector = _source() if _source is not None else None
    if detector is None:
        return
    message = record.getMessage()
    clean = mask_found(message, detector)
    if clean is not message:
        record.msg, record.args = clean, ()
    if record.exc_info:
        text = record.exc_text or logging.Formatter().formatException(record.exc_info)
        record.exc_text, record.exc_info = mask_found(text, detector), None
    if record.stack_info:
        record.stack_info = mask_found(record.stack_info, detector)
