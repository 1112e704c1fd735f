"""The warnings: each provoked through real traffic, seen in `GET /health` (still 200) and in
`flask doctor` (exit 1), and seen to clear. Evidence is flushed after every answer here
(EVIDENCE_FLUSH_SECONDS=0); time passing is simulated by ageing the stored evidence."""

import json

import pytest
from conftest import AUTH, SIGNATURE_SECRET, inbound_body, sign, status_body, webhook
from standins import API_SECRET, Answer, fixture

NUMBER = "447700900000"
WORKSPACE = {"moengage_workspace_id": "WS123", "moengage_data_api_key": "data-key-xyz"}
SECRETS = (API_SECRET, SIGNATURE_SECRET, "data-key-xyz", "wrong-secret", NUMBER, "9876543210")


@pytest.fixture
def make(make_app):
    def build(**overrides):
        return make_app(evidence_flush_seconds=0, **overrides)

    return build


def done(response):
    response.get_data()
    response.close()
    return response


def send(client, headers=AUTH, **body):
    return done(client.post("/", json={"to": NUMBER, "text": "hi", **body}, headers=headers))


def warnings(app, code=None):
    """/health's warnings (of `code`), checking it stays 200 and shows no secret or number."""
    response = done(app.test_client().get("/health"))
    assert response.status_code == 200
    assert not any(secret in response.get_data(as_text=True) for secret in SECRETS)
    found = response.get_json()["warnings"]
    return [w for w in found if code is None or w["code"] == code]


def doctor(app):
    result = app.test_cli_runner().invoke(args=["doctor"])
    assert not any(secret in result.output for secret in SECRETS)
    return result


def age(app, seconds):
    """As if `seconds` passed: every stored sighting and trail row is that much older."""
    with app.extensions["connector"].store.transaction() as tx:
        tx.execute(
            "UPDATE evidence SET since = since - ?, last_seen = last_seen - ?", (seconds,) * 2
        )
        tx.execute("UPDATE trail SET at = at - ?", (seconds,))


def seen_then_cleared(app, code):
    """The warning is there, and gone once its evidence is older than the clearing window."""
    [warning] = warnings(app, code)
    result = doctor(app)
    assert result.exit_code == 1 and f"[{code}]" in result.output
    age(app, app.extensions["connector"].settings.warning_clear_seconds + 1)
    assert warnings(app, code) == []
    return warning


def test_no_warning_and_doctor_exits_0_on_a_healthy_connector(make, moengage):
    app = make()
    uuid = send(app.test_client()).get_json()["trackingId"]
    done(webhook(app.test_client(), "/webhooks/status", status_body("delivered", uuid)))
    assert warnings(app) == []
    result = doctor(app)
    assert result.exit_code == 0 and "No problem found" in result.output


@pytest.mark.parametrize(
    "header, form",
    [
        (f"Basic abcd1234:{API_SECRET}", "scheme `Basic`, a key and a secret separated by a colon"),
        ("Custom abcd1234Secr3t", "scheme `Custom`, no colon between key and secret"),
        (f"abcd1234:{API_SECRET}", "no recognised scheme and nothing after it"),
        (None, "no Authorization header"),
        ("Custom abcd1234:Secr\u00e9t", "scheme `Custom`, a key and a secret holding other than"),
    ],
)
def test_1_send_authorization_header_not_custom(make, vonage, header, form):
    app = make()
    headers = {"Authorization": header} if header else {}
    for _ in range(2):
        assert send(app.test_client(), headers=headers).status_code == 401
    warning = seen_then_cleared(app, "send-authorization")
    assert warning["count"] == 2 and form in warning["message"]
    assert "Custom <Vonage API key>:<Vonage API secret>" in warning["fix"]
    assert vonage.requests == []


def test_2_vonage_refusing_key_and_secret_or_balance(make, vonage):
    app = make()
    wrong = {"Authorization": "Custom abcd1234:wrong-secret"}
    assert send(app.test_client(), headers=wrong).status_code == 401
    vonage.script(Answer(402, fixture("python-sdk/messages__low_balance_error.json")))
    assert send(app.test_client()).status_code == 402
    found = warnings(app, "vonage-credentials")
    assert [w["message"].split(":")[0] for w in found] == [
        "Vonage refused the API key and secret (401)",
        "Vonage refused sends for low balance (402)",
    ]
    assert warnings(app, "send-authorization") == []  # the header itself was well formed
    result = doctor(app)
    assert result.exit_code == 1 and "Top up" in result.output
    age(app, 3601)
    assert warnings(app, "vonage-credentials") == []


@pytest.mark.parametrize(
    "tamper, says",
    [
        ("secret", "signed with a secret that is not VONAGE_SIGNATURE_SECRET"),
        ("body", "the body is not the one Vonage signed (payload_hash)"),
        ("missing", "without an Authorization header"),
    ],
)
def test_3_webhooks_unsigned_or_badly_signed_say_which_check(make, moengage, tamper, says):
    app = make()
    raw = json.dumps(status_body("delivered")).encode()
    headers = {
        "secret": sign(raw, secret="another-secret-" + "x" * 40),
        "body": sign(raw + b" "),
        "missing": {"Content-Type": "application/json"},
    }[tamper]
    response = done(app.test_client().post("/webhooks/status", data=raw, headers=headers))
    assert response.status_code in (401, 503)
    warning = seen_then_cleared(app, "webhook-signature")
    assert says in warning["message"]
    assert moengage.requests == []


def test_4_no_status_webhook_after_accepted_sends(make, moengage):
    quiet = make()  # the default window: a send just made is no evidence yet
    send(quiet.test_client())
    assert warnings(quiet, "no-status-webhooks") == []
    app = make(status_silence_seconds=0, public_url="http://localhost")
    client = app.test_client()
    uuid = send(client).get_json()["trackingId"]
    [warning] = warnings(app, "no-status-webhooks")
    assert warning["count"] == 2
    assert "Status URL" in warning["fix"] and "Messages API" in warning["fix"]
    assert "http://localhost/webhooks/status" in warning["fix"]
    assert doctor(app).exit_code == 1
    done(webhook(client, "/webhooks/status", status_body("submitted", uuid)))
    assert warnings(app, "no-status-webhooks") == []  # Vonage posts here after all
    send(client, text="again")
    assert len(warnings(app, "no-status-webhooks")) == 1
    age(app, 3601)  # and sends stopped: it clears by itself
    assert warnings(app, "no-status-webhooks") == []


def test_5_moengage_refusing_forwarded_events(make, moengage):
    app = make()
    moengage.script(Answer(403, {}), Answer(403, {}))
    client = app.test_client()
    assert done(webhook(client, "/webhooks/status", status_body("submitted"))).status_code == 503
    delivered = status_body("delivered", "other-message")  # a final would drop the first
    assert done(webhook(client, "/webhooks/status", delivered)).status_code == 503
    [warning] = warnings(app, "moengage-refusing")
    assert "last answer: MoEngage answered 403" in warning["message"]
    assert "2 events pending, the oldest" in warning["message"]
    assert "MOENGAGE_DELIVERY_URL" in warning["fix"] and "push" in warning["fix"]
    assert doctor(app).exit_code == 1
    assert app.test_cli_runner().invoke(args=["push"]).exit_code == 0
    assert warnings(app, "moengage-refusing") == []  # nothing pending any more


def test_6_data_api_refusing_syncs(make, moengage, vonage):
    app = make(**WORKSPACE)
    client = app.test_client()
    send(client, customer_id="user-42")
    moengage.script(Answer(200, {}), Answer(401, {"error": "bad key"}))
    done(webhook(client, "/webhooks/inbound", inbound_body("STOP")))
    [warning] = warnings(app, "data-api")
    assert "Data API refused 1" in warning["message"] and "401" in warning["message"]
    assert "MOENGAGE_WORKSPACE_ID" in warning["fix"]
    assert doctor(app).exit_code == 1
    assert app.test_cli_runner().invoke(args=["push"]).exit_code == 0  # key fixed: synced
    assert warnings(app, "data-api") == []


def test_6_opt_outs_without_customer_id_cannot_be_synced(make, moengage):
    app = make(**WORKSPACE)
    done(webhook(app.test_client(), "/webhooks/inbound", inbound_body("STOP", sender=NUMBER)))
    warning = seen_then_cleared(app, "data-api")
    assert "no send to those numbers carried a customer_id" in warning["message"]
    assert "customer_id" in warning["fix"]


def test_7_carrier_rejections_cluster_by_country_and_code(make, moengage):
    app = make()
    client = app.test_client()
    error = {"type": "x", "title": "1480", "detail": "Entity Filter"}
    for n in range(5):
        body = status_body("rejected", f"aaaaaaaa-bbbb-4ccc-8ddd-00000000000{n}", error=error)
        done(webhook(client, "/webhooks/status", {**body, "to": f"91987654321{n}"}))
        if n == 3:
            assert warnings(app, "carrier-rejections") == []  # 4 are not a cluster yet
    other = status_body("rejected", error={"title": "1250", "detail": "Unroutable"})
    done(webhook(client, "/webhooks/status", other))
    warning = seen_then_cleared(app, "carrier-rejections")
    assert warning["message"].startswith(
        "5 messages to +91 (India) rejected with Vonage error 1480"
    )
    assert "entity_id" in warning["message"] and "entity_id" in warning["fix"]


def test_8_requests_for_another_host_than_public_url(make, vonage):
    app = make(public_url="https://sms.example.com/")
    send(app.test_client(), headers={**AUTH, "Host": "sms.example.com"})
    send(app.test_client(), headers={**AUTH, "Host": "SMS.example.com:443"}, text="port")
    assert warnings(app, "wrong-host") == []
    send(app.test_client())  # the test client's host: localhost
    warning = seen_then_cleared(app, "wrong-host")
    assert "host localhost, not PUBLIC_URL's sms.example.com" in warning["message"]
    assert "PUBLIC_URL" in warning["fix"]


def test_a_new_episode_counts_from_one(make, vonage):
    app = make()
    bad = {"Authorization": "Basic x"}
    send(app.test_client(), headers=bad)
    send(app.test_client(), headers=bad)
    age(app, 3601)
    send(app.test_client(), headers=bad)
    [warning] = warnings(app, "send-authorization")
    assert warning["count"] == 1


def test_evidence_waits_in_memory_between_flushes(make_app, vonage):
    """With the default flush period, a worker writes its counters at most every few seconds."""
    app = make_app()  # EVIDENCE_FLUSH_SECONDS = 5
    bad = {"Authorization": "Basic x"}
    send(app.test_client(), headers=bad)  # the first sighting is written (nothing flushed yet)
    send(app.test_client(), headers=bad)  # this one waits in memory
    assert warnings(app, "send-authorization")[0]["count"] == 1
    app.extensions["connector"].evidence.flush(app.extensions["connector"].store)
    assert "Seen 2 times" in doctor(app).output  # /health: its worker's read, 2.5 s at most
