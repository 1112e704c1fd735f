"""The Vonage client under faults: answers it cannot read, 429s that ask for no pause, and
answers that trickle in. Each send is answered in time and never sends a second SMS."""

import time

import pytest
from conftest import send
from standins import Answer, fixture

from connector.clients import vonage as vonage_client

GOOD = {"to": "+44 7700 900000", "text": "Your code is 1234"}

# 2xx answers from which no message_uuid can be read: Vonage took the message all the same.
UNREADABLE = {
    "html": Answer(202, raw=b"<html><body>Accepted</body></html>", content_type="text/html"),
    "empty": Answer(202, raw=b""),
    "json-without-uuid": Answer(202, {"status": "accepted"}),
    "broken-json": Answer(200, raw=b'{"message_uuid": '),
    "uuid-not-a-string": Answer(202, {"message_uuid": 12}),
}


@pytest.mark.parametrize("kind", sorted(UNREADABLE))
@pytest.mark.parametrize("body", [{**GOOD, "client_ref": "order-1"}, GOOD], ids=["ref", "same"])
def test_2xx_without_a_readable_uuid_is_remembered_so_a_retry_sends_nothing(
    client, vonage, kind, body
):
    vonage.script(UNREADABLE[kind])
    first = send(client, body)
    assert first.status_code == 502
    assert "may have been sent" in first.json["error"]
    retry = send(client, body)
    assert retry.status_code == 502 and retry.json == first.json
    assert len(vonage.sends()) == 1


@pytest.mark.parametrize("retry_after", ["0", "Mon, 01 Jan 2001 00:00:00 GMT"])
def test_429_asking_for_no_pause_is_tried_a_few_times_only(client, vonage, retry_after):
    problem = fixture("python-sdk/http_client__429.json")
    vonage.script(*[Answer(429, problem, headers={"Retry-After": retry_after})] * 200)
    response = send(client, GOOD)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "1"
    assert len(vonage.sends()) <= vonage_client.MAX_TRIES


def test_5xx_then_429s_stay_within_the_cap(client, vonage):
    problem = fixture("python-sdk/http_client__429.json")
    vonage.script(
        Answer(500, fixture("python-sdk/http_client__500.json")),
        *[Answer(429, problem, headers={"Retry-After": "0"})] * 200,
    )
    assert send(client, GOOD).status_code == 429
    assert len(vonage.sends()) <= vonage_client.MAX_TRIES


PADDED = {"message_uuid": "aaaaaaaa-bbbb-4ccc-8ddd-0123456789ab", "pad": "x" * 120}


@pytest.mark.parametrize("body_only", [False, True], ids=["headers", "body"])
def test_a_trickling_answer_is_cut_at_the_deadline_and_remembered(make_app, vonage, body_only):
    """One byte every 50 ms never trips a per-read timeout; the whole answer would take 8 s or
    more. The send is answered 504 at VONAGE_TIMEOUT (may have been sent), and remembered."""
    client = make_app(vonage_timeout=0.6).test_client()
    vonage.script(Answer(202, PADDED, trickle=0.05, trickle_body_only=body_only))
    started = time.monotonic()
    response = send(client, GOOD)
    elapsed = time.monotonic() - started
    assert response.status_code == 504
    assert "may have been sent" in response.json["error"]
    assert elapsed < 4.0  # far below the 8 s the trickle needs; the promise is 1.1 s
    assert send(client, GOOD).status_code == 504
    assert len(vonage.sends()) == 1


def test_a_trickling_error_answer_is_cut_at_the_deadline_too(make_app, vonage):
    client = make_app(vonage_timeout=0.6, send_dedupe_seconds=0).test_client()
    vonage.script(Answer(500, {"title": "x" * 200}, trickle=0.05, trickle_body_only=True))
    started = time.monotonic()
    response = send(client, GOOD)
    assert response.status_code == 502  # Vonage said 500: it did not take the message
    assert "cut off" in response.json["error"]
    assert time.monotonic() - started < 4.0


def test_a_fast_answer_after_a_slow_one_reuses_the_connection_unharmed(make_app, vonage):
    """A socket the deadline closed is never handed to the next send as if it were alive."""
    client = make_app(vonage_timeout=0.6, send_dedupe_seconds=0).test_client()
    vonage.script(Answer(202, PADDED, trickle=0.05, trickle_body_only=True))
    assert send(client, GOOD).status_code == 504
    for _ in range(3):
        assert send(client, GOOD).status_code == 200
