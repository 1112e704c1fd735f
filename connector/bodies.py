"""Request bodies, for every route: read within a bound, parsed within a depth, strings
that can be stored.

One place, so no route can be reached by a body the others refuse: a bomb of nested
brackets, a lone surrogate or a NUL would otherwise get as far as the database (PostgreSQL
refuses NUL, neither backend can encode a lone surrogate) or Python's recursion limit and
end as a 500, which Vonage retries for 24 hours.
"""

import io
import json
import re

from werkzeug.formparser import FormDataParser

from connector.errors import Failure

MAX_BODY = 1024 * 1024  # contract: a body over 1 MiB is a 413
MAX_DEPTH = 32  # a send or a Vonage webhook nests 3 levels; no legitimate body nears this
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
TOO_LARGE = f"the body is over {MAX_BODY // 1024} KiB"
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def read(request):
    """The raw body, at most MAX_BODY bytes whether or not a Content-Length announced it.

    A chunked body is read here rather than by werkzeug, which stops at the limit and
    passes the first MiB on as if it were the whole body. Anything the server raises while
    reading the client's bytes (a bad chunk size, a body cut short) is the client's fault: 400.
    """
    length = request.content_length
    if length is not None and length > MAX_BODY:
        raise Failure(413, TOO_LARGE)
    if request.environ.get("wsgi.input_terminated"):
        source = request.environ["wsgi.input"]  # the server ends it (gunicorn: at CL or last chunk)
    elif length is not None:
        source = request.stream  # ended at Content-Length by werkzeug
    else:
        return b""  # neither a length nor a server-ended stream: no body (WSGI's rule)
    chunks, total = [], 0
    try:
        while total <= MAX_BODY:
            chunk = source.read(min(64 * 1024, MAX_BODY + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    except Exception as exc:  # noqa: BLE001 - gunicorn's parse errors share no narrower base
        raise Failure(400, f"the body could not be read ({type(exc).__name__})") from None
    if total > MAX_BODY:
        raise Failure(413, TOO_LARGE)
    return b"".join(chunks)


def load_json(raw):
    """`raw` parsed as JSON, or Failure(400) saying why: not JSON, nested too deep, or holding
    a string no store can keep."""
    try:
        value = json.loads(raw)
    except RecursionError:
        raise Failure(400, f"the JSON is nested more than {MAX_DEPTH} levels deep") from None
    except (ValueError, UnicodeDecodeError):
        raise Failure(400, "the body must be JSON") from None
    check(value)
    return value


def load_object(raw, mimetype):
    """A send's body as a dict: form fields, or a JSON object (whatever the Content-Type says,
    since MoEngage's Raw body type may send JSON without it)."""
    if mimetype in FORM_TYPES:
        parser = FormDataParser(max_form_memory_size=MAX_BODY)
        try:
            _, form, _ = parser.parse(io.BytesIO(raw), mimetype, len(raw), {})
        except ValueError:
            raise Failure(400, "the form fields could not be read") from None
        body = form.to_dict()
        check(body)
    else:
        try:
            body = load_json(raw)
        except Failure as failure:
            if failure.reason == "the body must be JSON":
                failure = Failure(400, "the body must be a JSON object (or form fields)")
            raise failure from None
    if not isinstance(body, dict):
        raise Failure(400, "the body must be a JSON object")
    return body


def check(value):
    """Raise Failure(400) if `value` nests deeper than MAX_DEPTH or holds, in a key or a
    string, a NUL or a lone surrogate. Iterative, so depth costs no stack."""
    stack = [(value, 1, "body")]
    while stack:
        item, depth, where = stack.pop()
        if isinstance(item, str):
            _check_string(item, where)
        elif isinstance(item, (dict, list)):
            if depth > MAX_DEPTH:
                raise Failure(400, f"the JSON is nested more than {MAX_DEPTH} levels deep")
            pairs = item.items() if isinstance(item, dict) else enumerate(item)
            for key, child in pairs:
                name = key if isinstance(key, str) else where
                if isinstance(key, str):
                    _check_string(key, f"a key in {where}")
                stack.append((child, depth + 1, name))


def _check_string(text, where):
    found = _UNSTORABLE.search(text)
    if found:
        kind = "a NUL character" if found.group() == "\x00" else "a lone surrogate (not Unicode)"
        raise Failure(400, f"`{where[:40]}` holds {kind}")
