"""The gunicorn worker: gthread, but a thread only ever gets a request whose bytes are all in.

gthread hands a connection to a thread as soon as its first byte arrives; the thread then
reads the rest, however slowly it comes. About 300 clients sending a byte every 2 s held every
thread and stopped every send. Here the worker's event loop (one selector, no thread) reads each
request, head and body, into memory (bounded: MAX_HEAD, the 1 MiB body limit) and submits it to
the thread pool only when it is whole, so slow clients cost a socket and a buffer, not a thread.
A request not whole within READ_TIMEOUT is answered 408 and closed.

It also answers in JSON what gunicorn refuses before the app sees a request (a bad request line,
conflicting lengths, too many headers...), instead of gunicorn's HTML page.
"""

import html
import mmap
import os
import re
import selectors
import socket
import struct
import time
from collections import deque
from functools import partial

from gunicorn import util
from gunicorn.workers.gthread import ThreadWorker

from . import framing

READ_TIMEOUT = 10.0  # a send must be answered within MoEngage's 5 s anyway
# After a refusal, what the client still sends is read and dropped for a while before the
# socket closes: closing with unread bytes resets the connection, and the client would see
# the reset instead of the answer.
DRAIN_SECONDS, DRAIN_BYTES = 2.0, 4 * 1024 * 1024
# What one worker holds of requests not yet whole, all connections together: many clients each
# sending most of a 1 MiB body and stopping would otherwise hold 1 MiB each for READ_TIMEOUT.
READ_BUDGET = 32 * 1024 * 1024
# Fair accept on the one shared socket: each worker publishes how many connections it holds in
# a table the master maps before it forks (this module is imported by gunicorn.conf.py), and
# takes a new connection only while it holds at most FAIR_MARGIN more than the least loaded
# live worker. Otherwise whichever worker woke first took most of a burst ([0, 29, 37, 62] of 128
# measured, bench/RESULTS.md), and a kept-alive connection stays where it was accepted.
SLOTS, FAIR_MARGIN, STALE_SECONDS, DECLINE_SECONDS = 64, 2, 2.5, 0.005
_SLOT = struct.Struct("iid")  # pid (0: not accepting), connections, when (monotonic)
_TABLE = mmap.mmap(-1, SLOTS * _SLOT.size)  # anonymous, MAP_SHARED: one table for all workers
_STATUS_LINE = re.compile(rb"HTTP/1\.1 (\d{3}) ([^\r\n]*)")
_MESSAGE = re.compile(rb"</h1>(.*)</body>", re.DOTALL)


class Worker(ThreadWorker):
    """`worker_class = "connector.worker.Worker"` (gunicorn.conf.py)."""

    def init_process(self):
        self.slot = self.age % SLOTS
        self.fair = not self.cfg.reuse_port  # own sockets (reuse_port): the kernel spreads
        self.decline_until = 0.0
        self.reading = deque()  # connections being read, oldest first (all share READ_TIMEOUT)
        self.draining = deque()  # refused connections, read and dropped until they close
        self.buffered = 0  # bytes held in the inboxes of self.reading
        # f(raw request) -> an answer's bytes or None; set by gunicorn.conf.py's
        # post_worker_init from the app (connector/early.py), None for any other app.
        self.answer_early = getattr(self, "answer_early", None)
        super().init_process()

    def notify(self):
        """Called by gthread's loop at every turn: publish this worker's load too."""
        super().notify()
        self._publish(os.getpid() if self.alive else 0)

    def _publish(self, pid):
        _SLOT.pack_into(_TABLE, self.slot * _SLOT.size, pid, self.nr_conns, time.monotonic())

    def _over_fair_share(self):
        now, mine, least = time.monotonic(), self.nr_conns, None
        for slot in range(SLOTS):
            pid, conns, when = _SLOT.unpack_from(_TABLE, slot * _SLOT.size)
            if slot == self.slot or not pid or now - when > STALE_SECONDS:
                continue
            if conns < self.worker_connections and (least is None or conns < least):
                least = conns
        return least is not None and mine > least + FAIR_MARGIN

    def accept(self, listener):
        """Take a connection from the shared socket only while not holding more than the
        least loaded worker (plus FAIR_MARGIN): it will take it instead."""
        if self.fair and self._over_fair_share():
            self.decline_until = time.monotonic() + DECLINE_SECONDS
            self.set_accept_enabled(False)
            return
        super().accept(listener)
        self._publish(os.getpid())

    def set_accept_enabled(self, enabled):
        # gthread re-enables accepting at every loop turn; after declining, wait a little so
        # the level-triggered socket does not wake this worker in a loop meanwhile.
        if enabled and time.monotonic() < self.decline_until:
            return
        super().set_accept_enabled(enabled)

    def wait_for_and_dispatch_events(self, timeout):
        # After declining, come back to the accept race within DECLINE_SECONDS even when
        # nothing else wakes this worker: the least loaded one may be the one that declined.
        if not self._accepting and self.decline_until:
            timeout = min(timeout, max(self.decline_until - time.monotonic(), 0.001))
        super().wait_for_and_dispatch_events(timeout)

    def handle_exit(self, sig, frame):
        self._publish(0)  # stopping: no longer a worker the others compare themselves with
        super().handle_exit(sig, frame)

    def enqueue_req(self, conn):
        """Every way a connection reaches the thread pool (accepted, kept alive and readable
        again, bytes read ahead) comes here: read the request whole first."""
        if self.cfg.is_ssl:  # TLS is the platform's job here; gthread's way is kept for it
            super().enqueue_req(conn)
            return
        held = conn.parser.unreader.take_buffered() if conn.parser else b""
        conn.inbox = bytearray(held)
        conn.continued = conn.gone = False
        conn.counted = 0  # bytes of the inbox counted in self.buffered
        conn.read_deadline = time.monotonic() + READ_TIMEOUT
        conn.sock.setblocking(False)
        # Mostly the request is already there (the poller said the socket is readable): read it
        # now rather than wait for the poller to say so again.
        if self._receive(conn) and self._judge(conn):
            return
        if conn.gone:
            return
        self.reading.append(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, conn))

    def _on_readable(self, conn, _sock):
        if self._receive(conn):
            self._judge(conn)

    def _receive(self, conn):
        """Append what the socket holds to the inbox; False if nothing came. A client gone
        before its request was whole is closed here."""
        try:
            data = conn.sock.recv(64 * 1024)
        except (BlockingIOError, InterruptedError):
            return bool(conn.inbox)
        except OSError:
            data = b""
        if not data:
            self._stop_reading(conn)
            self._close(conn)
            conn.gone = True
            return False
        conn.inbox += data
        conn.counted += len(data)
        self.buffered += len(data)
        return True

    def _judge(self, conn):
        """Hand the request to a thread, refuse it, or keep reading. True once it left."""
        verdict = framing.request_end(conn.inbox)
        if verdict in (framing.MORE, framing.CONTINUE) and self.buffered > READ_BUDGET:
            verdict = (503, "too many large requests are arriving at once; retry shortly")
        if verdict == framing.CONTINUE:
            if not conn.continued:
                conn.continued = True
                self._send(conn, b"HTTP/1.1 100 Continue\r\n\r\n")
            return False
        if verdict == framing.MORE:
            return False
        self._stop_reading(conn)
        if verdict == framing.READY:
            if not self._answer_early(conn):
                conn.data_ready = True
                super().enqueue_req(conn)
        else:
            self._refuse(conn, *verdict)
        return True

    def _answer_early(self, conn):
        """Answer here what the app can refuse without a thread (connector/early.py: a send
        over VONAGE_MAX_RPS), then wait for the connection's next request as gthread does
        after one. False: the request goes to a thread."""
        if self.answer_early is None or not self.alive or not self.cfg.keepalive:
            return False
        if len(self.keepalived_conns) >= self.max_keepalived:
            return False  # gthread would close it after the answer: let it
        try:
            response = self.answer_early(conn.inbox)
        except Exception:  # the route answers whatever this could not
            self.log.exception("Answering early failed; the request goes to the app")
            return False
        if response is None:
            return False
        conn.inbox = None
        try:
            sent = conn.sock.send(response)  # a few hundred bytes: the socket takes them whole
        except OSError:
            sent = 0
        if sent != len(response):
            self._close(conn)
            return True
        conn.set_timeout()
        self.keepalived_conns.append(conn)
        self.poller.register(
            conn.sock, selectors.EVENT_READ, partial(self.on_client_socket_readable, conn)
        )
        return True

    def _stop_reading(self, conn):
        self.buffered -= conn.counted
        conn.counted = 0
        try:
            self.reading.remove(conn)
            self.poller.unregister(conn.sock)
        except (ValueError, KeyError):
            pass

    def murder_pending(self):
        """Called by gthread's loop at every turn (at least once a second): also end requests
        read too slowly, and let the early answers log what they held back."""
        super().murder_pending()
        if self.answer_early is not None:
            self.answer_early.tick()
        now = time.monotonic()
        while self.reading and self.reading[0].read_deadline <= now:
            conn = self.reading[0]
            self._stop_reading(conn)
            if conn.inbox:
                reason = f"the request was not received whole within {READ_TIMEOUT:g} s"
                self._refuse(conn, 408, reason)
            else:
                self._close(conn)
        while self.draining and self.draining[0].read_deadline <= now:
            self._end_drain(self.draining[0])

    def _refuse(self, conn, status, reason):
        self.log.warning("Refused request from ip=%s: %s %s", conn.client[0], status, reason)
        self._send(conn, framing.json_response(status, reason))
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._close(conn)
            return
        conn.inbox = None
        conn.drained = 0
        conn.read_deadline = time.monotonic() + DRAIN_SECONDS
        self.draining.append(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_drain, conn))

    def _on_drain(self, conn, _sock):
        try:
            data = conn.sock.recv(64 * 1024)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        conn.drained += len(data)
        if not data or conn.drained > DRAIN_BYTES:
            self._end_drain(conn)

    def _end_drain(self, conn):
        self.draining.remove(conn)
        try:
            self.poller.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        self._close(conn)

    def _send(self, conn, data):
        try:
            conn.sock.send(data)  # small; a client that does not read it loses it
        except OSError:
            pass

    def _close(self, conn):
        self.nr_conns -= 1
        conn.close()

    def handle(self, conn):
        """In a thread: give gunicorn's parser the bytes the loop read, then serve as gthread."""
        inbox, conn.inbox = getattr(conn, "inbox", None), None
        if inbox:
            conn.sock.setblocking(True)
            conn.init()
            conn.parser.unreader.unread(bytes(inbox))
        return super().handle(conn)

    def handle_request(self, req, conn):
        if getattr(conn, "continued", False):
            req._expected_100_continue = False  # the loop already sent it
        return super().handle_request(req, conn)

    def handle_error(self, req, client, addr, exc):
        """gunicorn's status and message for a request it refuses, rendered as JSON."""
        page = _Page()
        super().handle_error(req, page, addr, exc)
        line = _STATUS_LINE.match(page.data)
        if not line:
            return
        status = int(line.group(1))
        message = _MESSAGE.search(page.data)
        detail = html.unescape(message.group(1).decode("latin-1")).strip() if message else ""
        reason = detail or line.group(2).decode("latin-1")
        try:
            util.write_nonblock(client, framing.json_response(status, reason))
        except Exception:  # noqa: BLE001 - as gunicorn: the client may be gone
            self.log.debug("Failed to send error message.")


class _Page:
    """Stands in for the client socket while gunicorn writes its HTML error page."""

    def __init__(self):
        self.data = b""

    def gettimeout(self):
        return 0.0

    def sendall(self, data):
        self.data += data
