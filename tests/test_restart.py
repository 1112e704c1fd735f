"""What must survive a crash survives it: gunicorn killed with -9, then started again."""
import concurrent.futures
import time

import requests

from conftest import AUTH, SIGNATURE_SECRET
from gunicorn_proc import Connector
from standins import Answer

BODY = {"to": "447700900000", "text": "Your order shipped", "client_ref": "order-9"}


def connector_env(database, vonage, moengage, **extra):
    """The connector's environment; DATABASE_URL empty (SQLite) or naming the test's schema."""
    return {"DATABASE_PATH": database["database_path"],
            "DATABASE_URL": database["database_url"], "VONAGE_API_URL": vonage.url,
            "MOENGAGE_DELIVERY_URL": f"{moengage.url}/sms/dlr/custom/42",
            "VONAGE_SIGNATURE_SECRET": SIGNATURE_SECRET, "VONAGE_FROM": "Acme",
            "VONAGE_TIMEOUT": "2", **extra}


def test_idempotency_survives_kill_and_restart(tmp_path, database, vonage, moengage):
    env = connector_env(database, vonage, moengage)
    first = Connector(env).start(tmp_path / "gunicorn.log")
    try:
        answer = requests.post(first.url, json=BODY, headers=AUTH, timeout=5)
    finally:
        first.kill()
    again = Connector(env).start(tmp_path / "gunicorn.log")
    try:
        retry = requests.post(again.url, json=BODY, headers=AUTH, timeout=5)
    finally:
        again.kill()
    assert answer.status_code == retry.status_code == 200
    assert retry.json() == answer.json()
    assert len(vonage.requests) == 1


def test_identical_sends_across_workers_are_sent_once(tmp_path, database, vonage, moengage):
    vonage.latency = 0.5
    connector = Connector(connector_env(database, vonage, moengage), workers=3).start(
        tmp_path / "gunicorn.log")
    body = {"to": "447700900000", "text": "Flash sale", "campaign_id": "c-7"}
    try:
        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(
                lambda _: requests.post(connector.url, json=body, headers=AUTH, timeout=6),
                range(12)))
    finally:
        connector.kill()
    assert [a.status_code for a in answers] == [200] * 12
    assert len({a.json()["trackingId"] for a in answers}) == 1
    assert len(vonage.requests) == 1


def test_opt_outs_dedupe_records_and_pending_events_survive_kill_and_restart(
        tmp_path, database, store, vonage, moengage):
    opted_out = "447700900111"
    store.set_subscription(opted_out, "OPTOUT", time.time(), time.time(), sync=True)
    env = connector_env(database, vonage, moengage, MOENGAGE_WORKSPACE_ID="ws-1",
                        MOENGAGE_DATA_API_KEY="data-key", MOENGAGE_API_URL=moengage.url)
    moengage.script(Answer(503, {"status": "fail"}))  # the opt-out's sync to MoEngage fails
    first = Connector(env).start(tmp_path / "gunicorn.log")
    try:
        refused = requests.post(first.url, json={"to": opted_out, "text": "Sale!",
                                                 "customer_id": "user-1"},
                                headers=AUTH, timeout=5)
        answer = requests.post(first.url, json=BODY, headers=AUTH, timeout=5)
        deadline = time.monotonic() + 5
        while not moengage.posts("/v1/customer/") and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        first.kill()
    assert refused.status_code == 422 and answer.status_code == 200
    assert len(moengage.posts("/v1/customer/")) == 1

    again = Connector(env).start(tmp_path / "gunicorn.log")
    try:
        still_refused = requests.post(again.url, json={"to": opted_out, "text": "Sale!"},
                                      headers=AUTH, timeout=5)
        retry = requests.post(again.url, json=BODY, headers=AUTH, timeout=5)
    finally:
        again.kill()
    assert still_refused.status_code == 422
    assert retry.status_code == 200 and retry.json() == answer.json()
    assert len(vonage.requests) == 1
    [(_, target, _, _, _)] = store.pending_events()
    assert target == "data_api"
