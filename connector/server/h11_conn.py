"""One client connection of the worker (connector/server/worker.py), framed by h11.

h11 (python-hyper's incremental HTTP/1.1 parser) does all the framing: where a request's head
and body end, chunked bodies, keep-alive, `100 Continue`, and how an answer is framed. This
module adds what the connector needs around it: gunicorn's documented limits on the request
line and header fields, the 1 MiB body limit, a bound on the time one connection may hold the
worker's event loop, the WSGI environ, and refusals in the connector's JSON error shape.

The event loop calls `advance` until the request is whole, then a thread calls `respond`:
the two never touch one connection at once (the loop unregisters it while a thread has it).
"""

import io
import json
import select
import socket
import sys
import time
from email.utils import formatdate
from http import HTTPStatus
from urllib.parse import unquote_to_bytes

import h11

from connector.bodies import MAX_BODY, TOO_LARGE

READ_SIZE = 64 * 1024
MAX_HEAD = 64 * 1024  # a head h11 has not seen the end of within this many bytes: 431
# One connection holds the loop at most this long per turn (then the others get theirs):
# h11 turns each chunk of a chunked body into an event, and 64 KiB of one-byte chunks is
# ~11,000 of them.
SLICE_SECONDS = 0.002
WRITE_TIMEOUT = 10.0  # a client that does not read its (small) answer loses it
MORE, PENDING, READY, GONE = "more", "pending", "ready", "gone"


TRUSTED = "connector.trusted_proxy"  # the base environ's (allowed peers, secure scheme headers)


class Refusal(Exception):
    """A request answered `{"status": "failed", "error": reason}` by the server itself."""

    def __init__(self, status, reason):
        super().__init__(f"{status} {reason}")
        self.status, self.reason = status, reason


class Conn:
    def __init__(self, sock, addr, limits):
        self.sock, self.addr = sock, addr
        self.limits = limits  # (request line, header fields, bytes per field): gunicorn's cfg
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        self.deadline = 0.0
        self.longest_slice = 0.0  # the most CPU one turn of the loop spent on this request
        self.slices = 0  # turns of the loop this request took
        self.closing = False  # answer with `Connection: close` (the worker is stopping)
        self.eof = False  # the client closed its side
        self.counted = 0  # bytes of `held` the worker counts in its READ_BUDGET
        self.watched = None  # what the worker's selector calls when it is readable
        self.out = bytearray()  # the answer's bytes not yet written
        self._reset()

    def _reset(self):
        self.request, self.body = None, bytearray()

    @property
    def held(self):
        """Bytes of this request the worker holds (for its READ_BUDGET)."""
        return len(self.body)

    def receive(self):
        """Read what the socket holds into h11; False if nothing was there yet."""
        try:
            data = self.sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            data = b""
        self.eof = self.eof or not data
        self.h11.receive_data(data)
        return True

    def advance(self):
        """Take h11's events for at most SLICE_SECONDS: MORE (read the socket again), PENDING
        (bytes already read are left: come back next turn), READY (the request is whole),
        GONE (the client closed). Raises Refusal for a request the server refuses."""
        started, cpu = time.monotonic(), time.thread_time()
        self.slices += 1
        try:
            return self._events(started)
        except h11.RemoteProtocolError as exc:
            if self.eof:
                return GONE  # closed halfway through a request: nobody to answer
            raise Refusal(exc.error_status_hint, _reason(exc)) from None
        finally:
            self.longest_slice = max(self.longest_slice, time.thread_time() - cpu)

    def _events(self, started):
        for n in range(1 << 62):
            if n % 64 == 63 and time.monotonic() - started > SLICE_SECONDS:
                return PENDING
            event = self.h11.next_event()
            if event is h11.NEED_DATA:
                return MORE
            if event is h11.PAUSED:
                return READY if self.request is not None else MORE
            if isinstance(event, h11.Request):
                self._check(event)
                self.request = event
                if self.h11.they_are_waiting_for_100_continue:
                    self._continue()
            elif isinstance(event, h11.Data):
                self.body += event.data
                if len(self.body) > MAX_BODY:
                    raise Refusal(413, TOO_LARGE)
            elif isinstance(event, h11.EndOfMessage):
                return READY
            elif isinstance(event, h11.ConnectionClosed):
                return GONE
        return PENDING

    def _continue(self):
        """`100 Continue`, from the loop: 25 bytes a socket with nothing else to send takes."""
        self._send(h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue"))
        try:
            self.flush(timeout=0)
        except OSError:
            pass  # the client sends its body anyway once it tires of waiting

    def _check(self, request):
        """gunicorn's documented limits (limit_request_line, limit_request_fields,
        limit_request_field_size), the body limit, and no request smuggling."""
        line, fields, field_size = self.limits
        if line and len(request.target) + len(request.method) + 10 > line:
            raise Refusal(414, f"the request line is over {line} bytes")
        if fields and len(request.headers) > fields:
            raise Refusal(431, f"more than {fields} header fields")
        names, size = set(), len(request.target)
        for name, value in request.headers:
            size += len(name) + len(value) + 4
            if field_size and len(name) + len(value) + 2 > field_size:
                raise Refusal(431, f"a header field is over {field_size} bytes")
            names.add(name)
        if size > MAX_HEAD:  # h11 counts only a head not yet whole in what it was given
            raise Refusal(431, f"the request head is over {MAX_HEAD // 1024} KiB")
        expect = [value for name, value in request.headers if name == b"expect"]
        if any(value.lower() != b"100-continue" for value in expect):
            raise Refusal(417, "the only Expect this server meets is 100-continue")
        if b"content-length" in names and b"transfer-encoding" in names:
            raise Refusal(400, "both Content-Length and Transfer-Encoding")
        for name, value in request.headers:
            if name == b"content-length" and int(value) > MAX_BODY:
                raise Refusal(413, TOO_LARGE)  # refused from the header, the body unread

    def environ(self, base):
        """The WSGI environ (PEP 3333) of the whole request."""
        request = self.request
        path, _, query = request.target.partition(b"?")
        allowed, secure_headers = base.get(TRUSTED) or (set(), {})
        environ = {
            **{k: v for k, v in base.items() if k != TRUSTED},
            "REQUEST_METHOD": request.method.decode("ascii"),
            "SCRIPT_NAME": "",
            "PATH_INFO": unquote_to_bytes(path).decode("latin-1"),
            "QUERY_STRING": query.decode("latin-1"),
            "SERVER_PROTOCOL": "HTTP/" + request.http_version.decode("ascii"),
            "REMOTE_ADDR": self.addr[0] if isinstance(self.addr, tuple) else "",
            "REMOTE_PORT": str(self.addr[1]) if isinstance(self.addr, tuple) else "",
            "wsgi.input": io.BytesIO(bytes(self.body)),
            "wsgi.input_terminated": True,
            "wsgi.errors": sys.stderr,
        }
        for name, value in request.headers:
            if b"_" in name:
                continue  # as gunicorn: X_A would pass for X-A to the app
            key = name.decode("latin-1").upper().replace("-", "_")
            key = key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key
            text = value.decode("latin-1")
            environ[key] = f"{environ[key]},{text}" if key in environ else text
        if "*" in allowed or environ["REMOTE_ADDR"] in allowed:
            for name, value in secure_headers.items():
                if environ.get("HTTP_" + name.replace("-", "_")) == value:
                    environ["wsgi.url_scheme"] = "https"
        return environ

    def respond(self, app, base, log):
        """In a thread: run the app and write its answer. True if the connection can take
        its next request."""
        try:
            self._run(app, self.environ(base), log)
            self.flush()
        except OSError:
            return False  # the client went away
        return self.next_cycle()

    def _run(self, app, environ, log):
        started = []

        def start_response(status, headers, exc_info=None):
            if exc_info and started:
                raise exc_info[1].with_traceback(exc_info[2])
            code, _, reason = status.partition(" ")
            if self.closing:
                headers = [*headers, ("Connection", "close")]
            started[:] = [int(code), reason.encode("latin-1"), [*headers, ("Date", _date())]]

        head_only = self.request.method == b"HEAD"
        try:
            result = app(environ, start_response)
            try:
                for data in result:
                    if data and not head_only:
                        self._start(started)
                        self._send(h11.Data(data=data))
                        if len(self.out) >= READ_SIZE:
                            self.flush()
                self._start(started)
                self._send(h11.EndOfMessage())
            finally:
                if hasattr(result, "close"):
                    result.close()
        except OSError:
            raise
        except Exception:  # an app or h11 fault: 500, as gunicorn does
            log.exception("Error handling request %s", self.request.target[:200])
            if self.h11.our_state is h11.SEND_RESPONSE:
                self.refuse(500, "internal error")
            else:
                raise OSError("the answer was cut short") from None

    def _start(self, started):
        if self.h11.our_state is h11.SEND_RESPONSE:
            code, reason, headers = started
            self._send(h11.Response(status_code=code, reason=reason, headers=headers))

    def refuse(self, status, reason):
        """Answer `{"status": "failed", "error": reason}` and close after it."""
        try:
            self.answer(status, {"status": "failed", "error": reason}, {"Connection": "close"})
            self.flush()
        except (h11.LocalProtocolError, OSError):
            pass  # an answer already under way, or a client gone: the connection just closes

    def answer(self, status, body, headers):
        """A whole JSON answer made without the app (a refusal, connector/server/early.py), to be
        flushed."""
        data = json.dumps(body).encode()
        try:
            phrase = HTTPStatus(status).phrase.encode()
        except ValueError:
            phrase = b"Error"
        fields = [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(data))),
            *headers.items(),
            ("Date", _date()),
        ]
        if self.closing and "Connection" not in headers:
            fields.append(("Connection", "close"))
        self._send(h11.Response(status_code=status, reason=phrase, headers=fields))
        self._send(h11.Data(data=data))
        self._send(h11.EndOfMessage())

    def _send(self, event):
        self.out += self.h11.send(event)

    def flush(self, timeout=WRITE_TIMEOUT):
        """Write what the answer holds in one send where the socket takes it (one system call,
        one handover of the GIL), waiting at most `timeout` for a client slow to read."""
        view, deadline = memoryview(self.out), time.monotonic() + timeout
        try:
            while view:
                try:
                    view = view[self.sock.send(view) :]
                except (BlockingIOError, InterruptedError):
                    left = deadline - time.monotonic()
                    if left <= 0 or not select.select([], [self.sock], [], left)[1]:
                        raise TimeoutError("the client does not read its answer") from None
        finally:
            view.release()
            self.out = bytearray()

    def next_cycle(self):
        """After an answer: ready for the connection's next request, or False (close it)."""
        if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
            self.h11.start_next_cycle()
            self._reset()
            self.longest_slice, self.slices = 0.0, 0
            return True
        return False

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def _reason(exc):
    """h11's reason without the bytes it quotes: a malformed line may be an Authorization
    header, which is neither logged nor sent back."""
    text = str(exc)
    for quoted in (": bytearray(", ": b'", ': b"'):
        text = text.partition(quoted)[0]
    return text


_dated = [0, ""]  # the second and its Date header value: made once a second, not per answer


def _date():
    now = int(time.time())
    if _dated[0] != now:
        _dated[:] = [now, formatdate(now, usegmt=True)]
    return _dated[1]
