"""VONAGE_MAX_RPS: one schedule per API key for every worker, never faster than the limit."""

import itertools
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pgtest
import pytest
from conftest import send

from connector.errors import Failure
from connector.relay.ratelimit import MARGIN, RateLimiter
from connector.settings import load_settings
from connector.store import open_store

GOOD = {"to": "447700900000", "text": "Flash sale"}
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def schedules_in_tmp_path(tmp_path, monkeypatch):
    """The limiter keeps its schedule files in the temp directory: this test's own."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))


# Three worker processes, four threads each, all sending for one API key.
WORKER = """
import json, sys, threading, time
from connector.relay.ratelimit import RateLimiter
limiter = RateLimiter(float(sys.argv[1]), sys.argv[2])
slots = []
def take():
    for _ in range(5):
        slots.append((limiter.acquire("key-1", max_wait=10), time.time()))
threads = [threading.Thread(target=take) for _ in range(4)]
[t.start() for t in threads]
[t.join() for t in threads]
print(json.dumps(slots))
"""


def test_workers_share_one_schedule_spaced_by_the_limit(tmp_path):
    rps = 40
    instance = f"test:{uuid.uuid4()}"
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(rps), instance],
            cwd=ROOT,
            env={**os.environ, "TMPDIR": str(tmp_path)},
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    taken = [pair for w in workers for pair in json.loads(w.communicate(timeout=30)[0])]
    slots = sorted(slot for slot, _ in taken)
    assert len(slots) == 60
    gaps = [b - a for a, b in itertools.pairwise(slots)]
    assert min(gaps) >= (1 + MARGIN) / rps - 1e-6
    # No send leaves before its slot, and no second holds more than `rps` of them.
    assert all(left >= slot - 1e-3 for slot, left in taken)
    left = sorted(left for _, left in taken)
    assert all(b - a >= 1.0 for a, b in zip(left, left[rps:]))


def test_send_that_cannot_get_a_slot_in_time_is_429_with_retry_after(make_app, vonage):
    # 0.3/s: the next slot is 3.5 s off, over the 1 s a send may wait for it, however slowly
    # the first send went (up to 2.5 s on a busy machine: the slot is taken before the writes).
    client = make_app(vonage_max_rps=0.3, vonage_timeout=2.0).test_client()
    assert send(client, GOOD).status_code == 200
    response = send(client, {**GOOD, "text": "Flash sale, again"})
    assert response.status_code == 429
    assert 1 <= int(response.headers["Retry-After"]) <= 4  # the wait for the next slot
    assert "VONAGE_MAX_RPS" in response.json["error"]
    assert len(vonage.requests) == 1


def test_send_waits_for_its_slot_rather_than_failing(make_app, vonage):
    client = make_app(vonage_max_rps=4, vonage_timeout=2.0).test_client()
    started = time.time()
    answers = [send(client, {**GOOD, "text": f"Flash sale {i}"}) for i in range(3)]
    assert [a.status_code for a in answers] == [200] * 3
    assert vonage.requests[2]["time"] - started >= 2 * (1 + MARGIN) / 4


def test_sends_waiting_for_a_slot_are_capped_per_worker():
    limiter = RateLimiter(2, f"test:{uuid.uuid4()}", max_waiting=1)
    limiter.acquire("key-1", max_wait=5)  # the first slot is now
    waiter = threading.Thread(target=limiter.acquire, args=("key-1", 5))
    waiter.start()
    while limiter._waiting == 0 and waiter.is_alive():
        time.sleep(0.005)
    with pytest.raises(Failure) as refused:
        limiter.acquire("key-1", max_wait=5)
    waiter.join()
    assert refused.value.status == 429 and refused.value.retry_after >= 1


@pytest.mark.skipif(not pgtest.URL, reason=pgtest.SKIP_REASON)
def test_postgresql_schedule_is_one_row_shared_by_instances_with_separate_disks(tmp_path):
    """Two limiters with different instance ids (two dynos) and one database: one schedule."""
    with pgtest.fresh_schema() as url:
        store = open_store(load_settings({"database_url": url}, environ={}))
        try:
            rps = 40
            dynos = [
                RateLimiter(rps, f"dyno-{n}:{uuid.uuid4()}", store=lambda: store) for n in (1, 2)
            ]
            assert all(d.shared for d in dynos)
            slots = []

            def take(limiter):
                for _ in range(5):
                    slots.append(limiter.acquire("key-1", max_wait=10))

            threads = [threading.Thread(target=take, args=(d,)) for d in dynos * 3]
            [t.start() for t in threads]
            [t.join() for t in threads]
            slots.sort()
            gaps = [b - a for a, b in itertools.pairwise(slots)]
            assert len(slots) == 30
            assert min(gaps) >= (1 + MARGIN) / rps - 1e-6
            assert store.query("SELECT count(*) FROM send_schedule") == [(1,)]
            for _ in range(rps):  # a second's slots taken by dyno 2, not yet waited for
                dynos[1].schedule.reserve("key-1", dynos[1].interval, max_wait=10)
            with pytest.raises(Failure) as refused:
                dynos[0].acquire("key-1", max_wait=0.5)
            assert refused.value.status == 429 and refused.value.retry_after >= 1
        finally:
            store.close()


def test_a_send_that_wakes_too_late_for_its_slot_takes_the_next_free_one():
    """A CPU too busy to wake a send on time must not let it leave late, right before the
    next send's slot: it gives its slot up and takes a new one."""
    limiter = RateLimiter(10, f"test:{uuid.uuid4()}")
    first = limiter.acquire("key-1", max_wait=5)  # the first slot is now
    woken = []

    def oversleep(seconds):  # the first wake-up comes 0.2 s late, as on a starved CPU
        woken.append(seconds)
        time.sleep(seconds + (0.2 if len(woken) == 1 else 0))

    limiter._sleep = oversleep
    slot = limiter.acquire("key-1", max_wait=5)
    assert limiter.late == 1 and len(woken) == 1  # the next free slot was due at once
    # The slot it gave up (first + interval) stays empty: the one it took is later.
    assert slot - first >= 2 * limiter.interval - 1e-6
    with pytest.raises(Failure):  # and a wake-up late past the send's whole wait is a 429
        limiter._sleep = lambda seconds: time.sleep(seconds + 0.3)
        limiter.acquire("key-1", max_wait=0.3)


def test_a_refused_send_writes_nothing_and_a_known_one_still_gets_its_answer(make_app, vonage):
    # Under a campaign over the limit most sends are 429s: they are refused before any write
    # (no commit to wait for), but a retry of a send already answered still gets that answer.
    app = make_app(vonage_max_rps=0.3, vonage_timeout=2.0)
    client, store = app.test_client(), app.extensions["connector"].store
    first = {**GOOD, "client_ref": "order-1"}
    assert send(client, first).status_code == 200
    refused = send(client, {**GOOD, "text": "Flash sale, again"})
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert store.query("SELECT count(*) FROM sends")[0][0] == 1
    replay = send(client, first)
    assert replay.status_code == 200 and replay.json["trackingId"]
    assert len(vonage.requests) == 1


def test_check_refuses_as_acquire_would_and_takes_nothing():
    limiter = RateLimiter(1, f"test:{uuid.uuid4()}")
    limiter.check("key-1", max_wait=0)  # an empty schedule: nothing to refuse
    first = limiter.acquire("key-1", max_wait=0)
    with pytest.raises(Failure) as refused:
        limiter.check("key-1", max_wait=0.5)  # the next slot is 1.1 s off
    assert refused.value.status == 429 and refused.value.retry_after == 2
    limiter.check("key-1", max_wait=2)  # a look only: the slot is still free for acquire
    assert limiter.acquire("key-1", max_wait=2) - first == pytest.approx(1 + MARGIN)


# -- issue 20 part 2: schedules only for keys that send, and idle ones removed -----------------


def test_a_look_creates_no_schedule_and_idle_schedules_are_removed(tmp_path):
    limiter = RateLimiter(50, f"test:{uuid.uuid4()}")
    limiter.check("random-key", max_wait=0)  # a look at a key that never sent
    assert os.listdir(limiter.schedule.directory) == []
    limiter.acquire("key-1", max_wait=1)
    limiter.acquire("key-2", max_wait=1)
    assert limiter.schedule.expire(3600) == 0  # both sent just now
    time.sleep(limiter.interval + 0.05)
    assert limiter.schedule.expire(0.01) == 2  # both idle: gone
    assert os.listdir(limiter.schedule.directory) == []
    limiter.acquire("key-1", max_wait=1)  # a key that sends again starts afresh
    assert len(os.listdir(limiter.schedule.directory)) == 1


def test_a_slot_taken_as_its_idle_schedule_is_removed_is_not_lost(tmp_path):
    """`expire` unlinks under the file's lock; a `reserve` that opened the file before sees
    it gone and takes its slot in the new one, so no two sends share a slot."""
    limiter = RateLimiter(2, f"test:{uuid.uuid4()}")
    schedule = limiter.schedule
    limiter.acquire("key-1", max_wait=1)
    [name] = os.listdir(schedule.directory)
    path = os.path.join(schedule.directory, name)
    real_open = os.open

    def open_then_expire(file, flags, *mode):
        fd = real_open(file, flags, *mode)
        if file == path and flags & os.O_CREAT:
            os.open = real_open
            time.sleep(limiter.interval + 0.05)
            assert schedule.expire(0.01) == 1  # removed between reserve's open and its lock
        return fd

    os.open = open_then_expire
    try:
        first, _ = schedule.reserve("key-1", limiter.interval, max_wait=5)
    finally:
        os.open = real_open
    assert os.path.exists(path)  # the slot went into the file now there
    second, _ = schedule.reserve("key-1", limiter.interval, max_wait=5)
    assert second - first == pytest.approx(limiter.interval)


def test_a_limiter_removes_idle_schedules_every_so_often(monkeypatch):
    limiter = RateLimiter(50, f"test:{uuid.uuid4()}")
    limiter.acquire("old-key", max_wait=1)
    monkeypatch.setattr("connector.relay.ratelimit.IDLE_AFTER", 0.01)
    time.sleep(limiter.interval + 0.05)
    limiter.acquire("key-1", max_wait=1)  # too soon after start: nothing removed
    assert len(os.listdir(limiter.schedule.directory)) == 2
    limiter._expired_at -= 601
    time.sleep(limiter.interval + 0.05)
    limiter.acquire("key-1", max_wait=1)
    assert os.listdir(limiter.schedule.directory) == [os.path.basename(_path(limiter, "key-1"))]


def _path(limiter, api_key):
    from connector.relay.ratelimit import _key_name

    return os.path.join(limiter.schedule.directory, _key_name(api_key))


@pytest.mark.skipif(not pgtest.URL, reason=pgtest.SKIP_REASON)
def test_postgresql_idle_schedule_rows_are_removed():
    with pgtest.fresh_schema() as url:
        store = open_store(load_settings({"database_url": url}, environ={}))
        try:
            limiter = RateLimiter(50, f"dyno:{uuid.uuid4()}", store=lambda: store)
            limiter.check("random-key", max_wait=0)
            limiter.acquire("key-1", max_wait=1)
            assert store.query("SELECT count(*) FROM send_schedule") == [(1,)]
            assert limiter.schedule.expire(3600) == 0
            time.sleep(limiter.interval + 0.05)
            assert limiter.schedule.expire(0.01) == 1
            assert store.query("SELECT count(*) FROM send_schedule") == [(0,)]
        finally:
            store.close()
