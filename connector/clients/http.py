"""The pooled HTTP client each outside client uses, one per worker process, and the deadline
that bounds a whole call through it.

A read timeout bounds each socket read, not the answer: a server sending one byte every
0.3 s holds a call for as long as it likes. `Deadline` closes the call's socket when its time is
up, whatever phase it is in (TLS handshake, status line, headers, body), so the blocked read
ends at once; a watchdog thread per process does the closing.
"""

import base64
import heapq
import itertools
import json
import os
import socket
import threading
import time
from urllib.parse import urlsplit

import urllib3
from requests.certs import where as default_ca_bundle
from requests.utils import get_auth_from_url, get_environ_proxies, select_proxy
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

USER_AGENT = "vonage-sms-connector"
WAKE_GRANULARITY = 0.01  # seconds a deadline may be enforced late
_current = threading.local()  # .call: the Deadline this thread runs under, if any


class Deadline:
    """A point in time every call made under `with deadline.watch() as call:` must end by: the
    connections it uses are shut down then. `call.expired` says a failure (or a cut answer) was
    the deadline's doing; `call.sent` whether the request had begun to go out before it."""

    def __init__(self, seconds):
        self.at = time.monotonic() + seconds

    def remaining(self):
        return self.at - time.monotonic()

    def watch(self):
        return _Call(self.at)


class _Call:
    def __init__(self, at):
        self.at = at
        self.expired = False
        self.sent = False
        self.done = False
        self._sockets = []  # (connection, socket, owned): an owned socket is a dup to close

    def __enter__(self):
        _current.call = self
        _WATCHDOG.watch(self)
        return self

    def __exit__(self, *exc):
        _current.call = None
        with _WATCHDOG.lock:
            self.done = True
            _WATCHDOG.finished()
            sockets, self._sockets = self._sockets, []
        for _, sock, owned in sockets:
            if owned:
                sock.close()
        return False

    def _track(self, conn, sock, owned):
        """Called with the watchdog's lock held."""
        conn.deadline_owner = self
        self._sockets.append((conn, sock, owned))
        if self.expired:
            _shutdown(sock)

    def _expire(self):
        """Called with the watchdog's lock held."""
        if self.done:
            return
        self.expired = True
        for conn, sock, _ in self._sockets:
            # A connection this call gave back to the pool may serve another call by now.
            if getattr(conn, "deadline_owner", None) is self:
                _shutdown(sock)


def _shutdown(sock):
    # socket.socket.shutdown on purpose: SSLSocket.shutdown would drop its SSL state under a
    # thread still reading; the plain shutdown just ends the TCP stream, and the read with it.
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass  # already closed


def _track(conn, sock, owned=False):
    call = getattr(_current, "call", None)
    if call is not None and sock is not None:
        with _WATCHDOG.lock:
            call._track(conn, sock, owned)


class _Watchdog:
    """One thread per process that expires deadlines in order; started when a call begins and
    none is running, gone once no call is left (so a command leaves no thread behind)."""

    def __init__(self):
        self.lock = threading.Lock()
        self._wake = threading.Condition(self.lock)
        self._heap = []
        self._seq = itertools.count()
        self._thread = None
        self._live = 0  # calls begun and not yet done

    def watch(self, call):
        with self.lock:
            heapq.heappush(self._heap, (call.at, next(self._seq), call))
            self._live += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="deadline", daemon=True)
                self._thread.start()
            if self._heap[0][2] is call:
                self._wake.notify()

    def finished(self):
        """A call is done (the lock held): with none left, the thread may end."""
        self._live -= 1
        if not self._live:
            self._heap.clear()  # every entry is a done call
            self._wake.notify()

    def _run(self):
        with self.lock:
            while True:
                while self._heap and self._heap[0][2].done:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._thread = None  # the next call starts another
                    return
                delay = self._heap[0][0] - time.monotonic()
                if delay > 0:
                    # At most one wake-up per 10 ms however many calls end (most end early).
                    self._wake.wait(max(delay, WAKE_GRANULARITY))
                    continue
                heapq.heappop(self._heap)[2]._expire()


_WATCHDOG = _Watchdog()


def _after_fork():
    global _WATCHDOG
    _WATCHDOG = _Watchdog()  # the parent's thread (and maybe its held lock) did not come along


os.register_at_fork(after_in_child=_after_fork)


class _Tracked:
    """Connection mixin: hand each socket to the thread's Deadline as soon as it exists."""

    def _new_conn(self):
        sock = super()._new_conn()
        # A dup, because TLS wrapping detaches this socket object; the dup keeps the same
        # connection reachable during the handshake, and its own descriptor cannot be reused.
        _track(self, sock.dup(), owned=True)
        return sock

    def request(self, *args, **kwargs):
        call = getattr(_current, "call", None)
        if call is not None:
            _track(self, self.sock)
            call.sent = True
        return super().request(*args, **kwargs)


class _HTTPConnection(_Tracked, HTTPConnection):
    pass


class _HTTPSConnection(_Tracked, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


POOL_CLASSES = {"http": _HTTPPool, "https": _HTTPSPool}


class Client:
    """Keep-alive connections to a few fixed URLs from up to `pool_size` threads at once,
    through urllib3 itself (requests' own transport).

    requests costs about twice urllib3's CPU per call (preparing, merging settings, hooks,
    cookies: 1.2 ms against 0.5-0.7 ms a call, bench/RESULTS.md), and a send makes one call, a
    webhook one more. What requests did for us is done here once: the proxy the environment
    names for each URL's host (HTTP(S)_PROXY, NO_PROXY, as requests reads them), the CA bundle
    (REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE, else certifi's, as requests), Basic auth. Never a
    retry or a redirect: the callers decide both. Our calls carry their own auth or need none,
    so ~/.netrc is left out.
    """

    def __init__(self, pool_size, *urls):
        bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        bundle = bundle or default_ca_bundle()
        options = {
            "num_pools": 4,
            "maxsize": pool_size,
            "cert_reqs": "CERT_REQUIRED",
            "ca_cert_dir" if os.path.isdir(bundle) else "ca_certs": bundle,
        }
        self._direct = _tracked(urllib3.PoolManager(**options))
        self._managers = {}  # (scheme, host) -> the manager its calls go through
        proxies = {}
        for url in urls:
            parts = urlsplit(url)
            proxy = select_proxy(url, get_environ_proxies(url))
            if proxy and proxy not in proxies:
                proxies[proxy] = _tracked(_proxy_manager(proxy, options))
            self._managers[(parts.scheme, parts.hostname)] = proxies[proxy] if proxy else None

    def request(self, method, url, body=None, headers=None, auth=None, timeout=(None, None)):
        """The response once its status and headers are in, its body still to `read()`.
        `body` a dict is sent as JSON; `timeout` is (connect, read) seconds; urllib3's errors
        (`urllib3.exceptions.HTTPError`) are raised as they come."""
        headers = {"User-Agent": USER_AGENT, **(headers or {})}
        if isinstance(body, dict):
            body = json.dumps(body, allow_nan=False).encode()
            headers["Content-Type"] = "application/json"
        if auth:
            headers["Authorization"] = _basic(*auth)
        parts = urlsplit(url)
        manager = self._managers.get((parts.scheme, parts.hostname)) or self._direct
        return manager.urlopen(
            method,
            url,
            body=body,
            headers=headers,
            timeout=urllib3.Timeout(connect=timeout[0], read=timeout[1]),
            retries=False,
            redirect=False,
            preload_content=False,
        )


def _tracked(manager):
    manager.pool_classes_by_scheme = POOL_CLASSES
    return manager


def _proxy_manager(proxy, options):
    if "://" not in proxy:
        proxy = f"http://{proxy}"
    username, password = get_auth_from_url(proxy)
    headers = {"Proxy-Authorization": _basic(username, password)} if username else None
    return urllib3.ProxyManager(proxy, proxy_headers=headers, **options)


def _basic(username, password):
    token = f"{username}:{password}".encode("latin-1")
    return f"Basic {base64.b64encode(token).decode()}"


class ProcessClient:
    """`Client(pool_size, *urls)`, made on first use in each process: gunicorn forks workers
    after the app is built, and a socket must never be shared across the fork."""

    def __init__(self, pool_size, *urls):
        self.pool_size, self.urls = pool_size, urls
        self._client, self._pid = None, None
        self._lock = threading.Lock()

    def get(self):
        if self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():
                    self._client = Client(self.pool_size, *self.urls)
                    self._pid = os.getpid()
        return self._client
