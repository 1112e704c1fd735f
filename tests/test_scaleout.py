"""Two instances on one PostgreSQL, as two dynos run: two gunicorn masters, each with its own
temp directory (a dyno's disk is its own), sharing only the database. What one instance knows,
the other must honour: the send rate, forwarded events, claimed sends and opt-outs."""

import base64
import concurrent.futures
import json
import threading
import time
import uuid

import pgtest
import psycopg
import pytest
import requests
from conftest import AUTH, SIGNATURE_SECRET, inbound_body, sign, status_body
from gunicorn_proc import Connector
from standins import ACCOUNTS

MAX_RPS = 10
WORKERS, POOL_SIZE = 1, 2
APP_NAME = f"scaleout-{uuid.uuid4().hex[:8]}"  # counts this module's connections in PostgreSQL
RATE_KEY = "efgh5678"  # its own schedule: the other tests send with the default key
RATE_AUTH = {"Authorization": f"Custom {RATE_KEY}:{ACCOUNTS[RATE_KEY]}"}

pytestmark = pytest.mark.skipif(not pgtest.URL, reason=pgtest.SKIP_REASON)


@pytest.fixture(scope="module")
def instances(tmp_path_factory, vonage_server, moengage_server):
    """Two instances of 1 worker x 4 threads and 2 connections each: few processes, since CPU
    contention on a loaded 2-core machine delays sends past the limiter's 50 ms margin."""
    with pgtest.fresh_schema() as url:
        url += f"&application_name={APP_NAME}"
        connectors = []
        for name in ("a", "b"):
            directory = tmp_path_factory.mktemp(f"instance-{name}")
            env = {
                "DATABASE_URL": url,
                "DATABASE_POOL_SIZE": str(POOL_SIZE),
                "TMPDIR": str(directory),
                "VONAGE_API_URL": vonage_server.url,
                "MOENGAGE_DELIVERY_URL": f"{moengage_server.url}/sms/dlr/custom/42",
                "VONAGE_SIGNATURE_SECRET": SIGNATURE_SECRET,
                "VONAGE_FROM": "Acme",
                "VONAGE_TIMEOUT": "2",
                "VONAGE_MAX_RPS": str(MAX_RPS),
            }
            connectors.append(
                (Connector(env, workers=WORKERS, threads=4), directory / "gunicorn.log")
            )
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            started = list(pool.map(lambda c: c[0].start(c[1]), connectors))
        try:
            yield started
        finally:
            for connector in started:
                connector.kill()


def at_once(calls):
    """Run the calls in threads released together; return their results in order."""
    barrier = threading.Barrier(len(calls))

    def run(call):
        barrier.wait()
        return call()

    with concurrent.futures.ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def most_in_one_second(times):
    times, most, first = sorted(times), 0, 0
    for last, t in enumerate(times):
        while t - times[first] >= 1.0:
            first += 1
        most = max(most, last - first + 1)
    return most


def test_both_instances_at_full_rate_never_exceed_the_limit_at_vonage(instances, vonage):
    stop = time.monotonic() + 2.5
    answers = []

    def campaign(url):
        while time.monotonic() < stop:
            body = {"to": "447700900000", "text": f"Flash sale {uuid.uuid4()}"}
            status = requests.post(url, json=body, headers=RATE_AUTH, timeout=5).status_code
            answers.append((url, status))
            if status == 429:
                time.sleep(0.05)  # as MoEngage backs off; a tight loop only adds CPU jitter

    connections = []

    def count_connections():
        with psycopg.connect(pgtest.URL, autocommit=True) as conn:
            while time.monotonic() < stop:
                connections.append(
                    conn.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                        (APP_NAME,),
                    ).fetchone()[0]
                )
                time.sleep(0.05)

    with concurrent.futures.ThreadPoolExecutor(5) as pool:
        pool.submit(count_connections)
        list(pool.map(campaign, [c.url for c in instances] * 2))
    arrivals = [r["time"] for r in vonage.requests if api_key_of(r) == RATE_KEY]
    sent_by = {url for url, status in answers if status == 200}
    assert sent_by == {c.url for c in instances}  # both instances sent
    assert {status for _, status in answers} <= {200, 429}
    assert len(arrivals) >= 2 * MAX_RPS  # the schedule was kept full
    # Each instance alone would allow MAX_RPS; together they still do.
    assert most_in_one_second(arrivals) <= MAX_RPS
    # The connection budget: instances x workers x DATABASE_POOL_SIZE, whatever the threads.
    assert 0 < max(connections) <= 2 * WORKERS * POOL_SIZE


def api_key_of(record):
    """The API key a Vonage request was made with (Basic auth)."""
    auth = record["headers"].get("Authorization", "")
    return base64.b64decode(auth.removeprefix("Basic ")).decode().split(":", 1)[0]


def test_a_webhook_delivered_to_both_at_once_is_forwarded_once(instances, vonage, moengage):
    moengage.latency = 0.2  # both deliveries overlap the forward
    events = [status_body(message_uuid=send_through(c.url)) for c in (*instances, instances[0])]
    for event in events:
        raw = json.dumps(event).encode()
        answers = at_once(
            [
                lambda url=c.url, raw=raw: requests.post(
                    f"{url}/webhooks/status", data=raw, headers=sign(raw), timeout=10
                )
                for c in instances
            ]
        )
        assert [a.status_code for a in answers] == [200, 200]
    forwarded = [r["json"]["trackingId"] for r in moengage.posts("/sms/dlr/custom/42")]
    assert sorted(forwarded) == sorted(e["message_uuid"] for e in events)


def test_the_same_client_ref_sent_to_both_at_once_is_sent_once(instances, vonage):
    vonage.latency = 0.3  # the first is still with Vonage when the second arrives
    refs = [f"order-{uuid.uuid4()}" for _ in range(3)]
    for ref in refs:
        body = {"to": "447700900002", "text": "Your order shipped", "client_ref": ref}
        answers = at_once(
            [
                lambda url=c.url, body=body: requests.post(url, json=body, headers=AUTH, timeout=6)
                for c in instances
            ]
        )
        assert [a.status_code for a in answers] == [200, 200]
        assert answers[0].json()["trackingId"] == answers[1].json()["trackingId"]
    assert sorted(r["json"]["client_ref"] for r in vonage.requests) == sorted(refs)


def test_an_opt_out_received_by_one_is_honoured_by_the_other(instances, vonage, moengage):
    first, second = instances
    number = "447700900003"
    body = {"to": number, "text": "Flash sale", "client_ref": f"before-{uuid.uuid4()}"}
    assert requests.post(second.url, json=body, headers=AUTH, timeout=5).status_code == 200
    stop = inbound_body("STOP", sender=number)
    raw = json.dumps(stop).encode()
    answer = requests.post(f"{first.url}/webhooks/inbound", data=raw, headers=sign(raw), timeout=10)
    assert answer.status_code == 200
    body = {"to": number, "text": "Flash sale", "client_ref": f"after-{uuid.uuid4()}"}
    refused = requests.post(second.url, json=body, headers=AUTH, timeout=5)
    assert refused.status_code == 422
    assert "opted out" in refused.json()["error"]
    assert len(vonage.requests) == 1  # only the send before the STOP


def send_through(url):
    """One send through the instance at `url` (waiting out VONAGE_MAX_RPS); its message_uuid."""
    body = {"to": "447700900004", "text": f"Order {uuid.uuid4()}"}
    for _ in range(20):
        answer = requests.post(url, json=body, headers=AUTH, timeout=5)
        if answer.status_code != 429:
            break
        time.sleep(float(answer.headers.get("Retry-After", "1")))
    assert answer.status_code == 200
    return answer.json()["trackingId"]


def test_statuses_racing_on_both_instances_give_moengage_one_final_each(
    instances, vonage, moengage
):
    """Issue 19 part 5 across instances: each message's submitted, delivered and rejected,
    twice each (Vonage's redelivery), posted at the same instant to both instances."""
    moengage.latency = 0.02
    messages = [send_through(instances[n % 2].url) for n in range(8)]
    for message in messages:
        raws = [
            json.dumps(status_body(status, message)).encode()
            for status in ("submitted", "delivered", "rejected") * 2
        ]
        answers = at_once(
            [
                lambda url=c.url, raw=raw: requests.post(
                    f"{url}/webhooks/status", data=raw, headers=sign(raw), timeout=15
                )
                for raw in raws
                for c in instances
            ]
        )
        assert [a.status_code for a in answers] == [200] * len(answers)
    seen = {}
    for post in sorted(moengage.posts("/sms/dlr/custom/42"), key=lambda r: r["time"]):
        if post["status"] == 200:
            seen.setdefault(post["json"]["trackingId"], []).append(post["json"]["status"])
    assert sorted(seen) == sorted(messages)
    for message, statuses in seen.items():
        assert [s for s in statuses if s != "sent"] in (["delivered"], ["failed"]), statuses
        assert statuses[-1] != "sent", statuses
