"""When the worker's event loop has a whole request (connector/framing.py): byte by byte, a
request is never handed to a thread early, and never held once whole."""

import pytest

from connector.framing import CONTINUE, MORE, READY, request_end

HEAD = b"POST / HTTP/1.1\r\nHost: x\r\n"
CASES = [
    (b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", READY),
    (HEAD + b"Content-Length: 2\r\n\r\n{}", READY),
    (HEAD + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", READY),
    (HEAD + b"Transfer-Encoding: chunked\r\n\r\n2;x=y\r\n{}\r\n0\r\nT: 1\r\n\r\n", READY),
]


@pytest.mark.parametrize("raw, verdict", CASES)
def test_whole_only_at_the_last_byte(raw, verdict):
    for end in range(len(raw)):
        assert request_end(bytearray(raw[:end])) == MORE, raw[:end]
    assert request_end(bytearray(raw)) == verdict


@pytest.mark.parametrize(
    "raw",
    [
        HEAD + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n",  # conflicting: gunicorn says 400
        HEAD + b"Content-Length: -1\r\n\r\n",
        HEAD + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",  # invalid chunk size
        HEAD + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}XX",  # chunk without its CRLF
        HEAD + b"Transfer-Encoding: gzip\r\n\r\n",
        HEAD + b"Content-Length: 2000000\r\n\r\n",  # the app answers 413 from the header
    ],
)
def test_what_gunicorn_refuses_goes_to_it_at_once(raw):
    assert request_end(bytearray(raw)) == READY


def test_a_chunked_body_over_the_limit_is_refused_in_the_loop():
    raw = HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + b"400\r\n" + b"x" * 1024 + b"\r\n"
    assert request_end(bytearray(raw), max_body=1000)[0] == 413


def test_a_head_over_64_kib_is_431():
    assert request_end(bytearray(HEAD + b"X: " + b"a" * 70000))[0] == 431


def test_expect_100_continue_is_asked_for_before_the_body():
    raw = HEAD + b"Content-Length: 2\r\nExpect: 100-continue\r\n\r\n"
    assert request_end(bytearray(raw)) == CONTINUE
    assert request_end(bytearray(raw + b"{}")) == READY
