"""Log lines callers cannot forge: every value a caller supplied (a send's client_ref or
campaign_id, a webhook's status or message_uuid, a request path) is logged with its control
characters shown (`\\n`, `\\r`, `\\x1b`, `\\u2028`), never emitted.

Done once, where the record is made, instead of a `safe()` at each log call: a call added later
cannot forget it, and every handler sees the same escaped record whoever installed it (gunicorn's
error log, `logging.basicConfig`, pytest's capture). A filter on the `connector` logger would not
do: a logger's filters do not run for its children (`connector.relay.sending`), and the handlers
belong to whoever runs the app. Only records of the connector's own loggers are touched.
"""

import logging
import re
import traceback

PREFIX = "connector"
# C0 and C1 controls, DEL, and the Unicode line and paragraph separators: what a terminal or a
# log collector may take as the end of a line or as a command.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape(text: str) -> str:
    """`text` with each control character written out as a Python escape."""
    return _CONTROL.sub(_written_out, text)


def _written_out(match):
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _safe(value):
    """A log argument as it may reach the line: numbers as they are (so `%d` still works),
    anything else as its escaped text."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    text = value if isinstance(value, str) else str(value)
    return escape(text) if _CONTROL.search(text) else text


class _EscapedMessage(traceback.TracebackException):
    """A traceback whose exception messages are escaped, line by line as they are written."""

    def format_exception_only(self, *args, **kwargs):
        for line in super().format_exception_only(*args, **kwargs):
            yield escape(line.rstrip("\n")) + "\n"


def _chain(exception, seen):
    """`exception` (a TracebackException) and every one it was raised from, during or with."""
    if exception is None or id(exception) in seen:
        return
    seen.add(id(exception))
    yield exception
    yield from _chain(exception.__cause__, seen)
    yield from _chain(exception.__context__, seen)
    for member in getattr(exception, "exceptions", None) or ():
        yield from _chain(member, seen)


def _traceback(exc_info):
    """The traceback as logging.Formatter writes it, each exception's message escaped: the
    code's lines are the connector's own, but a message may quote a caller's value (a database
    error naming a key, a parser quoting its input)."""
    formatted = traceback.TracebackException(*exc_info, compact=True)
    for exception in _chain(formatted, set()):
        exception.__class__ = _EscapedMessage  # the chain's links are built as the base class
    return "".join(formatted.format()).rstrip("\n")


def _escaped(record):
    if isinstance(record.msg, str) and _CONTROL.search(record.msg):
        record.msg = escape(record.msg)  # a message built with an f-string
    if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
        try:  # kept as the record's exc_text, which formatters use as it is
            record.exc_text = _traceback(record.exc_info)
        except Exception:  # noqa: BLE001 - a log call must never raise; written plain then
            record.exc_text = None
    args = record.args
    if isinstance(args, dict):
        record.args = {key: _safe(value) for key, value in args.items()}
    elif args:
        record.args = tuple(_safe(value) for value in args)
    return record


class _EscapingFactory:
    """The record factory in use before, its connector records escaped."""

    def __init__(self, wrapped):
        self.wrapped = wrapped

    def __call__(self, name, *args, **kwargs):
        record = self.wrapped(name, *args, **kwargs)
        if name == PREFIX or name.startswith(PREFIX + "."):
            _escaped(record)
        return record


def install() -> None:
    """Make every record of the connector's loggers with escaped values; idempotent."""
    current = logging.getLogRecordFactory()
    if not isinstance(current, _EscapingFactory):
        logging.setLogRecordFactory(_EscapingFactory(current))
