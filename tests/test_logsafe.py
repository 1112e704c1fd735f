"""Issue 19 part 6: no caller writes a line of its own into the operator's log. Each value a
send or a webhook carries that reaches a log line has its control characters shown, so every
line of the log is one record, starting as the formatter starts it."""

import io
import logging
import re

import pytest
from conftest import AUTH, inbound_body, send, status_body, webhook

from connector import LOG_FORMAT
from connector.logsafe import escape, install

# CR and LF (a whole forged line, timestamp and all), the other C0 controls, DEL, C1 (NEL),
# the Unicode line separator, and ESC sequences (colours, cursor moves). NUL is not among them:
# payload.py refuses a body holding one.
FORGED = "2026-01-01 00:00:00,000 ERROR connector.sending: vonage accepted message_uuid=forged"
EVIL = f"x\r\n{FORGED}\n\x1b[2J\x1b[31mred\x07\x08\t\x0b\x0c\x1f\x7f\x85\u2028end"
LINE_START = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR) connector"
)


@pytest.fixture
def log_lines():
    """The connector's log as its formatter writes it, and how many records were written."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    records = []
    handler.addFilter(lambda record: records.append(record) or True)
    logger = logging.getLogger("connector")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    yield lambda: (stream.getvalue(), records)
    logger.removeHandler(handler)
    logger.setLevel(old_level)


def assert_one_line_per_record(text, records):
    lines = text.splitlines()  # splits at \r, \x0b, \x0c, \x1c-\x1e, \x85, \u2028 too
    assert len(lines) == len(records)
    for line in lines:
        assert LINE_START.match(line), line
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]", text)


def test_escape_shows_every_control_character():
    assert escape("a\r\nb\x1b[0m\x00\x7f\x85\u2028") == "a\\r\\nb\\x1b[0m\\x00\\x7f\\x85\\u2028"
    assert escape("plain text, unicode é ü 日本") == "plain text, unicode é ü 日本"


def test_an_unauthenticated_send_cannot_write_log_lines(client, vonage, log_lines):
    body = {"to": "447700900000", "text": "hi", "client_ref": EVIL[:100], "campaign_id": EVIL}
    answer = send(client, body, headers={"Authorization": "Custom guess:guess"})
    assert answer.status_code == 401
    text, records = log_lines()
    assert "client_ref=x\\r\\n2026-01-01" in text and "campaign=x\\r\\n2026" in text
    assert_one_line_per_record(text, records)


def test_an_accepted_send_logs_its_fields_escaped(client, vonage, log_lines):
    body = {"to": "447700900000", "text": "hi", "client_ref": EVIL[:100], "campaign_id": EVIL}
    assert send(client, body, headers=AUTH).status_code == 200
    text, records = log_lines()
    assert "vonage accepted" in text and "\\x1b[2J" in text
    assert_one_line_per_record(text, records)


def test_signed_webhooks_cannot_write_log_lines(client, moengage, log_lines):
    webhook(client, "/webhooks/status", status_body(EVIL))  # a status it does not forward
    webhook(client, "/webhooks/status", status_body("delivered", EVIL))
    webhook(client, "/webhooks/status", status_body("delivered", EVIL))  # not forwarded again
    webhook(client, "/webhooks/inbound", inbound_body("STOP", message_uuid=EVIL))
    webhook(client, "/webhooks/inbound", {**inbound_body(), "text": None, "from": EVIL})
    webhook(client, "/webhooks/inbound", {**inbound_body(), "channel": EVIL})  # untranslated
    webhook(client, "/webhooks/status", status_body("delivered", EVIL[::-1]), record=False)
    text, records = log_lines()
    assert text.count("x\\r\\n2026-01-01") >= 5
    assert_one_line_per_record(text, records)


def test_a_logged_exception_quoting_a_caller_writes_no_line_of_its_own(log_lines):
    """An exception's message may quote a caller's value (a database error naming a key): its
    traceback keeps its own lines, and the quoted value, in the message and in the exception it
    was raised from, is escaped."""
    install()  # as create_app does
    log = logging.getLogger("connector.relay.sending")
    try:
        try:
            raise RuntimeError(EVIL)
        except RuntimeError as cause:
            raise ValueError(f"duplicate key ({EVIL})") from cause
    except ValueError:
        log.exception("could not record a send")
    text, _ = log_lines()
    lines = text.splitlines()
    assert LINE_START.match(lines[0]) and lines[0].endswith("could not record a send")
    assert not any(LINE_START.match(line) for line in lines[1:])  # no forged record
    assert sum("x\\r\\n2026-01-01" in line for line in lines) == 2  # both messages, escaped
    assert "The above exception was the direct cause of the following exception:" in lines
    assert any(line.startswith("ValueError: duplicate key (x\\r\\n") for line in lines)
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]", text)
