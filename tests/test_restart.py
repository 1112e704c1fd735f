"""What must survive a crash survives it: gunicorn killed with -9, then started again."""

import concurrent.futures
import json
import subprocess
import sys
import time

import requests
from conftest import AUTH, SIGNATURE_SECRET, inbound_body, record_sends, sign, status_body
from gunicorn_proc import ROOT, Connector
from standins import Answer

BODY = {"to": "447700900000", "text": "Your order shipped", "client_ref": "order-9"}


def connector_env(database, vonage, moengage, **extra):
    """The connector's environment; DATABASE_URL empty (SQLite) or naming the test's schema."""
    return {
        "DATABASE_PATH": database["database_path"],
        "DATABASE_URL": database["database_url"],
        "VONAGE_API_URL": vonage.url,
        "MOENGAGE_DELIVERY_URL": f"{moengage.url}/sms/dlr/custom/42",
        "VONAGE_SIGNATURE_SECRET": SIGNATURE_SECRET,
        "VONAGE_FROM": "Acme",
        "VONAGE_TIMEOUT": "2",
        # No background sweep, so a test sees what requests and commands did (on a loaded
        # machine a test may outlive the default interval); test_outbox turns it on.
        "PENDING_SWEEP_SECONDS": "0",
        **extra,
    }


def test_idempotency_survives_kill_and_restart(tmp_path, database, vonage, moengage):
    env = connector_env(database, vonage, moengage)
    record_sends(database, status_body(), status_body(message_uuid="p-1"))
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
        tmp_path / "gunicorn.log"
    )
    body = {"to": "447700900000", "text": "Flash sale", "campaign_id": "c-7"}
    try:
        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            answers = list(
                pool.map(
                    lambda _: requests.post(connector.url, json=body, headers=AUTH, timeout=6),
                    range(12),
                )
            )
    finally:
        connector.kill()
    assert [a.status_code for a in answers] == [200] * 12
    assert len({a.json()["trackingId"] for a in answers}) == 1
    assert len(vonage.requests) == 1


def signed_post(url, body):
    raw = json.dumps(body).encode()
    return requests.post(url, data=raw, headers=sign(raw), timeout=10)


def test_opt_outs_forward_dedupe_and_pending_events_survive_kill(
    tmp_path, database, vonage, moengage
):
    env = connector_env(database, vonage, moengage)
    record_sends(database, status_body(), status_body(message_uuid="p-1"))
    first = Connector(env).start(tmp_path / "gunicorn.log")
    try:
        assert signed_post(
            f"{first.url}/webhooks/inbound", inbound_body("STOP", message_uuid="u-in")
        ).ok
        assert signed_post(f"{first.url}/webhooks/status", status_body("delivered")).ok
        moengage.script(Answer(503, {}))
        pending = signed_post(f"{first.url}/webhooks/status", status_body(message_uuid="p-1"))
        assert pending.status_code == 503
    finally:
        first.kill()
    assert len(accepted(moengage)) == 2

    again = Connector(env).start(tmp_path / "gunicorn.log")
    try:
        refused = requests.post(
            again.url, json={"to": "447700900000", "text": "hi"}, headers=AUTH, timeout=5
        )
        redelivered = signed_post(f"{again.url}/webhooks/status", status_body("delivered"))
        pushed = subprocess.run(  # noqa: PLW1510 - the exit code is asserted below
            [sys.executable, "-m", "flask", "--app", "app", "push"],
            cwd=ROOT,
            env=again.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        again.kill()
    assert refused.status_code == 422 and vonage.sends() == []
    assert redelivered.status_code == 200
    assert "1 sent, 0 still pending" in pushed.stdout, pushed.stdout + pushed.stderr
    assert sorted(e.get("trackingId") or e["messageId"] for e in accepted(moengage)) == [
        "aaaaaaaa-bbbb-4ccc-8ddd-0123456789ab",
        "p-1",
        "u-in",
    ]


def test_identical_status_on_several_workers_is_forwarded_once(
    tmp_path, database, vonage, moengage
):
    moengage.latency = 0.3
    record_sends(database, status_body())
    connector = Connector(connector_env(database, vonage, moengage), workers=3).start(
        tmp_path / "gunicorn.log"
    )
    try:
        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            codes = list(
                pool.map(
                    lambda _: (
                        signed_post(f"{connector.url}/webhooks/status", status_body()).status_code
                    ),
                    range(12),
                )
            )
    finally:
        connector.kill()
    assert codes == [200] * 12
    assert len(accepted(moengage)) == 1


def accepted(moengage):
    return [r["json"] for r in moengage.posts("/sms/dlr/custom/") if r["status"] == 200]


def test_opt_outs_dedupe_records_and_pending_events_survive_kill_and_restart(
    tmp_path, database, store, vonage, moengage
):
    opted_out = "447700900111"
    store.set_subscription(opted_out, "OPTOUT", time.time(), time.time(), sync=True)
    env = connector_env(
        database,
        vonage,
        moengage,
        MOENGAGE_WORKSPACE_ID="ws-1",
        MOENGAGE_DATA_API_KEY="data-key",
        MOENGAGE_API_URL=moengage.url,
    )
    # The opt-out's sync to MoEngage fails, inline retries included.
    moengage.script(*[Answer(503, {"status": "fail"})] * 3)
    first = Connector(env).start(tmp_path / "gunicorn.log")
    try:
        refused = requests.post(
            first.url,
            json={"to": opted_out, "text": "Sale!", "customer_id": "user-1"},
            headers=AUTH,
            timeout=5,
        )
        answer = requests.post(first.url, json=BODY, headers=AUTH, timeout=5)
        deadline = time.monotonic() + 5
        while len(moengage.posts("/v1/customer/")) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)  # the failure is recorded just after the last answer
    finally:
        first.kill()
    assert refused.status_code == 422 and answer.status_code == 200
    assert len(moengage.posts("/v1/customer/")) == 3

    again = Connector(env).start(tmp_path / "gunicorn.log")
    try:
        still_refused = requests.post(
            again.url, json={"to": opted_out, "text": "Sale!"}, headers=AUTH, timeout=5
        )
        retry = requests.post(again.url, json=BODY, headers=AUTH, timeout=5)
    finally:
        again.kill()
    assert still_refused.status_code == 422
    assert retry.status_code == 200 and retry.json() == answer.json()
    assert len(vonage.sends()) == 1
    assert len(vonage.balance_checks()) == 1  # the key and secret, checked once, were kept
    [(_, target, _, _, _)] = store.pending_events()
    assert target == "data_api"
