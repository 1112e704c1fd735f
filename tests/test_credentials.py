"""Callers without the right secret: the Vonage API key is public (every webhook JWT carries
it), so nothing a send answers from the connector's own state rests on the key alone."""

import threading
import time

from conftest import AUTH, send
from standins import API_KEY, API_SECRET, Answer

from connector.relay.credentials import legacy_ref_key, pair_hash

NUMBER = "447700900000"
GOOD = {"to": NUMBER, "text": "Your code is 1234"}
WRONG = {"Authorization": f"Custom {API_KEY}:not-the-secret"}
OTHER = {"Authorization": "Custom efgh5678:other-secret"}
WORKSPACE = {"moengage_workspace_id": "WS123", "moengage_data_api_key": "data-key-xyz"}


def opt_out(app, number=NUMBER):
    store = app.extensions["connector"].store
    store.set_subscription(number, "OPTOUT", time.time(), time.time(), sync=False)
    return store


# -- 15 (a): no replay of another pair's answer -----------------------------------------------


def test_a_wrong_secret_does_not_replay_a_client_ref(client, vonage):
    first = send(client, {**GOOD, "client_ref": "order-1"})
    assert first.status_code == 200
    stolen = send(client, {**GOOD, "client_ref": "order-1"}, headers=WRONG)
    assert stolen.status_code == 401
    assert "trackingId" not in stolen.json
    assert send(client, {**GOOD, "client_ref": "order-1"}).json == first.json  # still replays


def test_a_wrong_secret_does_not_replay_an_identical_send(client, vonage):
    first = send(client, GOOD)
    stolen = send(client, GOOD, headers=WRONG)
    assert stolen.status_code == 401 and "trackingId" not in stolen.json
    assert send(client, GOOD).json == first.json
    assert len(vonage.sent()) == 1


def test_the_store_holds_a_keyed_hash_never_the_secret(make_app, vonage, backend):
    send(make_app().test_client(), {**GOOD, "client_ref": "order-1"})
    app = make_app()  # another worker: the pair is checked with the Account API, and kept
    store = opt_out(app, "447700900005")
    assert send(app.test_client(), {**GOOD, "to": "447700900005"}).status_code == 422
    assert len(vonage.balance_checks()) == 1
    dump = repr(store.query("SELECT * FROM sends")) + repr(
        store.query("SELECT * FROM accepted_credentials")
    )
    assert API_SECRET not in dump and API_KEY not in dump
    assert store.credentials_accepted_at(pair_hash(API_KEY, API_SECRET)) is not None
    assert pair_hash(API_KEY, API_SECRET) != pair_hash(API_KEY, "not-the-secret")


def test_a_client_ref_remembered_before_the_upgrade_replays_only_for_a_good_pair(
    app, client, vonage
):
    """Keys made before they included the secret still stop a rerun, once Vonage vouches."""
    store = app.extensions["connector"].store
    key, first = legacy_ref_key(API_KEY, "order-old"), {"trackingId": "old-uuid", "status": "sent"}
    claim = store.claim_send(key, time.time(), None, 10.0, NUMBER)
    store.finish_send(key, claim.token, 200, first, time.time(), True, "old-uuid")
    stolen = send(client, {**GOOD, "client_ref": "order-old"}, headers=WRONG)
    assert stolen.status_code == 401 and "trackingId" not in stolen.json
    assert send(client, {**GOOD, "client_ref": "order-old"}).json == first
    assert vonage.sends() == []
    assert send(client, {**GOOD, "client_ref": "order-new"}).status_code == 200


# -- 15 (b): a wrong secret in flight is not joined -------------------------------------------


def test_a_wrong_secret_in_flight_does_not_make_the_real_send_fail(app, vonage):
    vonage.latency = 0.6  # Vonage takes its time over the wrong secret's 401
    answers = {}

    def one(name, headers):
        answers[name] = send(app.test_client(), {**GOOD, "client_ref": "order-7"}, headers)

    wrong = threading.Thread(target=one, args=("wrong", WRONG))
    wrong.start()
    time.sleep(0.2)  # the real send arrives while the wrong one is with Vonage
    vonage.latency = 0.0
    one("real", AUTH)
    wrong.join()
    assert answers["wrong"].status_code == 401
    assert answers["real"].status_code == 200
    assert len(vonage.sent()) == 1


# -- 15 (c): an opt-out is told only to a pair Vonage accepted --------------------------------


def test_an_opt_out_is_not_told_to_a_wrong_secret(app, client, vonage):
    opt_out(app)
    response = send(client, GOOD, headers=WRONG)
    assert response.status_code == 401
    assert "opted out" not in response.json["error"]
    assert vonage.sends() == []
    # Answered as Vonage answers a send with that secret.
    assert response.json == send(client, {**GOOD, "to": "447700900009"}, headers=WRONG).json


def test_an_opt_out_is_told_after_vonage_confirms_an_unknown_pair_once(make_app, vonage):
    app = make_app()
    opt_out(app)
    client = app.test_client()
    assert send(client, GOOD).status_code == 422
    assert send(client, {**GOOD, "text": "again"}).status_code == 422
    [check] = vonage.balance_checks()
    assert check["headers"]["Authorization"].startswith("Basic ")
    assert vonage.sends() == []
    # Kept in the store: another process (or a restart) does not ask again.
    assert send(make_app().test_client(), {**GOOD, "text": "third"}).status_code == 422
    assert len(vonage.balance_checks()) == 1


def test_a_pair_vonage_accepted_on_a_send_needs_no_check(app, client, vonage):
    assert send(client, {**GOOD, "to": "447700900001"}).status_code == 200
    opt_out(app)
    assert send(client, GOOD).status_code == 422
    assert vonage.balance_checks() == []


def test_a_send_vonage_took_writes_nothing_more_to_the_store(app, client, vonage):
    """The send's path stays as it was: the pair is remembered in memory only."""
    assert send(client, GOOD).status_code == 200
    store = app.extensions["connector"].store
    assert store.credentials_accepted_at(pair_hash(API_KEY, API_SECRET)) is None


def test_an_unconfirmed_pair_is_503_when_the_account_api_fails(app, client, vonage):
    """Issue 19 part 2: not 401 (a wrong secret) but 503, and still no word of the opt-out."""
    opt_out(app)
    vonage.script(Answer(500, {"title": "Internal Server Error"}))
    response = send(client, GOOD)
    assert response.status_code == 503
    assert "opted out" not in response.json["error"]
    assert send(client, GOOD).status_code == 422  # confirmed once Vonage answers


def test_a_pair_accepted_long_ago_is_checked_again(app, client, vonage):
    store = app.extensions["connector"].store
    store.credentials_accepted(pair_hash(API_KEY, API_SECRET), time.time() - 2 * 86400)
    opt_out(app)
    assert send(client, GOOD).status_code == 422
    assert len(vonage.balance_checks()) == 1


# -- 16: the number -> customer_id link, and VONAGE_API_KEYS ----------------------------------


def test_a_refused_send_does_not_re_point_a_number(app, client, vonage):
    assert send(client, {**GOOD, "customer_id": "user-1"}).status_code == 200
    refused = send(client, {**GOOD, "text": "x", "customer_id": "attacker"}, headers=WRONG)
    assert refused.status_code == 401
    assert app.extensions["connector"].store.customer_for(NUMBER) == "user-1"


def test_a_refused_send_to_an_opted_out_number_neither_links_nor_syncs(make_app, vonage, moengage):
    app = make_app(**WORKSPACE)
    store = opt_out(app)
    response = send(app.test_client(), {**GOOD, "customer_id": "attacker"}, headers=WRONG)
    assert response.status_code == 401
    response.close()
    assert store.customer_for(NUMBER) is None
    assert moengage.posts("/v1/customer/") == []
    # The team's own send names the user: linked, and the waiting STOP synced to them.
    response = send(app.test_client(), {**GOOD, "customer_id": "user-42"})
    assert response.status_code == 422
    response.close()
    assert store.customer_for(NUMBER) == "user-42"
    [call] = moengage.posts("/v1/customer/")
    assert call["json"]["customer_id"] == "user-42"


def test_a_send_vonage_did_not_take_does_not_link(app, client, vonage):
    vonage.script(Answer(402, {"title": "Low balance"}))
    assert send(client, {**GOOD, "customer_id": "user-1"}).status_code == 402
    assert app.extensions["connector"].store.customer_for(NUMBER) is None


def test_api_keys_limit_refuses_other_keys_without_calling_vonage(make_app, vonage):
    client = make_app(vonage_api_keys=(API_KEY,)).test_client()
    refused = send(client, {**GOOD, "customer_id": "x"}, headers=OTHER)
    assert refused.status_code == 401
    assert "API key" in refused.json["error"]
    assert vonage.requests == []
    assert send(client, GOOD).status_code == 200


def test_health_says_whether_the_api_keys_are_limited(make_app):
    assert make_app().test_client().get("/health").json["api_keys_limited"] is False
    limited = make_app(vonage_api_keys=(API_KEY, "efgh5678")).test_client()
    assert limited.get("/health").json["api_keys_limited"] is True
