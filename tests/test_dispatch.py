"""Contract section 1: the send, MoEngage -> connector -> Vonage, every row of it."""

import threading
import time

import pytest
from conftest import AUTH, send
from standins import Answer, fixture

GOOD = {"to": "+44 7700 900000", "text": "Your code is 1234"}


def test_send_answers_200_with_tracking_id_and_sends_the_sms(client, vonage):
    response = send(client, GOOD)
    assert response.status_code == 200
    assert response.json["status"] == "sent"
    [request] = vonage.requests
    message = request["json"]
    assert message == {
        "message_type": "text",
        "channel": "sms",
        "to": "447700900000",
        "from": "Acme",
        "text": "Your code is 1234",
        "webhook_version": "v1",
    }
    assert request["headers"]["Authorization"].startswith("Basic ")
    assert len(response.json["trackingId"]) == 36


def test_tracking_id_is_vonage_message_uuid(client, vonage):
    vonage.script(Answer(202, fixture("python-sdk/messages__send_message.json")))
    response = send(client, GOOD)
    assert response.json == {"trackingId": "d8f86df1-dec6-442f-870a-2241be27d721", "status": "sent"}


def test_message_dispatcher_path_is_the_same_handler(client, vonage):
    response = send(client, GOOD, path="/webhooks/message-dispatcher")
    assert response.status_code == 200
    assert len(vonage.sent()) == 1


def test_form_encoded_body_is_accepted(client, vonage):
    response = client.post("/", data={"to": "447700900000", "text": "hi"}, headers=AUTH)
    assert response.status_code == 200
    assert vonage.sent()[0]["text"] == "hi"


def test_json_without_content_type_is_accepted(client, vonage):
    response = client.post(
        "/",
        data=b'{"to": "447700900000", "text": "hi"}',
        headers={**AUTH, "Content-Type": "text/plain"},
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    "to, expected",
    [
        ("+447700900000", "447700900000"),
        ("0044 7700 900000", "447700900000"),
        ("+1 (555) 010-9999", "15550109999"),
        ("+33.6.12.34.56.78", "33612345678"),
        ("[44] 7700-900000", "447700900000"),
        (447700900000, "447700900000"),
    ],
)
def test_to_is_normalised(client, vonage, to, expected):
    response = send(client, {"to": to, "text": "hi"})
    assert response.status_code == 200
    assert vonage.sent()[0]["to"] == expected


@pytest.mark.parametrize(
    "to",
    [
        "",
        None,
        "123456",
        "1234567890123456",
        "1234567",  # 7 to 15 digits, but no +1 number is 7 digits long (issue 19)
        "123456789012345",
        "07700900000",
        "+44 7700 90000x",
        "abc",
        True,
        4.5,
        ["447700900000"],
        "00",
    ],
)
def test_bad_to_is_400(client, vonage, to):
    response = send(client, {"to": to, "text": "hi"})
    assert response.status_code == 400
    assert response.json["status"] == "failed" and "`to`" in response.json["error"]
    assert vonage.requests == []


def test_missing_to_is_400(client, vonage):
    response = send(client, {"text": "hi"})
    assert response.status_code == 400 and "`to` is required" in response.json["error"]


@pytest.mark.parametrize("text", [None, "", 5, "x" * 3201, "\ud800"])
def test_bad_text_is_400(client, vonage, text):
    response = send(client, {"to": "447700900000", "text": text})
    assert response.status_code == 400 and "`text`" in response.json["error"]
    assert vonage.requests == []


def test_text_of_3200_code_points_is_sent_untouched(client, vonage):
    text = "\U0001f600" * 3199 + " "
    response = send(client, {"to": "447700900000", "text": text})
    assert response.status_code == 200
    assert vonage.sent()[0]["text"] == text


def test_no_sender_at_all_is_400(make_app, vonage):
    client = make_app(vonage_from="").test_client()
    response = send(client, GOOD)
    assert response.status_code == 400 and "sender" in response.json["error"]
    assert vonage.requests == []


def test_from_overrides_default_sender(client, vonage):
    send(client, {**GOOD, "from": "447700900001"})
    assert vonage.sent()[0]["from"] == "447700900001"


def test_template_and_entity_ids_go_to_sms_block(client, vonage):
    send(client, {**GOOD, "template_id": "1107457532145798767", "entity_id": 1101456324675322134})
    assert vonage.sent()[0]["sms"] == {
        "content_id": "1107457532145798767",
        "entity_id": "1101456324675322134",
    }


def test_campaign_id_is_vonage_client_ref_when_none_given(client, vonage):
    send(client, {**GOOD, "campaign_id": "cmp-1"})
    send(client, {**GOOD, "text": "other", "campaign_id": "cmp-1", "client_ref": "mine"})
    assert [m["client_ref"] for m in vonage.sent()] == ["cmp-1", "mine"]


def test_public_url_asks_vonage_for_status_webhooks(make_app, vonage):
    client = make_app(public_url="https://connector.example.com/").test_client()
    send(client, GOOD)
    assert vonage.sent()[0]["webhook_url"] == "https://connector.example.com/webhooks/status"


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Basic YWJjOmRlZg==",
        "Bearer x",
        "Custom",
        "Custom abcd1234",
        "Custom :secret",
        "Custom key:",
        "Custom k\u00e9y:secret",
    ],
)
def test_bad_authorization_is_401(client, vonage, header):
    headers = {} if header is None else {"Authorization": header}
    response = send(client, GOOD, headers=headers)
    assert response.status_code == 401
    assert response.json["status"] == "failed"
    assert vonage.requests == []


def test_scheme_is_case_insensitive_and_secret_may_hold_colons(client, vonage):
    response = send(client, GOOD, headers={"Authorization": "CUSTOM abcd1234:Secr3t:with:colons"})
    assert response.status_code == 200
    assert len(vonage.sent()) == 1


@pytest.mark.parametrize("raw", [b"{", b"[1, 2]", b'"text"', b"\xff\xfe", b""])
def test_bad_json_is_400(client, vonage, raw):
    response = client.post("/", data=raw, headers={**AUTH, "Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json["status"] == "failed"


def test_body_over_1_mib_is_413(client, vonage):
    raw = b'{"to": "447700900000", "text": "' + b"x" * (1024 * 1024) + b'"}'
    response = client.post("/", data=raw, headers={**AUTH, "Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.json["status"] == "failed"


def test_other_keys_are_ignored(client, vonage):
    response = send(client, {**GOOD, "moe_extra": {"a": 1}, "ttl": 5})
    assert response.status_code == 200
    assert "ttl" not in vonage.sent()[0]


@pytest.mark.parametrize(
    "vonage_status, body, answer",
    [
        (401, "python-sdk/http_client__401.json", 401),
        (403, "python-sdk/http_client__403.json", 401),
        (402, "python-sdk/messages__low_balance_error.json", 402),
        (422, "python-sdk/messages__invalid_error.json", 422),
    ],
)
def test_vonage_refusals_map_to_the_contract(client, vonage, vonage_status, body, answer):
    problem = fixture(body)
    vonage.script(Answer(vonage_status, problem))
    response = send(client, GOOD)
    assert response.status_code == answer
    assert response.json["status"] == "failed"
    assert problem["title"] in response.json["error"]
    assert problem["detail"] in response.json["error"]
    assert len(vonage.requests) == 1


def test_wrong_vonage_credentials_are_401(client, vonage):
    response = send(client, GOOD, headers={"Authorization": "Custom abcd1234:wrong"})
    assert response.status_code == 401
    assert "You did not provide correct credentials." in response.json["error"]


def test_429_is_retried_after_retry_after(client, vonage):
    vonage.script(
        Answer(429, fixture("python-sdk/http_client__429.json"), headers={"Retry-After": "1"})
    )
    started = time.monotonic()
    response = send(client, GOOD)
    assert response.status_code == 200
    assert len(vonage.requests) == 2
    assert vonage.requests[1]["time"] - vonage.requests[0]["time"] >= 0.95
    assert time.monotonic() - started < 2.0


def test_429_that_cannot_wait_is_429_with_retry_after(client, vonage):
    vonage.script(
        Answer(429, fixture("python-sdk/http_client__429.json"), headers={"Retry-After": "15"})
    )
    started = time.monotonic()
    response = send(client, GOOD)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "15"
    assert "Rate Limit Hit" in response.json["error"]
    assert len(vonage.requests) == 1
    assert time.monotonic() - started < 1.0


def test_5xx_is_retried_once_then_sent(client, vonage):
    vonage.script(Answer(500, fixture("python-sdk/http_client__500.json")))
    response = send(client, GOOD)
    assert response.status_code == 200
    assert len(vonage.requests) == 2


def test_5xx_twice_is_502(client, vonage):
    problem = fixture("python-sdk/http_client__500.json")
    vonage.script(Answer(500, problem), Answer(503, problem))
    response = send(client, GOOD)
    assert response.status_code == 502
    assert "Internal Server Error" in response.json["error"]
    assert len(vonage.requests) == 2


def test_no_connection_is_retried_once_then_502(make_app, unused_port):
    client = make_app(vonage_api_url=f"http://127.0.0.1:{unused_port}").test_client()
    started = time.monotonic()
    response = send(client, GOOD)
    assert response.status_code == 502
    assert "could not connect" in response.json["error"]
    assert time.monotonic() - started < 2.0


def test_no_answer_in_time_is_504_and_not_retried(client, vonage):
    vonage.script(Answer(202, {"message_uuid": "late"}, delay=3.0))
    started = time.monotonic()
    response = send(client, GOOD)
    elapsed = time.monotonic() - started
    assert response.status_code == 504
    assert "may have been sent" in response.json["error"]
    assert len(vonage.requests) == 1
    assert elapsed < 2.5  # VONAGE_TIMEOUT is 2 s in these tests


def test_504_is_remembered_so_a_retry_does_not_send_again(client, vonage):
    vonage.script(Answer(202, {"message_uuid": "late"}, delay=3.0))
    assert send(client, GOOD).status_code == 504
    retry = send(client, GOOD)
    assert retry.status_code == 504
    assert len(vonage.requests) == 1


def test_broken_connection_after_the_request_is_504_not_retried(client, vonage):
    vonage.script(Answer(drop=True))
    response = send(client, GOOD)
    assert response.status_code == 504
    assert len(vonage.requests) == 1


def test_other_failures_are_not_remembered_so_a_retry_sends(client, vonage):
    vonage.script(Answer(402, fixture("python-sdk/messages__low_balance_error.json")))
    assert send(client, GOOD).status_code == 402
    assert send(client, GOOD).status_code == 200
    assert len(vonage.requests) == 2


def test_client_ref_repeat_answers_first_result_without_sending(client, vonage):
    first = send(client, {**GOOD, "client_ref": "order-1"})
    again = send(client, {**GOOD, "text": "changed", "client_ref": "order-1"})
    assert again.status_code == 200 and again.json == first.json
    assert len(vonage.requests) == 1


def test_client_ref_is_scoped_to_the_api_key(client, vonage):
    send(client, {**GOOD, "client_ref": "order-1"})
    other = send(
        client,
        {**GOOD, "client_ref": "order-1"},
        headers={"Authorization": "Custom efgh5678:other-secret"},
    )
    assert other.status_code == 200
    assert len(vonage.sent()) == 2


def test_client_ref_over_100_characters_is_400(client, vonage):
    response = send(client, {**GOOD, "client_ref": "r" * 101})
    assert response.status_code == 400 and "client_ref" in response.json["error"]


def test_identical_send_in_window_is_answered_from_the_first(client, vonage):
    first = send(client, {**GOOD, "campaign_id": "c1"})
    again = send(client, {**GOOD, "campaign_id": "c1"})
    assert again.json == first.json
    assert len(vonage.requests) == 1


@pytest.mark.parametrize(
    "change", [{"text": "other"}, {"to": "447700900001"}, {"from": "Other"}, {"campaign_id": "c2"}]
)
def test_sends_that_differ_are_both_sent(client, vonage, change):
    send(client, {**GOOD, "campaign_id": "c1"})
    send(client, {**GOOD, "campaign_id": "c1", **change})
    assert len(vonage.sent()) == 2


def test_identical_sends_further_apart_than_the_window_are_both_sent(make_app, vonage):
    client = make_app(send_dedupe_seconds=0.3).test_client()
    send(client, GOOD)
    time.sleep(0.4)
    send(client, GOOD)
    assert len(vonage.sent()) == 2


def test_dedupe_window_zero_turns_the_check_off(make_app, vonage):
    client = make_app(send_dedupe_seconds=0).test_client()
    send(client, GOOD)
    send(client, GOOD)
    assert len(vonage.sent()) == 2


def test_concurrent_identical_sends_are_sent_once(app, vonage):
    vonage.latency = 0.5
    answers = []

    def one():
        answers.append(send(app.test_client(), GOOD))

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(vonage.requests) == 1
    assert {r.status_code for r in answers} == {200}
    assert len({r.json["trackingId"] for r in answers}) == 1


def test_opted_out_recipient_is_422_and_vonage_not_called(app, client, vonage):
    store = app.extensions["connector"].store
    store.set_subscription("447700900000", "OPTOUT", time.time(), time.time(), sync=False)
    response = send(client, GOOD)
    assert response.status_code == 422
    assert "opted out" in response.json["error"]
    assert vonage.sends() == []  # only the key and secret were checked (test_credentials.py)


def test_opted_back_in_recipient_is_sent(app, client, vonage):
    store = app.extensions["connector"].store
    store.set_subscription("447700900000", "OPTOUT", 100.0, time.time(), sync=False)
    store.set_subscription("447700900000", "OPTIN", 200.0, time.time(), sync=False)
    assert send(client, GOOD).status_code == 200


def test_customer_id_is_remembered_with_the_number(app, client, vonage):
    send(client, {**GOOD, "customer_id": "user-77"})
    assert app.extensions["connector"].store.customer_for("447700900000") == "user-77"


def test_send_goes_through_the_proxy_the_environment_names(make_app, vonage, monkeypatch):
    for name in ("NO_PROXY", "no_proxy", "HTTP_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", vonage.url)
    client = make_app(vonage_api_url="http://vonage.invalid").test_client()
    response = send(client, GOOD)
    assert response.status_code == 200
    assert vonage.requests[0]["path"] == "http://vonage.invalid/v1/messages"


def test_send_skips_the_proxy_for_a_host_in_no_proxy(make_app, vonage, monkeypatch, unused_port):
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{unused_port}")  # would refuse
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    client = make_app().test_client()
    assert send(client, GOOD).status_code == 200
    assert vonage.requests[0]["path"] == "/v1/messages"


def test_an_internal_error_releases_the_send_so_a_retry_sends(app, vonage, monkeypatch):
    store = app.extensions["connector"].store
    real = store.is_opted_out
    monkeypatch.setattr(store, "is_opted_out", lambda number: 1 / 0)
    client = app.test_client()
    assert send(client, GOOD).status_code == 500
    monkeypatch.setattr(store, "is_opted_out", real)
    assert send(client, GOOD).status_code == 200
    assert len(vonage.sent()) == 1
