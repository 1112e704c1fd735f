"""Issue 19, part 2: when Vonage's Account API cannot confirm a key and secret, the send is a
503 (not made, retry later), never the 401 of a wrong secret; only Vonage's own 401/403 is."""

import time

import pytest
from conftest import send
from standins import API_KEY, Answer, fixture

from connector.relay.credentials import legacy_ref_key

NUMBER = "447700900000"
GOOD = {"to": NUMBER, "text": "Your code is 1234"}
WRONG = {"Authorization": "Custom abcd1234:not-the-secret"}
BALANCE = {"value": 10.28, "autoReload": False}
HTML = b"<html><body><h1>502 Bad Gateway</h1></body></html>"

FAULTS = {
    "hanging": Answer(200, BALANCE, delay=5.0),
    "trickling": Answer(200, BALANCE, trickle=0.05),
    "trickling its body": Answer(200, BALANCE, trickle=0.2, trickle_body_only=True),
    "500": Answer(500, fixture("python-sdk/http_client__500.json")),
    "404": Answer(404, fixture("python-sdk/messages__not_found.json")),
    "HTML error page": Answer(502, raw=HTML, content_type="text/html"),
    "HTML 200 (a proxy's page)": Answer(200, raw=HTML, content_type="text/html"),
    "a 2xx without a balance": Answer(204, raw=b""),
    "a 4xx other than 401/403": Answer(429, fixture("python-sdk/http_client__429.json")),
}


def opted_out_app(make_app, **settings):
    app = make_app(evidence_flush_seconds=0, **settings)
    app.extensions["connector"].store.set_subscription(
        NUMBER, "OPTOUT", time.time(), time.time(), sync=False
    )
    return app


def timed_send(app, headers=None):
    started = time.monotonic()
    response = send(app.test_client(), GOOD, **({"headers": headers} if headers else {}))
    response.get_data()
    response.close()  # the trail and evidence are written as the answer closes
    return response, time.monotonic() - started


def unconfirmed(response, elapsed, timeout):
    """The 503 of a pair that could not be confirmed: within the send's deadline, saying so,
    telling nothing of the opt-out."""
    assert response.status_code == 503, response.json
    assert elapsed < timeout
    error = response.json["error"]
    assert "Account API could not confirm" in error and "not made" in error
    assert "opted out" not in error and "trackingId" not in response.json
    assert int(response.headers["Retry-After"]) >= 1


@pytest.mark.parametrize("fault", FAULTS, ids=list(FAULTS))
def test_an_account_api_that_cannot_confirm_gives_503_within_the_deadline(make_app, vonage, fault):
    app = opted_out_app(make_app)
    vonage.script(FAULTS[fault])
    response, elapsed = timed_send(app)
    unconfirmed(response, elapsed, app.extensions["connector"].settings.vonage_timeout)
    assert vonage.sends() == []
    # Not remembered as refused: once Vonage answers, the pair is confirmed and told.
    assert send(app.test_client(), {**GOOD, "text": "again"}).status_code == 422


def test_an_account_api_refusing_connections_gives_503(make_app, unused_port):
    app = opted_out_app(make_app, vonage_api_url=f"http://127.0.0.1:{unused_port}")
    response, elapsed = timed_send(app)
    unconfirmed(response, elapsed, app.extensions["connector"].settings.vonage_timeout)
    assert "could not be reached" in response.json["error"]


@pytest.mark.parametrize("status, name", [(401, "http_client__401"), (403, "http_client__403")])
def test_only_vonages_own_401_or_403_is_a_401(make_app, vonage, status, name):
    app = opted_out_app(make_app)
    vonage.script(Answer(status, fixture(f"python-sdk/{name}.json")))
    response, _ = timed_send(app)
    assert response.status_code == 401
    assert response.json["error"].startswith(f"Vonage {status}: ")
    assert "opted out" not in response.json["error"]


def test_health_and_doctor_warn_of_failing_checks_apart_from_wrong_credentials(make_app, vonage):
    app = opted_out_app(make_app)
    vonage.script(
        Answer(500, fixture("python-sdk/http_client__500.json")),
        Answer(502, raw=HTML, content_type="text/html"),
    )
    assert timed_send(app)[0].status_code == 503
    assert timed_send(app, {"Authorization": "Custom efgh5678:other-secret"})[0].status_code == 503
    health = app.test_client().get("/health")
    assert health.status_code == 200
    [warning] = [w for w in health.json["warnings"] if w["code"] == "account-api"]
    assert warning["count"] == 2
    assert "Vonage's Account API answered 502" in warning["message"]
    assert not [w for w in health.json["warnings"] if w["code"] == "vonage-credentials"]
    result = app.test_cli_runner().invoke(args=["doctor"])
    assert result.exit_code == 1 and "[account-api]" in result.output
    assert "2 checks" in result.output


def test_a_wrong_secret_is_still_401_and_remembered(make_app, vonage):
    app = opted_out_app(make_app)
    first, _ = timed_send(app, WRONG)
    assert first.status_code == 401
    again, _ = timed_send(app, WRONG)
    assert again.status_code == 401 and again.json == first.json
    assert len(vonage.balance_checks()) == 1  # the second was answered from memory


def test_a_legacy_client_ref_is_not_replayed_when_the_account_api_cannot_confirm(make_app, vonage):
    """The earlier answer stays untold (503, no trackingId) until Vonage vouches for the pair."""
    app = make_app()
    store = app.extensions["connector"].store
    key, first = legacy_ref_key(API_KEY, "order-old"), {"trackingId": "old-uuid", "status": "sent"}
    claim = store.claim_send(key, time.time(), None, 10.0, NUMBER)
    store.finish_send(key, claim.token, 200, first, time.time(), True, "old-uuid")
    vonage.script(Answer(503, raw=HTML, content_type="text/html"))
    response = send(app.test_client(), {**GOOD, "client_ref": "order-old"})
    assert response.status_code == 503 and "trackingId" not in response.json
    assert int(response.headers["Retry-After"]) >= 1
    assert send(app.test_client(), {**GOOD, "client_ref": "order-old"}).json == first
    assert vonage.sends() == []
