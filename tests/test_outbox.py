"""No event stranded: a gunicorn worker killed with -9 while it forwards an event to MoEngage.

Vonage must get 200 only once MoEngage has the event; the event whose worker died is then
forwarded by Vonage's redelivery or, with no redelivery, by the sweep while other webhooks
arrive. Run under real gunicorn workers, on both backends.
"""

import concurrent.futures
import os
import signal
import time
from pathlib import Path

import requests
from conftest import record_sends, status_body
from gunicorn_proc import Connector
from standins import Answer
from test_restart import accepted, connector_env, signed_post

from connector.relay import outbox

HANG = Answer(503, {}, delay=30)  # MoEngage hangs: the forward is still waiting when killed


def workers_of(master):
    return [
        int(stat.parent.name) for stat in Path("/proc").glob("[0-9]*/stat") if _ppid(stat) == master
    ]


def _ppid(stat):
    try:
        return int(stat.read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def worker_posting_to(port, master):
    """The worker with a connection open to `port` (MoEngage's stand-in), found in /proc."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[2].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
                inodes.add(f"socket:[{fields[9]}]")
    for pid in workers_of(master):
        try:
            fds = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
        except OSError:
            continue
        if inodes & set(fds):
            return pid
    return None


def kill_the_worker_forwarding(connector, moengage, posts_before):
    """Wait for the forward to reach MoEngage, then kill -9 the worker that made it."""
    deadline = time.monotonic() + 10
    while len(moengage.requests) <= posts_before and time.monotonic() < deadline:
        time.sleep(0.01)
    port = int(moengage.url.rsplit(":", 1)[1])
    pid = worker_posting_to(port, connector.proc.pid)
    assert pid, "no worker is forwarding to MoEngage"
    os.kill(pid, signal.SIGKILL)


def answer(url, body):
    """The status Vonage got, or None when the connection broke (a worker just died, say):
    Vonage retries either way."""
    try:
        return signed_post(url, body).status_code
    except requests.RequestException:
        return None


def ids(moengage, uuid):
    return [e for e in accepted(moengage) if e.get("trackingId") == uuid]


def test_event_of_a_worker_killed_mid_forward_is_forwarded_without_a_hand(
    tmp_path, database, vonage, moengage
):
    env = connector_env(database, vonage, moengage, MOENGAGE_TIMEOUT="2", PENDING_SWEEP_SECONDS="1")
    connector = Connector(env, workers=2, threads=4).start(tmp_path / "gunicorn.log")
    status_url = f"{connector.url}/webhooks/status"
    w, e = status_body(message_uuid="w-1"), status_body(message_uuid="e-1")
    record_sends(database, w, e)
    try:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            for body in (w, e):  # each reaches MoEngage, which hangs; its worker is killed
                moengage.script(HANG)
                before = len(moengage.requests)
                lost = pool.submit(signed_post, status_url, body)
                kill_the_worker_forwarding(connector, moengage, before)
                assert lost.exception() is not None  # Vonage got no answer: it redelivers
        # MoEngage is healthy again. Vonage redelivers W; E is never redelivered.
        answers = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            code = answer(status_url, w)
            answers.append((code, len(ids(moengage, "w-1"))))
            if code == 200:
                break
        n = 0
        while not ids(moengage, "e-1") and time.monotonic() < deadline:
            n += 1  # other webhooks keep arriving, as in production
            answer(status_url, status_body(message_uuid=f"other-{n}"))
            time.sleep(0.2)
    finally:
        connector.kill()
    assert answers[-1] == (200, 1), answers  # 200 once MoEngage had W, and only then
    assert all(code in (503, None) for code, _ in answers[:-1]), answers
    assert len(ids(moengage, "w-1")) == 1
    assert len(ids(moengage, "e-1")) == 1, "the sweep did not forward E"


def test_a_sweep_gives_up_while_moengage_is_down_and_forwards_all_once_it_is_back(app, moengage):
    ctx = app.extensions["connector"]
    for i in range(8):
        ctx.store.record_status(f"m-{i}", "delivered", True, {"trackingId": f"m-{i}"}, 1.0)
    moengage.script(*[Answer(503, {})] * 8)
    assert outbox.sweep(ctx) == 0
    assert len(moengage.requests) == outbox.SWEEP_GIVE_UP  # not one try per pending event
    moengage.reset()
    assert outbox.sweep(ctx) == 8 and ctx.store.pending_events() == []
    assert sorted(e["trackingId"] for e in accepted(moengage)) == [f"m-{i}" for i in range(8)]
