"""Issue 20, parts 1 and 2: callers without the secret neither make the connector hammer
Vonage, nor grow the database, nor spend or exhaust the account's send rate."""

import concurrent.futures
import os
import tempfile
import threading
import time
import uuid

import pytest
from conftest import AUTH, send
from standins import API_KEY, API_SECRET

from connector.relay.credentials import pair_hash
from connector.relay.pair_checks import CHECKS_NAME, CHECKS_PER_SECOND, TRAIL_ROWS_PER_MINUTE
from connector.relay.ratelimit import _key_name
from connector.server import early

NUMBER = "447700900000"
GOOD = {"to": NUMBER, "text": "Your code is 1234"}


@pytest.fixture(autouse=True)
def schedules_in_tmp_path(tmp_path, monkeypatch):
    """The check budget and send schedules are files in the temp directory: this test's own."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))


def random_pair(key=None):
    return {"Authorization": f"Custom {key or uuid.uuid4().hex[:8]}:{uuid.uuid4().hex}"}


def post(app, headers, body=GOOD):
    response = send(app.test_client(), body, headers=headers)
    response.get_data()
    response.close()
    return response


def flood(app, pairs, threads=8, body=GOOD):
    """Each pair's send, from `threads` threads at once; (answers, seconds taken)."""
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        answers = list(pool.map(lambda headers: post(app, headers, body), pairs))
    return answers, time.monotonic() - started


def count(store, sql):
    return store.query(sql)[0][0]


def opted_out(app):
    store = app.extensions["connector"].store
    store.set_subscription(NUMBER, "OPTOUT", time.time(), time.time(), sync=False)
    return store


def within_budget(calls, seconds):
    """At most CHECKS_PER_SECOND a second, the first second's included."""
    return calls <= CHECKS_PER_SECOND * (seconds + 1) + 1


# -- part 1: the Account API, refused pairs, the trail ----------------------------------------


def test_a_flood_of_made_up_pairs_is_bounded_in_checks_rows_and_answers(make_app, vonage):
    app = make_app(evidence_flush_seconds=0)
    store = opted_out(app)
    pairs = [random_pair() for _ in range(200)]
    first, seconds = flood(app, pairs)
    checks = len(vonage.balance_checks())
    assert 0 < checks and within_budget(checks, seconds)
    assert {r.status_code for r in first} <= {401, 503}  # never the opt-out (422)
    assert all(int(r.headers["Retry-After"]) >= 1 for r in first if r.status_code == 503)
    again, seconds = flood(app, pairs)
    assert {r.status_code for r in again} <= {401, 503}
    rechecked = len(vonage.balance_checks()) - checks
    assert within_budget(rechecked, seconds)
    # A refused pair is answered from memory: no pair was ever checked twice.
    asked = [c["headers"]["Authorization"] for c in vonage.balance_checks()]
    assert len(asked) == len(set(asked))
    assert sum(r.status_code == 401 for r in again) >= checks
    assert vonage.sends() == []
    # The database: a row per pair Vonage refused, a trail row per check and a bounded few
    # for the rest, no send claimed.
    total_checks = len(asked)
    assert count(store, "SELECT count(*) FROM refused_credentials") == total_checks
    assert count(store, "SELECT count(*) FROM sends") == 0
    trail_rows = count(store, "SELECT count(*) FROM trail WHERE stage = 'send'")
    assert trail_rows <= total_checks + TRAIL_ROWS_PER_MINUTE
    # ... and doctor still sees the whole flood.
    health = app.test_client().get("/health").json
    [warning] = [w for w in health["warnings"] if w["code"] == "refused-pairs"]
    assert warning["count"] == 400 - total_checks
    assert "a minute" in warning["message"]
    result = app.test_cli_runner().invoke(args=["doctor"])
    assert result.exit_code == 1 and "[refused-pairs]" in result.output


def test_one_refused_pair_is_checked_once_and_traced_once_a_minute(make_app, vonage):
    app = make_app()
    store = opted_out(app)
    wrong = {"Authorization": f"Custom {API_KEY}:not-the-secret"}
    answers, _ = flood(app, [wrong] * 30)
    assert {r.status_code for r in answers} == {401}
    assert len({r.get_data() for r in answers}) == 1  # all answered as Vonage answered the first
    assert len(vonage.balance_checks()) == 1
    # The check's row, and one row for the 29 answered from memory.
    assert count(store, "SELECT count(*) FROM trail WHERE stage = 'send'") == 2


def test_a_check_that_ends_just_before_a_send_takes_the_lead_is_not_asked_again(
    make_app, vonage, monkeypatch
):
    """The window between a send's look at the store and its taking the lead: another send's
    whole check of the same pair (asked, refused, remembered, done) runs in it here."""
    app = make_app()
    opted_out(app)
    checks = app.extensions["connector"].pair_checks
    wrong = {"Authorization": f"Custom {API_KEY}:not-the-secret"}
    lead, raced = checks.lead, []

    def lead_after_another_check(pair, deadline):
        if not raced:
            raced.append(pair)
            assert post(app, wrong).status_code == 401  # the other send, start to end
        return lead(pair, deadline)

    monkeypatch.setattr(checks, "lead", lead_after_another_check)
    answer = post(app, wrong)
    assert raced and answer.status_code == 401
    assert len(vonage.balance_checks()) == 1  # the other send's check only


def test_a_refused_pair_is_known_to_every_instance_for_ten_minutes(make_app, vonage):
    first, second = make_app(), make_app()  # two instances (or workers) on one database
    store = opted_out(first)
    wrong = {"Authorization": f"Custom {API_KEY}:not-the-secret"}
    assert post(first, wrong).status_code == 401
    assert post(second, wrong).status_code == 401
    assert post(second, wrong, {**GOOD, "to": "447700900001"}).status_code == 401
    assert len(vonage.balance_checks()) == 1 and vonage.sends() == []
    with store.transaction() as tx:  # ten minutes on, Vonage is asked again
        tx.execute("UPDATE refused_credentials SET refused_at = refused_at - 601")
    assert post(second, wrong).status_code == 401
    assert len(vonage.balance_checks()) == 2
    # The right secret was never held back by the wrong one's memory.
    assert post(second, AUTH).status_code == 422


def test_a_pair_vonage_refuses_on_a_send_is_remembered(make_app, vonage):
    app = make_app()
    wrong = {"Authorization": f"Custom {API_KEY}:not-the-secret"}
    assert post(app, wrong).status_code == 401
    assert post(app, wrong, {**GOOD, "text": "other"}).status_code == 401
    assert len(vonage.sends()) == 1


# -- part 2: the account's rate is for pairs Vonage accepted ----------------------------------


def test_a_wrong_secret_flood_leaves_every_genuine_send_at_200(make_app, vonage):
    app = make_app(vonage_max_rps=5, vonage_api_keys=(API_KEY,), vonage_timeout=2.0)
    assert post(app, AUTH).status_code == 200  # Vonage accepted the team's pair before
    stop, attackers = threading.Event(), []

    def attack(fixed):
        while not stop.is_set():
            headers = {"Authorization": f"Custom {API_KEY}:not-the-secret"} if fixed else None
            answer = post(app, headers or random_pair(API_KEY), {**GOOD, "text": uuid.uuid4().hex})
            attackers.append(answer.status_code)

    threads = [threading.Thread(target=attack, args=(i % 2,)) for i in range(16)]
    started = time.monotonic()
    [t.start() for t in threads]
    try:
        genuine = []
        for i in range(6):
            time.sleep(1.0)
            genuine.append(post(app, AUTH, {**GOOD, "text": f"genuine {i}"}).status_code)
    finally:
        stop.set()
        [t.join() for t in threads]
    seconds = time.monotonic() - started
    assert genuine == [200] * 6
    assert len(attackers) > 50 and set(attackers) <= {401, 503}
    wrong_at_vonage = [
        r for r in vonage.sends() if r["headers"]["Authorization"] != vonage_basic(API_SECRET)
    ]
    assert within_budget(len(wrong_at_vonage), seconds)


def vonage_basic(secret):
    import base64

    return "Basic " + base64.b64encode(f"{API_KEY}:{secret}".encode()).decode()


def test_random_keys_leave_no_schedule_behind(make_app, vonage, backend, tmp_path):
    app = make_app(vonage_max_rps=5)
    store = app.extensions["connector"].store
    assert post(app, AUTH).status_code == 200
    answers, _ = flood(app, [random_pair() for _ in range(100)])
    assert {r.status_code for r in answers} <= {401, 503}
    if backend == "sqlite":  # the checks' own schedule is connector.db-checks
        [directory] = [p for p in tmp_path.iterdir() if p.name.startswith("vonage-sms-")]
        assert os.listdir(directory) == [_key_name(API_KEY)]
    else:
        assert count(store, "SELECT count(*) FROM send_schedule") == 1


def test_a_wrong_secret_over_a_full_schedule_is_left_to_the_route(make_app, vonage, backend):
    """The worker's early 429 (and its trail row each) is for pairs Vonage accepted: a wrong
    secret gets the route's answer, remembered and traced once a minute."""
    if backend != "sqlite":
        pytest.skip("answered early with SQLite only")
    from test_early import BODY, ask, raw_send  # the worker's bytes, as test_early frames them

    app = make_app(vonage_max_rps=0.3, vonage_timeout=4.0)
    assert post(app, AUTH, {**BODY, "text": "first"}).status_code == 200
    answerer = early.answerer(app)
    assert ask(answerer, raw_send(BODY)) is not None  # the team's pair: refused early
    wrong = f"Custom {API_KEY}:not-the-secret"
    assert ask(answerer, raw_send(BODY, authorization=wrong)) is None
    for _ in range(5):
        assert post(app, {"Authorization": wrong}, BODY).status_code == 401
    assert len(vonage.sends()) == 2  # the first send and the wrong secret's check


def test_a_pairs_first_send_is_its_check_and_then_counted_in_the_schedule(make_app, vonage):
    """With VONAGE_MAX_RPS, the first send of a pair not known good takes no slot; once Vonage
    accepts it, its slot is taken after the fact and every worker knows the pair good."""
    first = make_app(vonage_max_rps=2)
    assert post(first, AUTH).status_code == 200
    store = first.extensions["connector"].store
    assert store.credentials_accepted_at(pair_hash(API_KEY, API_SECRET)) is not None
    assert first.extensions["connector"].limiter.schedule.peek(API_KEY) > 0  # charged
    other = make_app(vonage_max_rps=2)  # another worker: known good, so it waits for a slot
    assert post(other, AUTH, {**GOOD, "text": "second"}).status_code == 200
    [a, b] = [r["time"] for r in vonage.sends()]
    assert b - a >= other.extensions["connector"].limiter.interval - 0.02


def test_the_checks_a_second_are_for_the_whole_instance_not_each_worker(make_app, vonage):
    workers = [make_app(), make_app()]  # two workers of one instance: one budget file
    opted_out(workers[0])
    pairs = [random_pair() for _ in range(120)]
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda n: post(workers[n % 2], pairs[n]), range(len(pairs))))
    seconds = time.monotonic() - started
    assert {r.status_code for r in answers} <= {401, 503}
    assert within_budget(len(vonage.balance_checks()), seconds)


def test_with_the_checks_spent_an_opt_out_is_not_told_by_the_answer(make_app, vonage):
    """Checks are spent (a flood): a made-up pair gets the same 503 whether its recipient
    opted out (a check needed) or not (none needed), so the answer is no opt-out oracle."""
    app = make_app()
    assert post(app, AUTH, {**GOOD, "to": "447700900123"}).status_code == 200
    opted_out(app)
    checks = app.extensions["connector"].pair_checks
    for _ in range(15):  # three seconds of checks taken, as a flood takes them
        checks._schedule().reserve(CHECKS_NAME, 1.0 / CHECKS_PER_SECOND, 10)
    to_opted_out = post(app, random_pair())
    to_another = post(app, random_pair(), {**GOOD, "to": "447700900123"})
    assert to_opted_out.status_code == to_another.status_code == 503
    assert to_opted_out.json == to_another.json
    assert len(vonage.requests) == 1  # the team's send before
    # A pair Vonage accepted needs no check: the team's sends go on.
    assert post(app, AUTH, {**GOOD, "to": "447700900123", "text": "more"}).status_code == 200
