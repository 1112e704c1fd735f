"""Issue 19 part 3: Messages API webhooks in v0.1 as well as v1, on both routes, become the same
events; a signed webhook the connector does not translate is acknowledged, logged and warned
about, never refused (a 4xx is not retried, and the body may be someone's STOP)."""

import logging

import pytest
from conftest import send, status_body, webhook
from standins import fixture

V01_STATUS = "spec-v0.1/message-status.json"
V01_INBOUND = "spec-v0.1/inbound-sms.json"
V1_STATUS = "dotnet-sdk/ShouldDeserializeStatus-response.json"
V1_INBOUND = "dotnet-sdk/ShouldDeserializeSms-response.json"


def tracked(moengage):
    return [r["json"] for r in moengage.posts("/sms/dlr/custom/42") if r["status"] == 200]


def as_v1_status(v01):
    """The same status as a v1 webhook carries it (spec v1 `messageStatusSMS`)."""
    error = v01["error"]
    return {
        **v01,
        "to": v01["to"]["number"],
        "from": v01["from"]["number"],
        "channel": "sms",
        "error": {
            "type": f"https://developer.vonage.com/api-errors/messages#{error['code']}",
            "title": str(error["code"]),
            "detail": error["reason"],
            "instance": "bf0ca0bf927b3b52e3cb03217e1a1ddf",
        },
    }


def as_v1_inbound(v01):
    return {
        "channel": "sms",
        "message_uuid": v01["message_uuid"],
        "to": v01["to"]["number"],
        "from": v01["from"]["number"],
        "timestamp": v01["timestamp"],
        "text": v01["message"]["content"]["text"],
        "sms": v01["message"]["sms"],
        "usage": v01["usage"],
    }


def test_v01_rejected_status_keeps_vonages_code_and_reason(client, moengage):
    body = {**fixture(V01_STATUS), "status": "rejected"}
    assert webhook(client, "/webhooks/status", body).status_code == 200
    assert tracked(moengage) == [
        {
            "trackingId": "aaaaaaaa-bbbb-cccc-dddd-0123456789ab",
            "status": "failed",
            "error": "1300 Not part of the provider network",
            "timestamp": "2020-01-01T14:00:00.000Z",
        }
    ]


def test_v01_status_code_and_reason_reach_the_trail(app, client, moengage):
    body = {**fixture(V01_STATUS), "status": "rejected"}
    webhook(client, "/webhooks/status", body)
    result = app.test_cli_runner().invoke(
        args=["trace", "aaaaaaaa-bbbb-cccc-dddd-0123456789ab", "--json"]
    )
    assert '"code": "1300"' in result.output
    assert '"reason": "Not part of the provider network"' in result.output


def one_event_each(client, moengage, path, bodies, id_field):
    """The event each body became, its message id left out (each body has its own)."""
    events = []
    for n, body in enumerate(bodies):
        moengage.reset()
        assert webhook(client, path, {**body, "message_uuid": f"m-{n}"}).status_code == 200
        [event] = tracked(moengage)
        assert event.pop(id_field) == f"m-{n}"
        events.append(event)
    return events


@pytest.mark.parametrize("status", ["submitted", "delivered", "rejected", "undeliverable"])
def test_a_status_in_either_version_is_the_same_event(client, moengage, status):
    bodies = [fixture(V01_STATUS), as_v1_status(fixture(V01_STATUS))]
    bodies = [{**body, "status": status} for body in bodies]
    v01, v1 = one_event_each(client, moengage, "/webhooks/status", bodies, "trackingId")
    assert v01 == v1


def test_the_v1_sdk_status_fixture_rejected_carries_its_code(client, moengage):
    body = {**fixture(V1_STATUS), "status": "rejected"}
    webhook(client, "/webhooks/status", body)
    assert tracked(moengage)[0]["error"].startswith("1000 Throttled - You have exceeded")


def test_a_v01_inbound_is_the_same_event_as_v1(client, moengage):
    bodies = [fixture(V01_INBOUND), as_v1_inbound(fixture(V01_INBOUND))]
    v01, v1 = one_event_each(client, moengage, "/webhooks/inbound", bodies, "messageId")
    assert v01 == v1
    assert (v01["from"], v01["to"], v01["text"]) == (
        "447700900001",
        "447700900000",
        "Hello From Vonage!",
    )


def test_a_v01_stop_opts_out_and_the_next_send_is_refused(client, moengage, vonage):
    body = fixture(V01_INBOUND)
    body["message"]["content"]["text"] = "STOP"
    assert webhook(client, "/webhooks/inbound", body).status_code == 200
    assert tracked(moengage)[0]["subscription"] == "OPTOUT"
    refused = send(client, {"to": "447700900001", "text": "Flash sale"})
    assert refused.status_code == 422 and vonage.sent() == []


def test_the_v1_sdk_inbound_fixture_still_reads(client, moengage):
    assert webhook(client, "/webhooks/inbound", fixture(V1_INBOUND)).status_code == 200
    assert tracked(moengage)[0]["text"] == "Hello From Vonage!"


def v01_inbound(content, channel="sms"):
    body = fixture(V01_INBOUND)
    body["from"]["type"] = body["to"]["type"] = channel
    body["message"]["content"] = content
    return body


UNTRANSLATED = [
    ("v0.1 whatsapp inbound", v01_inbound({"type": "text", "text": "STOP"}, "whatsapp")),
    (
        "v0.1 sms inbound with image content",
        v01_inbound({"type": "image", "image": {"url": "https://example.com/image.jpg"}}),
    ),
    ("v0.1 sms inbound with no content", {**fixture(V01_INBOUND), "message": {}}),
    (
        "v1 mms image inbound",
        {
            **fixture(V1_INBOUND),
            "channel": "mms",
            "message_type": "image",
            "image": {"url": "https://example.com/image.jpg"},
        },
    ),
    ("v1 whatsapp text inbound", {**fixture(V1_INBOUND), "channel": "whatsapp"}),
]


@pytest.mark.parametrize("form, body", UNTRANSLATED, ids=[u[0] for u in UNTRANSLATED])
def test_a_signed_webhook_it_cannot_translate_is_acknowledged_logged_and_warned(
    make_app, moengage, caplog, form, body
):
    app = make_app(evidence_flush_seconds=0)
    with caplog.at_level(logging.WARNING, logger="connector"):
        answer = webhook(app.test_client(), "/webhooks/inbound", body)
    assert answer.status_code == 200 and answer.json == {"status": "ignored"}
    answer.close()  # the warnings' evidence is written once the answer is out
    assert moengage.requests == []
    assert f"acknowledged, not forwarded: {form}" in caplog.text
    [warning] = app.test_client().get("/health").json["warnings"]
    assert warning["code"] == "untranslated-webhooks" and form in warning["message"]
    assert '"Webhook version"' in warning["fix"]
    result = app.test_cli_runner().invoke(args=["doctor"])
    assert result.exit_code == 1 and "Webhook version" in result.output


def test_an_unknown_channels_status_is_acknowledged_as_before(client, moengage):
    body = status_body("read", to={"type": "whatsapp", "number": "447700900000"})
    assert webhook(client, "/webhooks/status", body).json == {"status": "ignored"}
    assert moengage.requests == []
