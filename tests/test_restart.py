"""What must survive a crash survives it: gunicorn killed with -9, then started again."""
import concurrent.futures

import requests

from conftest import AUTH, SIGNATURE_SECRET
from gunicorn_proc import Connector

BODY = {"to": "447700900000", "text": "Your order shipped", "client_ref": "order-9"}


def connector_env(tmp_path, vonage, moengage, **extra):
    return {"DATABASE_PATH": str(tmp_path / "state.db"), "VONAGE_API_URL": vonage.url,
            "MOENGAGE_DELIVERY_URL": f"{moengage.url}/sms/dlr/custom/42",
            "VONAGE_SIGNATURE_SECRET": SIGNATURE_SECRET, "VONAGE_FROM": "Acme",
            "VONAGE_TIMEOUT": "2", **extra}


def test_idempotency_survives_kill_and_restart(tmp_path, vonage, moengage):
    env = connector_env(tmp_path, vonage, moengage)
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


def test_identical_sends_across_workers_are_sent_once(tmp_path, vonage, moengage):
    vonage.latency = 0.5
    connector = Connector(connector_env(tmp_path, vonage, moengage), workers=3).start(
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
