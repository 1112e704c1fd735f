"""The gunicorn worker: an event loop that reads each request whole, then a thread runs it.

A thread only ever gets a request whose bytes are all in: gunicorn's gthread hands a
connection to a thread at its first byte, and about 300 clients sending a byte every 2 s held
every thread and stopped every send. Here one selector loop (no thread) reads every request,
framed by h11 (connector/server/h11_conn.py), bounded (the head, the 1 MiB body, READ_BUDGET), and
submits it to the thread pool when it is whole: a slow client costs a socket and a buffer. A
request not whole within READ_TIMEOUT is answered 408. What the server refuses itself is JSON.

Built on gunicorn's documented custom-worker interface only: a subclass of
`gunicorn.workers.base.Worker` whose `run()` serves `self.sockets` with `self.wsgi`, calls
`self.notify()` (twice a second) and stops when `self.alive` turns false (docs/server.md).
"""

import os
import random
import selectors
import signal
import socket
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from gunicorn.workers.base import Worker as BaseWorker

from connector.server.fair_accept import Share
from connector.server.h11_conn import GONE, MORE, PENDING, READY, TRUSTED, Conn, Refusal

READ_TIMEOUT = 10.0  # a send must be answered within MoEngage's 5 s anyway
# After a refusal, what the client still sends is read and dropped for a while before the
# socket closes: closing with unread bytes resets the connection, and the client would see
# the reset instead of the answer.
DRAIN_SECONDS, DRAIN_BYTES = 2.0, 4 * 1024 * 1024
# What one worker holds of requests not yet whole, all connections together: many clients each
# sending most of a 1 MiB body and stopping would otherwise hold 1 MiB each for READ_TIMEOUT.
READ_BUDGET = 32 * 1024 * 1024
DECLINE_SECONDS = 0.005  # after leaving a connection to a less loaded worker, look again
BEAT_SECONDS = 0.5  # how often the loop tells gunicorn's master it is alive (GUNICORN_TIMEOUT)


class Worker(BaseWorker):
    """`worker_class = "connector.server.worker.Worker"` (gunicorn.conf.py)."""

    answer_early = None  # f(h11 request, body) -> a Result or None; set by post_worker_init

    def run(self):
        self._setup()
        try:
            while self.alive:
                self._turn()
            self._stop()
        finally:
            self.share.leave()
            self.pool.shutdown(wait=False, cancel_futures=True)
            for conn in list(self.conns):
                self._close(conn)

    def _setup(self):
        cfg = self.cfg
        if cfg.is_ssl:
            raise RuntimeError(
                "connector.server.worker.Worker serves plain HTTP: TLS is the platform's"
            )
        self.selector = selectors.DefaultSelector()
        self.parent = _parent()
        self.limits = (
            cfg.limit_request_line,
            cfg.limit_request_fields,
            cfg.limit_request_field_size,
        )
        self.pool = ThreadPoolExecutor(cfg.threads, thread_name_prefix="request")
        self.conns = {}  # every connection held -> its deadline (None while a thread has it)
        self.waiting = {}  # connection -> what to do at its deadline
        self.pending = set()  # connections with bytes read but not yet taken by h11
        self.buffered = 0  # bytes held of requests not yet whole
        self.done = deque()  # (connection, keep it) handed back by the threads
        self.served = 0
        jitter = random.randint(0, cfg.max_requests_jitter) if cfg.max_requests else 0
        self.max_served = cfg.max_requests + jitter if cfg.max_requests else None
        self.share = Share(cfg.worker_connections)
        self.decline_until = 0.0
        self.next_beat = 0.0
        self.listening = False
        self.wake_r, self.wake_w = socket.socketpair()
        for sock in (self.wake_r, self.wake_w):
            sock.setblocking(False)
        signal.set_wakeup_fd(self.wake_w.fileno())  # a signal (TERM from a HUP) ends a wait
        self.selector.register(self.wake_r, selectors.EVENT_READ, (self._on_wake, self.wake_r))
        for sock in self.sockets:
            sock.setblocking(False)
        self._listen(True)
        name = self.sockets[0].getsockname()
        host, port = name[:2] if isinstance(name, tuple) else (name, "")
        self.base = {
            "SERVER_NAME": str(host),
            "SERVER_PORT": str(port),
            "SERVER_SOFTWARE": "connector",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.multithread": True,
            "wsgi.multiprocess": cfg.workers > 1,
            "wsgi.run_once": False,
        }
        # gunicorn's own settings for a proxy (FORWARDED_ALLOW_IPS, secure_scheme_headers):
        # only a peer they name may say the request came over https (X-Forwarded-Proto).
        self.base[TRUSTED] = (
            set(cfg.forwarded_allow_ips),
            {name.upper(): value for name, value in cfg.secure_scheme_headers.items()},
        )

    def _turn(self):
        now = time.monotonic()
        if now >= self.next_beat:  # not every turn: a system call hands the GIL over
            self.next_beat = now + BEAT_SECONDS
            self.notify()  # gunicorn's heartbeat: a worker whose loop is stuck gets restarted
            if self.parent != _parent():
                self.log.info("Parent changed, shutting down: %s", self)
                self.alive = False
        self.share.publish(len(self.conns))
        timeout = 0.0 if self.pending or self.done else 1.0
        if not self.listening and self.decline_until:
            timeout = min(timeout, max(self.decline_until - time.monotonic(), 0.001))
        self._events(timeout)
        if not self.listening and time.monotonic() >= self.decline_until:
            self._listen(True)
        if self.answer_early is not None:
            self.answer_early.tick()

    def _listen(self, on):
        if on == self.listening:
            return
        for sock in self.sockets:
            if on:
                self.selector.register(sock, selectors.EVENT_READ, (self._accept, sock))
            else:
                self.selector.unregister(sock)
        self.listening = on

    def _accept(self, listener):
        """Take a connection, unless a less loaded worker should (fair_accept.py)."""
        if not self.cfg.reuse_port and self.share.over(len(self.conns)):
            self.decline_until = time.monotonic() + DECLINE_SECONDS
            self._listen(False)
            return
        try:
            sock, addr = listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return
        sock.setblocking(False)
        conn = Conn(sock, addr, self.limits)
        self.share.publish(len(self.conns) + 1)
        self._read(conn, READ_TIMEOUT, self._timed_out)

    def _read(self, conn, seconds, at_deadline):
        """Wait for (more of) a request on `conn`, for `seconds` at most."""
        self.conns[conn] = time.monotonic() + seconds
        self.waiting[conn] = at_deadline
        self._watch(conn, self._on_readable)

    def _watch(self, conn, handler):
        """Have the selector call `handler` when `conn` is readable (None: not at all)."""
        if handler is None:
            if conn.watched is not None:
                self.selector.unregister(conn.sock)
        elif conn.watched is None:
            self.selector.register(conn.sock, selectors.EVENT_READ, (handler, conn))
        elif conn.watched != handler:
            self.selector.modify(conn.sock, selectors.EVENT_READ, (handler, conn))
        conn.watched = handler

    def _on_readable(self, conn):
        if not conn.receive():
            return
        if self.waiting.get(conn) == self._idle_over:  # a kept-alive connection's next request
            self.conns[conn] = time.monotonic() + READ_TIMEOUT
            self.waiting[conn] = self._timed_out
        self._advance(conn)

    def _advance(self, conn):
        try:
            state = conn.advance()
        except Refusal as refusal:
            self._refuse(conn, refusal.status, refusal.reason)
            return
        self.buffered += conn.held - conn.counted
        conn.counted = conn.held
        if state == PENDING:  # read no more from it until h11 has taken what it holds
            self.pending.add(conn)
            self._watch(conn, None)
        else:
            self.pending.discard(conn)
        if state == GONE or (state == MORE and conn.eof):
            self._close(conn)
        elif state == READY:
            self._dispatch(conn)
        elif self.buffered > READ_BUDGET:
            self._refuse(conn, 503, "too many large requests are arriving at once; retry shortly")
        elif state == MORE:
            self._watch(conn, self._on_readable)

    def _unhold(self, conn):
        """`conn` no longer waits for bytes in the loop."""
        self.buffered -= conn.counted
        conn.counted = 0
        self.waiting.pop(conn, None)
        self.pending.discard(conn)
        self._watch(conn, None)

    def _dispatch(self, conn):
        """A whole request: answered here if connector/server/early.py can, else to a thread."""
        conn.closing = not self.alive or self.cfg.keepalive <= 0
        self.log.debug(
            "Read %s %s whole in %d turns of the loop; the longest held it %.2f ms (CPU)",
            conn.request.method.decode("ascii"),
            conn.request.target[:100].decode("latin-1"),
            conn.slices,
            conn.longest_slice * 1000,
        )
        if self.answer_early is not None and self._answer_early(conn):
            return
        self._unhold(conn)
        self.conns[conn] = None
        self.pool.submit(self._serve, conn)

    def _answer_early(self, conn):
        """The loop answers, and the connection stays watched for its next request: no
        system call but the answer's one send."""
        result = self.answer_early(conn.request, bytes(conn.body))
        if result is None:
            return False
        try:
            conn.answer(result.status, result.answer, result.headers)
            conn.flush(timeout=0)  # a few hundred bytes: a socket waiting for them takes them
            keep = conn.next_cycle()
        except OSError:
            keep = False  # a client that does not take a few hundred bytes: let it go
        self._back(conn, keep)
        return True

    def _serve(self, conn):
        """In a thread: the app's answer, then the connection goes back to the loop."""
        keep = False
        try:
            keep = conn.respond(self.wsgi, self.base, self.log)
        except Exception:  # the connection closes; the worker goes on
            self.log.exception("Error answering a request")
        self.done.append((conn, keep))
        try:
            self.wake_w.send(b"\0")
        except OSError:
            pass  # the loop is awake already (the socket buffer is full of wake-ups)

    def _on_wake(self, sock):
        try:
            while sock.recv(4096):
                pass
        except OSError:
            pass

    def _take_back(self):
        while self.done:
            conn, keep = self.done.popleft()
            self.served += 1
            self._back(conn, keep)
        if self.max_served and self.served >= self.max_served and self.alive:
            self.log.info("Autorestarting worker after current request.")
            self.alive = False

    def _back(self, conn, keep):
        """After an answer: wait for the connection's next request, or close it."""
        self.buffered -= conn.counted
        conn.counted = 0
        if not keep or not self.alive:
            self._close(conn)
        elif conn.h11.trailing_data[0]:  # pipelined: the next request is (partly) read already
            self.conns[conn] = time.monotonic() + READ_TIMEOUT
            self.waiting[conn] = self._timed_out
            self.pending.add(conn)
            self._watch(conn, None)
        else:
            self._read(conn, self.cfg.keepalive, self._idle_over)

    def _expire(self):
        now = time.monotonic()
        if now < getattr(self, "next_expiry", 0.0):
            return
        self.next_expiry = now + 0.1
        for conn, deadline in list(self.conns.items()):
            if deadline is not None and deadline <= now and conn in self.waiting:
                self.waiting[conn](conn)

    def _timed_out(self, conn):
        if conn.request is None and not conn.h11.trailing_data[0]:
            self._close(conn)  # connected, sent nothing: just closed
        else:
            self._refuse(conn, 408, f"the request was not received whole within {READ_TIMEOUT:g} s")

    def _idle_over(self, conn):
        self._close(conn)

    def _refuse(self, conn, status, reason):
        """Answer the refusal, then read and drop what still comes for DRAIN_SECONDS."""
        self.log.warning("Refused request from ip=%s: %s %s", conn.addr[0], status, reason)
        self._unhold(conn)
        conn.refuse(status, reason)
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._close(conn)
            return
        conn.drained = 0
        self.conns[conn] = time.monotonic() + DRAIN_SECONDS
        self.waiting[conn] = self._close
        self._watch(conn, self._drain)

    def _drain(self, conn):
        try:
            data = conn.sock.recv(64 * 1024)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        conn.drained += len(data)
        if not data or conn.drained > DRAIN_BYTES:
            self._close(conn)

    def _close(self, conn):
        self._unhold(conn)
        self.conns.pop(conn, None)
        conn.close()

    def _stop(self):
        """Stopping (TERM, a HUP's old workers): no new connection; requests under way are
        answered with `Connection: close` within graceful_timeout; idle ones are closed."""
        self._listen(False)
        self.decline_until = 0.0
        self.share.leave()
        for conn in list(self.conns):
            if self.waiting.get(conn) == self._idle_over:
                self._close(conn)
            else:
                conn.closing = True  # read or answered now: `Connection: close` on its answer
        deadline = time.monotonic() + self.cfg.graceful_timeout
        while self.conns and time.monotonic() < deadline:
            self.notify()
            self._events(0.0 if self.pending or self.done else 0.2)

    def _events(self, timeout):
        for key, _ in self.selector.select(timeout):
            self._guarded(*key.data)
        for conn in list(self.pending):
            self._guarded(self._advance, conn)
        self._take_back()
        self._expire()

    def _guarded(self, handler, arg):
        """A fault of the server's own code ends the connection it served, not the worker
        (with every other connection it holds)."""
        try:
            handler(arg)
        except Exception:  # logged, and the connection closed
            self.log.exception("Error in the worker's event loop; the connection is closed")
            if isinstance(arg, Conn):
                self._close(arg)


def _parent():
    return os.getppid()  # a worker whose master died is orphaned: it stops
