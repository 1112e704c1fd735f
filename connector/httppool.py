"""The pooled `requests.Session` each outside client uses, one per worker process."""
import os

import requests
from requests.adapters import HTTPAdapter


def pooled_session(url, pool_size):
    """A Session for calls to `url` from up to `pool_size` threads at once.

    requests re-reads the environment (proxies, no_proxy, CA bundle, ~/.netrc) on every call,
    a fifth of a send's CPU under load (bench/RESULTS.md); it is read here once instead, the
    same way requests reads it. Our calls always carry their own auth or need none, so .netrc
    is left out.
    """
    session = requests.Session()
    session.trust_env = False
    session.proxies = requests.utils.get_environ_proxies(url)
    session.verify = (os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
                      or True)
    adapter = HTTPAdapter(pool_connections=2, pool_maxsize=pool_size, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session
