"""Issue 8, items 10, 12, 13, 14, under real gunicorn with the production config: what the server
refuses is JSON, slow clients hold no thread, a port in use stops the start naming the port."""

import collections
import concurrent.futures
import contextlib
import json
import os
import runpy
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from gunicorn_proc import ROOT, Connector, free_port

CHUNKED_2_MIB = b'{"to": "447700900000", "text": "hi"}'.ljust(1024 * 1024) + b" " * (1024 * 1024)


def chunked(body, size=64 * 1024):
    pieces = [body[i : i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


POST = b"POST / HTTP/1.1\r\nHost: x\r\nAuthorization: Custom key:secret\r\n"
REQUESTS = {
    "CL and TE": (
        POST + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    "two Content-Lengths": (POST + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}", 400),
    "NUL in a header": (b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", 400),
    "16 KiB header": (
        b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 16384 + b"\r\n\r\n",
        431,
    ),
    "150 headers": (
        b"GET /health HTTP/1.1\r\nHost: x\r\n"
        + b"".join(b"X-%d: a\r\n" % i for i in range(150))
        + b"\r\n",
        431,
    ),
    "10 KiB request line": (b"GET /" + b"a" * 10240 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    "invalid chunk size": (POST + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n", 400),
    "chunked 2 MiB": (POST + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(CHUNKED_2_MIB), 413),
    "Content-Length over 1 MiB": (POST + b"Content-Length: 2000000\r\n\r\n", 413),
    "head over 64 KiB": (
        b"GET /health HTTP/1.1\r\nHost: x\r\n"
        + b"".join(b"X-%d: %s\r\n" % (i, b"a" * 1000) for i in range(70))
        + b"\r\n",
        431,
    ),
    "space before a colon": (b"GET /health HTTP/1.1\r\nHost : x\r\n\r\n", 400),
    "chunk without its CRLF": (POST + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}XX0\r\n\r\n", 400),
    "Transfer-Encoding gzip": (POST + b"Transfer-Encoding: gzip\r\n\r\n", 501),
    "Expect: 200-ok": (POST + b"Content-Length: 2\r\nExpect: 200-ok\r\n\r\n{}", 417),
    "TLS on the plain port": (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40, 400),
}


CONFIGURED = {
    "DATABASE_URL": "",
    "VONAGE_API_URL": "http://127.0.0.1:9",
    "MOENGAGE_DELIVERY_URL": "http://127.0.0.1:9/dlr",
    "VONAGE_SIGNATURE_SECRET": "s" * 32,
    "VONAGE_FROM": "Acme",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("server")
    env = {
        **CONFIGURED,
        "GUNICORN_CMD_ARGS": "--log-level debug",  # the worker's loop tells how long it held
        "DATABASE_PATH": str(tmp / "c.db"),
    }
    connector = Connector(env, workers=1, threads=2).start(tmp / "gunicorn.log")
    yield connector
    connector.kill()


def exchange(port, data, timeout=5.0):
    """Send raw bytes, read the answer until the server closes or goes quiet."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        answer = b""
        try:
            while b"\r\n\r\n" not in answer or len(answer) < _length(answer):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
        except TimeoutError:
            pass
    return answer


def _length(answer):
    head, _, _ = answer.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(head) + 4 + int(line.split(b":")[1])
    return 1 << 30


@pytest.mark.parametrize("name", list(REQUESTS))
def test_what_the_server_refuses_is_answered_in_json(server, name):
    data, status = REQUESTS[name]
    answer = exchange(server.port, data)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == str(status).encode(), answer[:300]
    assert b"content-type: application/json" in head.lower()
    reply = json.loads(body)
    assert reply["status"] == "failed" and reply["error"]


def test_a_malformed_authorization_line_is_neither_logged_nor_answered(server):
    """h11 quotes the line it refuses; the server's answer and log line leave the bytes out."""
    offset = len(server.log_text())
    data = b"GET /health HTTP/1.1\r\nHost: x\r\nAuthorization : Custom key:hush-secret\r\n\r\n"
    answer = exchange(server.port, data)
    assert answer.startswith(b"HTTP/1.1 400 ") and b"hush-secret" not in answer
    time.sleep(0.2)
    logged = server.log_text()[offset:]
    assert "Refused request" in logged and "hush-secret" not in logged


def test_slow_clients_hold_no_thread(server):
    """Two threads; eight clients stop halfway through a request. A gthread thread would
    wait on each: here the event loop holds them, and /health is still answered."""
    slow = []
    try:
        for i in range(8):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            if i % 2:
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # head unfinished
            else:
                sock.sendall(POST + b"Content-Length: 100\r\n\r\n{")  # body unfinished
            slow.append(sock)
        time.sleep(0.3)  # let the worker take them all
        for _ in range(3):
            assert requests.get(f"{server.url}/health", timeout=5).status_code == 200
        slow[0].sendall(b'"to": "447700900000", "text": "hi"}'.ljust(99))  # finish one
        answer = slow[0].recv(65536)
        assert answer.startswith(b"HTTP/1.1 ") and b"application/json" in answer
    finally:
        for sock in slow:
            sock.close()


def test_a_port_in_use_stops_the_start_naming_it(tmp_path):
    port = free_port()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        started = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py", "app:app"],
            cwd=ROOT,
            env={"PATH": "/usr/bin:/bin", "PORT": str(port), "DATABASE_PATH": str(tmp_path / "c")},
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            _, stderr = proc.communicate(timeout=15)
        finally:
            if proc.poll() is None:  # still running: it did not stop (today's main crash-loops)
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    assert proc.returncode not in (None, 0)
    assert time.monotonic() - started < 10
    assert f"port {port}" in stderr
    assert "Booting worker" not in stderr


def test_one_shared_socket_by_default(monkeypatch):
    """SO_REUSEPORT gave each worker its own socket: a HUP reset what was queued on a stopping
    worker's, and a second copy of the connector could bind the same port."""
    monkeypatch.delenv("GUNICORN_REUSE_PORT", raising=False)
    config = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    assert config["reuse_port"] is False
    assert config["worker_class"] == "connector.server.worker.Worker"


def test_a_reload_under_load_loses_no_request(server):
    """Users open a new connection for every request while the master reloads (kill -HUP):
    every one is answered."""
    outcomes, stop = [], time.monotonic() + 3

    def user():
        while time.monotonic() < stop:
            try:
                answer = requests.get(
                    f"{server.url}/health", headers={"Connection": "close"}, timeout=10
                )
                outcomes.append(answer.status_code)
            except requests.RequestException as exc:
                outcomes.append(type(exc).__name__)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(user) for _ in range(8)]
        time.sleep(1)
        os.kill(server.proc.pid, signal.SIGHUP)
        for future in futures:
            future.result()
    assert outcomes and set(outcomes) == {200}, collections.Counter(outcomes)


def test_expect_100_continue_is_answered_before_the_body(server):
    """The loop holds the request until its body is in, so it must say `100 Continue` itself
    to a client that waits for it (and gunicorn must not say it a second time)."""
    body = b'{"to": "447700900000", "text": "hi"}'
    head = POST + b"Content-Length: %d\r\nExpect: 100-continue\r\n\r\n" % len(body)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(head)
        assert sock.recv(1024) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 ") and b"100 Continue" not in answer
    assert b"application/json" in answer


def held_by_each_worker(connector):
    """Established connections to the connector's port, per worker process (from /proc)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].rsplit(":", 1)[1], 16) == connector.port and fields[3] == "01":
            inodes.add(fields[9])
    held = []
    for pid in (
        Path(f"/proc/{connector.proc.pid}/task/{connector.proc.pid}/children").read_text().split()
    ):
        links = []
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                links.append(os.readlink(fd))
        held.append(sum(1 for link in links if link[8:-1] in inodes))
    return sorted(held)


def all_serving(held, workers=2):
    return len(held) == workers and min(held) > 0


def test_connections_opened_at_once_spread_over_the_workers(tmp_path):
    """One shared socket: a worker takes a connection only while it holds no more than the
    least loaded one (plus 2). Without that, whichever worker woke first took most."""
    connector = Connector({"DATABASE_PATH": str(tmp_path / "c.db")}, workers=2, threads=4)
    connector.start(tmp_path / "gunicorn.log")
    socks = []
    try:
        # Both workers serving first (the second may still be loading the app on a busy
        # machine): kept-alive connections until each worker holds one, then all closed.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not all_serving(held_by_each_worker(connector)):
            socks.append(socket.create_connection(("127.0.0.1", connector.port), timeout=5))
            socks[-1].sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            socks[-1].recv(65536)
            time.sleep(0.05)
        while socks:
            socks.pop().close()
        time.sleep(0.5)  # the workers count them gone at their next loop turn
        for _ in range(40):
            socks.append(socket.create_connection(("127.0.0.1", connector.port), timeout=5))
        for sock in socks:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        for sock in socks:  # every one answered (a worker that declined comes back at once)
            assert sock.recv(65536).startswith(b"HTTP/1.1 ")
        held = held_by_each_worker(connector)
    finally:
        for sock in socks:
            sock.close()
        connector.kill()
    assert len(held) == 2 and sum(held) == 40 and held[0] >= 17, held


def test_a_body_of_100k_one_byte_chunks_never_holds_the_loop_for_10_ms(server):
    """Issue 17 item 6: h11 takes a chunked body as it arrives (linear), and a turn of the
    worker's loop gives one connection at most ~2 ms: other clients are served meanwhile.
    The worker logs, at debug level, the most CPU one turn spent on each request it read."""
    body = b'{"to": "447700900000", "text": "hi"}'.ljust(100_000)
    wire = b"".join(b"1\r\n%c\r\n" % byte for byte in body) + b"0\r\n\r\n"
    offset = len(server.log_text())
    meanwhile, done = [], []

    def upload():
        head = POST + b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        done.append(exchange(server.port, head + wire, timeout=30))

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        uploading = pool.submit(upload)
        while not uploading.done():
            started = time.monotonic()
            answer = exchange(server.port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            meanwhile.append((answer[:12], time.monotonic() - started))
        uploading.result()
    assert done[0].startswith(b"HTTP/1.1 ") and b"application/json" in done[0]
    assert meanwhile and {status for status, _ in meanwhile} == {b"HTTP/1.1 200"}, meanwhile
    line = next(
        line
        for line in server.log_text()[offset:].splitlines()
        if "Read POST / whole" in line and "turns of the loop" in line
    )
    turns = int(line.split(" whole in ")[1].split()[0])
    longest_ms = float(line.split("the longest held it ")[1].split()[0])
    assert turns > 50, line  # taken in slices, not in one go
    assert longest_ms < 10, line


def test_a_request_sent_byte_by_byte_is_answered_once_whole(server):
    """However the bytes are split, a request goes to a thread only once it is whole."""
    raw = (
        POST + b'Transfer-Encoding: chunked\r\n\r\n5;x=y\r\n{"to"\r\n4\r\n: 1}\r\n0\r\nT: 1\r\n\r\n'
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        for byte in raw[:-1]:
            sock.sendall(bytes([byte]))
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            sock.recv(1024)  # nothing answered before the last byte
        sock.settimeout(5)
        sock.sendall(raw[-1:])
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 400 ") and b"application/json" in answer


def test_a_request_not_whole_within_read_timeout_is_answered_408(server):
    from connector.server.worker import READ_TIMEOUT

    with socket.create_connection(("127.0.0.1", server.port), timeout=READ_TIMEOUT + 5) as sock:
        started = time.monotonic()
        sock.sendall(POST + b"Content-Length: 100\r\n\r\n{")
        answer = sock.recv(65536)
        waited = time.monotonic() - started
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ") and json.loads(body)["status"] == "failed"
    assert READ_TIMEOUT - 0.5 <= waited <= READ_TIMEOUT + 3


def test_what_the_worker_uses_of_gunicorn_is_still_there():
    """connector/server/worker.py uses gunicorn's documented custom-worker interface only, and the
    settings it reads; an upgrade of gunicorn that changes any of it fails here, and so does
    any upgrade at all until docs/server.md's list was checked against it."""
    import inspect

    import gunicorn
    from gunicorn.config import Config
    from gunicorn.workers.base import Worker as Base

    from connector.server.worker import Worker

    pinned = next(
        line.split("==")[1].strip()
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line.startswith("gunicorn==")
    )
    assert gunicorn.__version__ == pinned, "check docs/server.md's list, then pin the new one"
    assert issubclass(Worker, Base) and Base.run is not Worker.run
    params = list(inspect.signature(Base.__init__).parameters)
    assert params == ["self", "age", "ppid", "sockets", "app", "timeout", "cfg", "log"]
    cfg = Config()
    for name in (
        "threads",
        "keepalive",
        "graceful_timeout",
        "worker_connections",
        "limit_request_line",
        "limit_request_fields",
        "limit_request_field_size",
        "max_requests",
        "max_requests_jitter",
        "reuse_port",
        "is_ssl",
        "forwarded_allow_ips",
        "secure_scheme_headers",
        "workers",
    ):
        getattr(cfg, name)
    worker = Worker(0, os.getpid(), [], None, 30, cfg, None)
    try:
        assert worker.sockets == [] and worker.cfg is cfg and worker.alive
        worker.notify()  # the heartbeat the master watches
        worker.handle_exit(signal.SIGTERM, None)  # what TERM (a HUP's old workers) calls
        assert worker.alive is False
    finally:
        worker.tmp.close()  # the heartbeat's file (made by gunicorn's constructor)
    source = inspect.getsource(Base.init_process)
    assert source.index("post_worker_init(self)") < source.index("self.run()")


def test_an_idle_worker_keeps_telling_the_master_it_is_alive(tmp_path):
    """gunicorn's master restarts a worker it has not heard from in GUNICORN_TIMEOUT: the
    loop's heartbeat goes on with no request at all."""
    env = {**CONFIGURED, "DATABASE_PATH": str(tmp_path / "c.db"), "GUNICORN_TIMEOUT": "2"}
    connector = Connector(env, workers=1, threads=2).start(tmp_path / "gunicorn.log")
    try:
        children = Path(f"/proc/{connector.proc.pid}/task/{connector.proc.pid}/children")
        before = children.read_text().split()
        time.sleep(5)
        assert children.read_text().split() == before
        assert requests.get(f"{connector.url}/health", timeout=5).status_code == 200
    finally:
        connector.kill()
    assert "WORKER TIMEOUT" not in (tmp_path / "gunicorn.log").read_text()
