"""Operator commands tell the truth (issue 20, part 4): true counts, each outcome as it happens,
a stop when MoEngage is down, no database created by a command, one line for a store failure,
warnings from the events themselves, and probing never taken for a configuration fault."""

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import AUTH, status_body, webhook
from standins import Answer
from test_doctor import age, doctor, done, send, warnings
from test_restart import connector_env

from connector import create_app

ROOT = Path(__file__).resolve().parents[1]
TRACKING = "aaaaaaaa-bbbb-4ccc-8ddd-0123456789ab"


def store_of(app):
    return app.extensions["connector"].store


def pend(store, n, now=None):
    """`n` delivery events left pending for MoEngage, in one transaction (fast)."""
    now = time.time() if now is None else now
    with store.transaction() as tx:
        for i in range(n):
            tx.execute(
                "INSERT INTO events (dedupe_key, message_uuid, target, payload, is_final, state,"
                " created_at) VALUES (?, ?, 'tracking', ?, 1, 'pending', ?)",
                (f"status:m-{i}:delivered", f"m-{i}", '{"status":"delivered"}', now),
            )


def flask(args, env, cwd, **popen):
    """`flask --app app ARGS` as an operator runs it: its own process, no LOG_LEVEL given."""
    environ = {k: v for k, v in os.environ.items() if k not in ("LOG_LEVEL", "DATABASE_URL")}
    return subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "app", *args],
        cwd=cwd,
        env={**environ, **env, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def test_pending_prints_the_true_count_and_says_the_list_is_cut(app):
    pend(store_of(app), 1005)
    result = app.test_cli_runner().invoke(args=["pending"])
    assert result.exit_code == 0
    assert result.output.count("status delivered") == 1000
    assert result.output.splitlines()[-1] == "1005 pending (only the oldest 1000 are listed)"


def test_push_never_says_a_dropped_sent_was_forwarded(app, moengage):
    """Issue 20 found push saying "forwarded meanwhile" of a `sent` it had dropped. Since the
    first final stored wins (issue 19), the final's own forward drops a `sent` still waiting,
    so push finds it gone and says nothing of it; it says "dropped: superseded" only when a
    final is stored while it runs."""
    # The `sent` is being posted (MoEngage slow, then refusing) when the final is stored: the
    # final is never posted before it, and drops it once it is posted itself.
    moengage.script(Answer(503, {}, delay=1.0))
    sent = threading.Thread(
        target=webhook, args=(app.test_client(), "/webhooks/status", status_body("submitted"))
    )
    sent.start()
    time.sleep(0.3)
    webhook(app.test_client(), "/webhooks/status", status_body("delivered"))  # waits for it
    sent.join()
    states = dict(store_of(app).query("SELECT dedupe_key, state FROM events"))
    assert sorted(states.values()) == ["sent", "superseded"]
    result = app.test_cli_runner().invoke(args=["push"])
    assert result.exit_code == 0, result.output
    assert "forwarded meanwhile" not in result.output
    assert result.output.splitlines()[-1] == "0 sent, 0 still pending"


@pytest.fixture
def silent_moengage():
    """A MoEngage that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        yield f"http://127.0.0.1:{server.getsockname()[1]}"


def test_push_prints_each_outcome_as_it_happens_and_stops_after_3_failures(
    tmp_path, app, database, vonage, moengage, silent_moengage
):
    pend(store_of(app), 6)
    env = connector_env(database, vonage, moengage, MOENGAGE_TIMEOUT="1")
    env["MOENGAGE_DELIVERY_URL"] = f"{silent_moengage}/sms/dlr/custom/42"
    started = time.monotonic()
    with flask(["push"], env, tmp_path) as proc:
        lines = [(time.monotonic() - started, line.rstrip("\n")) for line in proc.stdout]
        err = proc.stderr.read()
    ended = time.monotonic() - started
    assert proc.returncode == 1, (lines, err)
    failed = [(at, line) for at, line in lines if "NOT accepted" in line]
    assert len(failed) == 3  # three tries, not one per pending event
    assert "no answer from MoEngage within 1 s" in failed[0][1]
    assert ended - failed[0][0] > 1.5, lines  # printed as it happened, not at the end
    assert lines[-2][1].startswith("stopped after 3 failures in a row")
    assert lines[-1][1] == "0 sent, 6 still pending"


def test_doctor_and_health_warn_of_pending_events_after_the_evidence_aged(make_app, moengage):
    app = make_app(evidence_flush_seconds=0)
    moengage.script(Answer(503, {}))
    assert done(webhook(app.test_client(), "/webhooks/status", status_body())).status_code == 503
    cleared = app.extensions["connector"].settings.warning_clear_seconds
    age(app, cleared + 1)  # the failure's evidence is old news; the event still waits
    with store_of(app).transaction() as tx:
        tx.execute("UPDATE events SET created_at = created_at - ?", (cleared + 1,))
    [warning] = warnings(app, "moengage-refusing")
    assert warning["message"].startswith("1 events pending, the oldest 30 min old")
    assert "MoEngage refused 1 of them; last answer: MoEngage answered 503" in warning["message"]
    result = doctor(app)
    assert result.exit_code == 1 and "[moengage-refusing]" in result.output


@pytest.mark.parametrize("lock_left", [False, True])
@pytest.mark.parametrize(
    "args", [["doctor"], ["report"], ["trace", TRACKING], ["prune", "--dry-run"], ["pending"]]
)
def test_commands_create_no_database_and_answer_in_one_line(tmp_path, args, lock_left):
    path = tmp_path / "wrong" / "connector.db"
    if lock_left:  # the database deleted, its lock file left behind
        path.parent.mkdir()
        Path(f"{path}-lock").touch()
    app = create_app({"database_path": str(path), "database_url": ""}, environ={})
    result = app.test_cli_runner().invoke(args=args)
    assert result.exit_code == 1
    [line] = result.output.splitlines()
    assert line.startswith(f"Error: no database at {path} (DATABASE_PATH={path})")
    assert ("deleted or moved" in line) == lock_left
    assert not path.exists()


def test_pending_and_push_name_the_tracking_id_event_age_tries_and_last_answer(app, moengage):
    moengage.script(Answer(503, {}), Answer(502, {}))
    webhook(app.test_client(), "/webhooks/status", status_body("delivered", TRACKING))
    with store_of(app).transaction() as tx:
        tx.execute("UPDATE events SET created_at = created_at - 300")
    listed = app.test_cli_runner().invoke(args=["pending"]).output.splitlines()[0]
    assert listed.endswith(
        f"tracking: trackingId {TRACKING}, status delivered, 5 min old, 1 try, "
        "MoEngage's last answer: MoEngage answered 503"
    )
    pushed = app.test_cli_runner().invoke(args=["push"]).output.splitlines()[0]
    assert pushed.endswith(
        f"NOT accepted, still pending (trackingId {TRACKING}, status delivered, 5 min old, "
        "2 tries, MoEngage's last answer: MoEngage answered 502)"
    )


def test_push_counts_what_is_still_pending_at_the_end_from_the_database(app, moengage):
    store = store_of(app)
    pend(store, 2)
    held = store.pending_events()[0][0]  # the other is posted slowly, meanwhile
    store.lease_event(held, time.time(), 60.0)  # another worker is forwarding it
    moengage.script(Answer(200, {}, delay=1.0))

    def the_other_worker_finishes():
        while not moengage.requests:
            time.sleep(0.01)
        store.event_sent(held, time.time())  # while push waits on its own forward

    worker = threading.Thread(target=the_other_worker_finishes)
    worker.start()
    result = app.test_cli_runner().invoke(args=["push"])
    worker.join()
    assert "a connector worker holds it" in result.output
    assert result.output.splitlines()[-1] == "1 sent, 0 still pending"
    assert result.exit_code == 0


def test_an_unreachable_postgresql_is_one_line_naming_its_host_never_its_password(unused_port):
    url = f"postgresql://connector:pw-s3cret@127.0.0.1:{unused_port}/connector"
    app = create_app(
        {"database_url": url, "moengage_delivery_url": "http://127.0.0.1:9/dlr"}, environ={}
    )
    for args in (["doctor"], ["pending"], ["push"], ["optouts"]):
        result = app.test_cli_runner().invoke(args=args)
        assert result.exit_code == 1
        [line] = result.output.splitlines()
        assert line.startswith(f"Error: cannot use the database postgresql:127.0.0.1:{unused_port}")
        assert "pw-s3cret" not in line and "Traceback" not in line


def test_probing_is_counted_apart_and_never_advised_as_a_fix(make_app, vonage, moengage):
    app = make_app(evidence_flush_seconds=0, public_url="https://sms.example.com")
    client = app.test_client()
    forged = {"Host": "attacker.example"}
    send(client, headers={**forged, "Authorization": "Custom 3f:x"}, text="hi")
    send(client, headers={**forged, "Authorization": "Custom " + "z" * 30 + ":nope"})
    done(client.post("/", data=b"garbage", headers={**forged, "Authorization": "Bearer x"}))
    done(client.post("/", json={"x": 1}, headers={"Authorization": "nonsense"}))
    done(client.post("/webhooks/status", data=b"[" * 5000, headers={"Authorization": "Bearer x"}))
    assert [w["code"] for w in warnings(app)] == ["probing"]
    [warning] = warnings(app, "probing")
    # 5 hosts not PUBLIC_URL's, 2 bare headers, 2 refused keys, 1 forged webhook
    assert warning["count"] == 10
    result = doctor(app)
    assert result.exit_code == 0 and "attacker.example" not in result.output
    assert "Set PUBLIC_URL" not in result.output and "MoEngage's Authorization" not in result.output
    send(client, headers={**AUTH, "Host": "wrong.example.com"})  # MoEngage's own send
    [wrong] = warnings(app, "wrong-host")
    assert "host wrong.example.com" in wrong["message"]


def test_a_command_prints_no_info_noise_by_default(tmp_path, app, database, vonage, moengage):
    env = connector_env(database, vonage, moengage)
    with flask(["pending"], env, tmp_path) as proc:
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and out == "0 pending\n"
    assert err == ""
    with flask(["pending"], {**env, "LOG_LEVEL": "INFO"}, tmp_path) as proc:
        assert "state kept in" in proc.communicate(timeout=60)[1]  # asked for, it is there


def test_moengage_refusing_counts_events_not_attempts(make_app, moengage):
    app = make_app(evidence_flush_seconds=0)
    moengage.script(*[Answer(503, {})] * 8)
    client = app.test_client()
    for message in ("msg-1", "msg-2"):  # two finals: a pending `sent` would be dropped now
        done(webhook(client, "/webhooks/status", status_body("delivered", message)))
    for _ in range(3):
        app.test_cli_runner().invoke(args=["push"])  # each refused again: 8 attempts in all
    [warning] = warnings(app, "moengage-refusing")
    assert "MoEngage refused 2 of them" in warning["message"]
    assert warning["count"] == 2


def test_push_reads_the_backlog_page_by_page_and_stops_at_what_was_pending(
    app, moengage, monkeypatch
):
    from connector.relay import outbox

    monkeypatch.setattr(outbox, "PUSH_PAGE", 2)
    pend(store_of(app), 5)
    result = app.test_cli_runner().invoke(args=["push"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == "5 sent, 0 still pending"
    assert sorted(r["json"]["status"] for r in moengage.requests) == ["delivered"] * 5
