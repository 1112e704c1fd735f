"""Fixtures: stand-in servers, an app built per test on a fresh database of each backend
(SQLite always; PostgreSQL when TEST_DATABASE_URL is set), and `sign()`."""

import base64
import json
import time
import uuid
from pathlib import Path

import pgtest
import pytest
from standins import API_KEY, API_SECRET, MoEngageStandIn, VonageStandIn

from connector import create_app, start
from connector.clients import signatures
from connector.settings import load_settings
from connector.store import StoreUnavailable, open_store

SIGNATURE_SECRET = "sig-secret-" + "0123456789abcdef" * 3 + "0123456789ab0"
AUTH = {"Authorization": f"Custom {API_KEY}:{API_SECRET}"}


# Modules that load the machine (many threads, gunicorn workers, a browser) and assert time
# bounds. pyproject runs the suite on 2 pytest-xdist workers; these run one after another on one
# of them, so two never overlap on 2 cores. Every other module goes whole to one worker, so a
# module-scoped gunicorn or browser starts once and its tests keep their order.
UNDER_LOAD = {
    "test_console_browser",
    "test_moengage_gate",
    "test_outbox",
    "test_pg_outage",
    "test_ratelimit",
    "test_refused_pairs",
    "test_scaleout",
    "test_server",
    "test_status_order",
}


def pytest_xdist_make_scheduler(config, log):
    """xdist's loadscope, its scopes being the module, or "under-load" for UNDER_LOAD's. (Its
    loadgroup would say this with marks, but it does not group under pytest 9.2.)"""
    from xdist.scheduler import LoadScopeScheduling

    class ByModule(LoadScopeScheduling):
        def _split_scope(self, nodeid):
            module = nodeid.split("::", 1)[0]
            return "under-load" if Path(module).stem in UNDER_LOAD else module

    return ByModule(config, log)


@pytest.fixture(scope="session")
def vonage_server():
    server = VonageStandIn()
    yield server
    server.close()


@pytest.fixture(scope="session")
def moengage_server():
    server = MoEngageStandIn()
    yield server
    server.close()


@pytest.fixture
def vonage(vonage_server):
    vonage_server.reset()
    return vonage_server


@pytest.fixture
def moengage(moengage_server):
    moengage_server.reset()
    return moengage_server


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request):
    """Each test that stores anything runs once per backend."""
    if request.param == "postgres" and not pgtest.URL:
        pytest.skip(pgtest.SKIP_REASON)
    return request.param


@pytest.fixture
def database(backend, tmp_path):
    """Settings naming a fresh, empty database. `database_url` is always given, so a
    DATABASE_URL in the developer's environment or `.env` never leaks into a SQLite test."""
    if backend == "sqlite":
        yield {"database_path": str(tmp_path / "connector.db"), "database_url": ""}
        return
    with pgtest.fresh_schema() as url:
        yield {"database_path": str(tmp_path / "unused.db"), "database_url": url}


@pytest.fixture
def store(database):
    """The store on its own, with its schema created as at start."""
    opened = open_store(load_settings(database, environ={}))
    yield opened
    opened.close()


@pytest.fixture
def settings(database, vonage, moengage):
    """Settings for a working connector pointed at the stand-ins."""
    return {
        **database,
        "vonage_api_url": vonage.url,
        "moengage_delivery_url": f"{moengage.url}/sms/dlr/custom/42?region=eu",
        "vonage_signature_secrets": (SIGNATURE_SECRET,),
        "vonage_from": "Acme",
        "vonage_timeout": 2.0,
    }


@pytest.fixture
def make_app(settings):
    apps = []

    def make(**overrides):
        # Opened before the first request, as gunicorn does (connector.start).
        apps.append(start(create_app({**settings, **overrides})))
        return apps[-1]

    yield make
    for app in apps:  # PostgreSQL: give the pool's connections back before the schema goes
        app.extensions["connector"].close()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


def send(client, body, headers=AUTH, path="/"):
    return client.post(path, json=body, headers=headers)


def sign(body, secret=SIGNATURE_SECRET, **claims):
    """An `Authorization` header as Vonage signs a webhook: HS256 JWT with payload_hash."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    claims = {"api_key": API_KEY, "application_id": str(uuid.uuid4()), **claims}
    return {
        "Authorization": signatures.sign(raw, secret, **claims),
        "Content-Type": "application/json",
    }


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture
def unused_port():
    """A loopback port nothing listens on: connections to it are refused."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def webhook(client, path, body, headers=None, record=True):
    """POST a webhook as Vonage does: the JSON bytes that were signed, and the signature.

    A status is of a message this connector sent, as Vonage's are: its send is recorded first
    (`record=False`: the test made the send itself, or means a message it never sent)."""
    if record and path.endswith("/status"):
        record_send(client.application, body)
    raw = json.dumps(body).encode()
    return client.post(path, data=raw, headers=sign(raw) if headers is None else headers)


def record_send(app, body):
    """The send of the status `body`'s message, as sending.py records one Vonage accepted."""
    message_uuid = body.get("message_uuid") if isinstance(body, dict) else None
    if isinstance(message_uuid, str) and message_uuid and len(message_uuid) <= 200:
        store = app.extensions["connector"].store
        try:
            store.record_sent(message_uuid, "447700900000", None, None, time.time())
        except StoreUnavailable:  # the database is gone: the webhook's answer will say so
            pass


def record_sends(database, *bodies):
    """The sends of the status `bodies`' messages, recorded in the database a server under test
    (gunicorn) uses, as it records the sends Vonage accepted."""
    store = open_store(load_settings(database, environ={}))
    try:
        for body in bodies:
            store.record_sent(body["message_uuid"], "447700900000", None, None, time.time())
    finally:
        store.close()


def status_body(status="delivered", message_uuid="aaaaaaaa-bbbb-4ccc-8ddd-0123456789ab", **extra):
    return {
        "message_uuid": message_uuid,
        "to": "447700900000",
        "from": "Acme",
        "timestamp": "2025-02-03T12:14:25Z",
        "status": status,
        "channel": "sms",
        **extra,
    }


def inbound_body(
    text="STOP", message_uuid=None, sender="447700900000", timestamp="2025-02-03T12:14:25Z"
):
    return {
        "channel": "sms",
        "message_uuid": message_uuid or str(uuid.uuid4()),
        "to": "447700900001",
        "from": sender,
        "timestamp": timestamp,
        "text": text,
        "sms": {"num_messages": "1", "keyword": text.split()[0].upper() if text else ""},
    }
