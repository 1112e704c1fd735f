"""HTTP/1.1 framing, enough to know when a request's bytes have all arrived (RFC 9112).

The worker (connector/worker.py) reads each request in its event loop and gives it to a thread
only once it is whole, so a client that trickles its bytes holds no thread. It does not parse
requests for the app: gunicorn's parser does that, from the bytes read here. Anything odd
(conflicting lengths, a bad chunk) is declared READY, so that parser refuses it with its reason.
"""

import json
import re
import time
from collections import namedtuple
from email.utils import formatdate
from http import HTTPStatus

from .payload import MAX_BODY, TOO_LARGE

MORE, READY, CONTINUE = "more", "ready", "continue"
MAX_HEAD = 64 * 1024  # gunicorn's own limits (100 fields of 8190 bytes) refuse far less
MAX_CHUNK_LINE = 1024
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_HEX = re.compile(rb"[0-9A-Fa-f]+")


def request_end(buf, max_body=MAX_BODY):
    """What `buf` (the bytes of a connection so far) holds.

    MORE: wait for more bytes. CONTINUE: the head is whole and asks for `100 Continue` before
    its body. READY: a whole request, or one gunicorn's parser must refuse. A (status, reason)
    tuple: refuse it here (a head or a chunked body over the limit, which would otherwise be
    read in a thread).
    """
    found = _HEAD_END.search(buf, 0, MAX_HEAD + 4)
    if found is None:
        return (
            (431, f"the request head is over {MAX_HEAD // 1024} KiB")
            if len(buf) > MAX_HEAD
            else MORE
        )
    fields = _fields(bytes(buf[: found.start()]))
    start = found.end()
    codings = b",".join(fields.get(b"transfer-encoding", []))
    if codings:
        last = codings.split(b",")[-1].strip().lower()
        verdict = _chunked_end(buf, start, max_body) if last == b"chunked" else READY
        missing = verdict is MORE
    elif b"content-length" in fields:
        lengths = {v.strip() for v in fields[b"content-length"]}
        if len(lengths) != 1 or not lengths.copy().pop().isdigit():
            return READY
        length = int(lengths.pop())
        if length > max_body:
            return READY  # the app answers 413 from the header, without reading the body
        missing = len(buf) - start < length
        verdict = MORE if missing else READY
    else:
        return READY
    if missing and any(v.strip().lower() == b"100-continue" for v in fields.get(b"expect", [])):
        return CONTINUE
    return verdict


Simple = namedtuple("Simple", "method path fields body")


def simple_request(buf):
    """A whole request in `buf` as a `Simple` (fields: lower-case name -> its values), when it
    is the plainest kind: HTTP/1.1, a Content-Length body or none, nothing after it, no
    transfer or content coding, no `Expect`, no `Connection: close`. Anything else is None,
    left to gunicorn's parser: only such a request is answered in the event loop
    (connector/early.py), and never one whose framing a proxy might read otherwise.
    """
    found = _HEAD_END.search(buf, 0, MAX_HEAD + 4)
    if found is None:
        return None
    head = bytes(buf[: found.start()])
    line, _, _ = head.partition(b"\n")
    parts = line.rstrip(b"\r").split(b" ")
    if len(parts) != 3 or parts[2] != b"HTTP/1.1":
        return None
    fields = _fields(head)
    if any(name in fields for name in (b"transfer-encoding", b"content-encoding", b"expect")):
        return None
    if any(b"close" in v.lower() for v in fields.get(b"connection", [])):
        return None
    lengths = fields.get(b"content-length", [b"0"])
    if len(lengths) != 1 or not lengths[0].isdigit():
        return None
    body = bytes(buf[found.end() :])
    if len(body) != int(lengths[0]):
        return None  # a pipelined request behind it, or a body not all in
    return Simple(parts[0].decode("latin-1"), parts[1].decode("latin-1"), fields, body)


def answer(status, body, headers=()):
    """A whole HTTP/1.1 answer with a JSON body that keeps the connection open."""
    data = json.dumps(body).encode()
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers)
    head = (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
        f"Date: {_date()}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n{extra}\r\n"
    )
    return head.encode("latin-1") + data


_dated = [0, ""]  # the second and its Date header value: made once a second, not per answer


def _date():
    now = int(time.time())
    if _dated[0] != now:
        _dated[:] = [now, formatdate(now, usegmt=True)]
    return _dated[1]


def _fields(head):
    fields = {}
    for line in head.split(b"\n")[1:]:
        name, colon, value = line.partition(b":")
        if colon:
            fields.setdefault(name.strip().lower(), []).append(value.strip())
    return fields


def _chunked_end(buf, pos, max_body):
    """READY once the last chunk and the trailer section are in; over `max_body` decoded
    bytes, a 413 refused here."""
    decoded = 0
    while True:
        eol = buf.find(b"\r\n", pos, pos + MAX_CHUNK_LINE)
        if eol < 0:
            return MORE if len(buf) - pos <= MAX_CHUNK_LINE else READY
        size_text = bytes(buf[pos:eol]).split(b";")[0].strip()
        if not _HEX.fullmatch(size_text):
            return READY  # gunicorn: InvalidChunkSize
        size = int(size_text, 16)
        if size == 0:
            rest = buf[eol + 2 : eol + 4]
            if rest == b"\r\n":
                return READY
            if _HEAD_END.search(buf, eol):
                return READY
            return MORE if len(buf) - eol <= MAX_HEAD else READY
        data_start = eol + 2
        decoded += min(size, len(buf) - data_start)
        if decoded > max_body:
            return (413, TOO_LARGE)
        pos = data_start + size + 2
        if len(buf) < pos:
            return MORE
        if buf[pos - 2 : pos] != b"\r\n":
            return READY  # gunicorn: ChunkMissingTerminator


def json_response(status, reason):
    """A whole HTTP/1.1 answer `{"status": "failed", "error": reason}` that closes the
    connection: the connector's own error shape, for answers the app never sees."""
    body = json.dumps({"status": "failed", "error": reason}).encode()
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    head = (
        f"HTTP/1.1 {status} {phrase}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body
