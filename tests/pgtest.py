"""A throwaway PostgreSQL schema per test, on the server TEST_DATABASE_URL names.

Each test gets a schema of its own (reached through `search_path` in the URL it is given), so
the connector creates its tables there at start exactly as on a fresh database, and no test
sees another's rows. Without TEST_DATABASE_URL the PostgreSQL half of the suite is skipped.
"""

import os
import uuid
from contextlib import contextmanager
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from psycopg import sql

URL = os.environ.get("TEST_DATABASE_URL", "")
SKIP_REASON = (
    "PostgreSQL tests need TEST_DATABASE_URL (a postgresql:// URL of a database they "
    "may create schemas in); `bash .ci/run` starts a throwaway server and sets it"
)


def with_search_path(url, schema):
    """`url` with `options=-csearch_path=<schema>` added to its query string."""
    parts = urlsplit(url)
    option = "options=" + quote(f"-csearch_path={schema}", safe="")
    query = f"{parts.query}&{option}" if parts.query else option
    return urlunsplit(parts._replace(query=query))


@contextmanager
def fresh_schema(url=URL):
    """Yield a DATABASE_URL whose tables live in a new, empty schema; drop it afterwards."""
    name = f"test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    try:
        yield with_search_path(url, name)
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SET lock_timeout = '10s'")
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))
