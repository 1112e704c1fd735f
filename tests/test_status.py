"""Contract section 2: status webhooks mapped, forwarded once, never lost."""

import threading
import time

import pytest
from conftest import inbound_body, sign, status_body, webhook
from standins import Answer, fixture

UUID = "aaaaaaaa-bbbb-4ccc-8ddd-0123456789ab"


def forwarded(moengage):
    """The events MoEngage accepted."""
    return [r["json"] for r in moengage.posts("/sms/dlr/custom/42") if r["status"] == 200]


def test_delivered_is_forwarded_to_the_exact_tracking_url(client, moengage):
    response = webhook(client, "/webhooks/status", status_body("delivered"))
    assert response.status_code == 200
    [post] = moengage.requests
    assert post["path"] == "/sms/dlr/custom/42?region=eu"
    assert post["json"] == {
        "trackingId": UUID,
        "status": "delivered",
        "timestamp": "2025-02-03T12:14:25Z",
    }


@pytest.mark.parametrize(
    "vonage_status, mapped",
    [
        ("submitted", "sent"),
        ("delivered", "delivered"),
        ("rejected", "failed"),
        ("undeliverable", "failed"),
        ("failed", "failed"),
    ],
)
def test_status_mapping(client, moengage, vonage_status, mapped):
    webhook(client, "/webhooks/status", status_body(vonage_status))
    assert forwarded(moengage)[0]["status"] == mapped


def test_failure_carries_code_and_detail(client, moengage):
    body = status_body(
        "rejected",
        error={
            "type": "https://developer.vonage.com/api-errors/messages#1250",
            "title": "1250",
            "detail": "Unroutable",
            "instance": "x",
        },
    )
    webhook(client, "/webhooks/status", body)
    assert forwarded(moengage)[0]["error"] == "1250 Unroutable"


def test_failure_without_error_object_names_the_vonage_status(client, moengage):
    webhook(client, "/webhooks/status", status_body("undeliverable"))
    assert forwarded(moengage)[0]["error"] == "undeliverable"


def test_sent_and_delivered_carry_no_error(client, moengage):
    """The SDK fixture is a `submitted` with an error object: still no error forwarded."""
    body = fixture("dotnet-sdk/ShouldDeserializeStatus-response.json")
    assert webhook(client, "/webhooks/status", body).status_code == 200
    assert forwarded(moengage) == [
        {"trackingId": UUID, "status": "sent", "timestamp": "2025-02-03T12:14:25Z"}
    ]


@pytest.mark.parametrize("other", ["read", "accepted", "buffered", "unknown"])
def test_other_statuses_are_acknowledged_not_forwarded(client, moengage, other):
    response = webhook(client, "/webhooks/status", status_body(other))
    assert response.status_code == 200
    assert moengage.requests == []


@pytest.mark.parametrize(
    "body",
    [
        {"status": "delivered"},
        {"message_uuid": UUID},
        {"message_uuid": 5, "status": "delivered"},
        [1, 2],
        "x",
    ],
)
def test_body_without_message_uuid_and_status_is_400(client, moengage, body):
    assert webhook(client, "/webhooks/status", body).status_code == 400
    assert moengage.requests == []


def test_signed_non_json_is_400(client, moengage):
    raw = b"not json"
    assert client.post("/webhooks/status", data=raw, headers=sign(raw)).status_code == 400


def test_redelivery_is_200_and_not_forwarded_again(client, moengage):
    body = status_body("delivered")
    assert webhook(client, "/webhooks/status", body).status_code == 200
    assert webhook(client, "/webhooks/status", body).status_code == 200
    assert len(forwarded(moengage)) == 1


def test_concurrent_identical_deliveries_are_forwarded_once(app, moengage):
    moengage.latency = 0.3
    codes = []

    def deliver():
        codes.append(webhook(app.test_client(), "/webhooks/status", status_body()).status_code)

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes == [200] * 8
    assert len(forwarded(moengage)) == 1


def test_each_status_of_a_message_is_forwarded_once(client, moengage):
    for status in ("submitted", "submitted", "delivered", "delivered"):
        webhook(client, "/webhooks/status", status_body(status))
    assert [e["status"] for e in forwarded(moengage)] == ["sent", "delivered"]


@pytest.mark.parametrize(
    "final, later",
    [
        ("delivered", "submitted"),
        ("rejected", "submitted"),
        ("delivered", "rejected"),
        ("failed", "delivered"),
    ],
)
def test_nothing_is_forwarded_after_a_final_status(client, moengage, final, later):
    webhook(client, "/webhooks/status", status_body(final))
    assert webhook(client, "/webhooks/status", status_body(later)).status_code == 200
    assert len(forwarded(moengage)) == 1


@pytest.mark.parametrize(
    "outage",
    [
        Answer(503, {}),
        Answer(500, {}),
        Answer(404, {}),
        Answer(302, headers={"Location": "http://169.254.169.254/"}),
        Answer(200, {}, delay=1.5),
        Answer(drop=True),
    ],
)
def test_moengage_not_accepting_is_503_and_kept_pending(make_app, moengage, outage):
    app = make_app(moengage_timeout=1.0)
    client = app.test_client()
    moengage.script(outage)
    assert webhook(client, "/webhooks/status", status_body()).status_code == 503
    assert len(app.extensions["connector"].store.pending_events()) == 1
    assert len(moengage.requests) == 1  # a redirect is not followed
    # Vonage redelivers once MoEngage is back: forwarded, and only once more.
    assert webhook(client, "/webhooks/status", status_body()).status_code == 200
    assert app.extensions["connector"].store.pending_events() == []
    assert len(moengage.requests) == 2


def test_moengage_refusing_connections_is_503(make_app, unused_port):
    app = make_app(moengage_delivery_url=f"http://127.0.0.1:{unused_port}/sms/dlr/custom/1")
    assert webhook(app.test_client(), "/webhooks/status", status_body()).status_code == 503
    assert len(app.extensions["connector"].store.pending_events()) == 1


def wait_until(condition, seconds=10.0):
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    return condition()


def test_events_left_pending_are_swept_while_requests_arrive(make_app, moengage):
    app = make_app(pending_sweep_seconds=0.2)
    client, store = app.test_client(), app.extensions["connector"].store
    moengage.script(Answer(503, {}))
    assert webhook(client, "/webhooks/status", status_body("submitted")).status_code == 503
    # No redelivery: any request (here /health) lets the sweep run, in the background.
    assert wait_until(lambda: client.get("/health") and not store.pending_events())
    assert [e["status"] for e in forwarded(moengage)] == ["sent"]


def test_an_event_whose_worker_died_mid_forward_is_swept_once_its_lease_lapses(make_app, moengage):
    app = make_app(pending_sweep_seconds=0.2)
    client, store = app.test_client(), app.extensions["connector"].store
    _, event_id, _ = store.record_status(UUID, "delivered", True, {"trackingId": UUID}, time.time())
    store.lease_event(event_id, time.time(), 0.5)  # a worker took it, then was killed
    assert wait_until(lambda: client.get("/health") and not store.pending_events())
    assert [e["trackingId"] for e in forwarded(moengage)] == [UUID]


def test_redelivery_of_an_event_another_live_worker_holds_is_answered_once_it_is_sent(
    app, moengage
):
    store = app.extensions["connector"].store
    _, event_id, _ = store.record_status(UUID, "delivered", True, status_body(), time.time())
    lease = store.lease_event(event_id, time.time(), 30.0)  # another worker is forwarding it
    threading.Timer(0.3, store.event_sent, (event_id, time.time())).start()
    response = webhook(app.test_client(), "/webhooks/status", status_body("delivered"))
    assert lease.outcome == "leased" and response.status_code == 200
    assert moengage.requests == []  # that worker sent it: not posted twice


def test_redelivery_of_an_event_a_dead_worker_holds_is_503_until_its_lease_lapses(
    make_app, moengage
):
    app = make_app(moengage_timeout=0.2)
    client, store = app.test_client(), app.extensions["connector"].store
    _, event_id, _ = store.record_status(UUID, "delivered", True, status_body(), time.time())
    store.lease_event(event_id, time.time(), 2.5)  # its worker was killed mid-forward
    held = webhook(client, "/webhooks/status", status_body("delivered"))
    assert held.status_code == 503 and "another worker" in held.json["error"]
    assert moengage.requests == []
    assert wait_until(
        lambda: webhook(client, "/webhooks/status", status_body("delivered")).status_code == 200
    )
    assert len(forwarded(moengage)) == 1 and store.pending_events() == []


def test_inbound_and_status_share_no_dedupe_key(client, moengage):
    body = inbound_body("hello", message_uuid=UUID)
    webhook(client, "/webhooks/inbound", body)
    webhook(client, "/webhooks/status", status_body("delivered"))
    assert len(forwarded(moengage)) == 2


def test_forward_goes_through_the_proxy_the_environment_names(make_app, moengage, monkeypatch):
    for name in ("NO_PROXY", "no_proxy", "HTTP_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", moengage.url)
    app = make_app(moengage_delivery_url="http://moengage.invalid/sms/dlr/custom/42")
    assert webhook(app.test_client(), "/webhooks/status", status_body()).status_code == 200
    assert moengage.requests[0]["path"] == "http://moengage.invalid/sms/dlr/custom/42"
