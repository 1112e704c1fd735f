"""The pooled `requests.Session` each outside client uses, one per worker process."""

import os
import threading
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.utils import get_environ_proxies, select_proxy


def pooled_session(pool_size, *urls):
    """A Session for calls to `urls` from up to `pool_size` threads at once.

    requests re-reads the environment (proxies, no_proxy, CA bundle, ~/.netrc) on every call,
    a fifth of a send's CPU under load (bench/RESULTS.md); it is read here once instead: for
    each URL's host, the proxy requests would pick for it. Our calls carry their own auth or
    need none, so .netrc is left out.
    """
    session = requests.Session()
    session.trust_env = False
    for url in urls:
        parts = urlsplit(url)
        proxy = select_proxy(url, get_environ_proxies(url))
        session.proxies[f"{parts.scheme}://{parts.hostname}"] = proxy  # None: no proxy
    session.verify = (
        os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    )
    adapter = HTTPAdapter(pool_connections=2, pool_maxsize=pool_size, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


class ProcessSession:
    """`pooled_session(pool_size, *urls)`, made on first use in each process: gunicorn forks
    workers after the app is built, and a socket must never be shared across the fork."""

    def __init__(self, pool_size, *urls):
        self.pool_size, self.urls = pool_size, urls
        self._session, self._pid = None, None
        self._lock = threading.Lock()

    def get(self):
        if self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():
                    self._session = pooled_session(self.pool_size, *self.urls)
                    self._pid = os.getpid()
        return self._session
