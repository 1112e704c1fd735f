"""Issue 8, items 8 to 11: hostile bodies get a 4xx with a reason, never a 500, on every route
and both backends; a signed webhook refused so is logged, since Vonage drops it."""

import io
import json
import logging

import pytest
from conftest import AUTH, inbound_body, sign, status_body

SEND = {"to": "447700900000", "text": "hi"}
ROUTES = ["/", "/webhooks/message-dispatcher", "/webhooks/status", "/webhooks/inbound"]


def post(client, path, raw, headers=None):
    """POST raw bytes as the route's caller would: a send with credentials, a webhook signed."""
    if headers is None:
        headers = sign(raw) if path.startswith("/webhooks/s") or "inbound" in path else AUTH
    return client.post(path, data=raw, headers={"Content-Type": "application/json", **headers})


def assert_refused(response, status=400, words=""):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.json["status"] == "failed"
    assert words in response.json["error"]


@pytest.mark.parametrize("path", ROUTES)
def test_json_nested_100000_deep_is_400(client, path):
    raw = b"[" * 100_000 + b"]" * 100_000
    assert_refused(post(client, path, raw), 400, "nested")


@pytest.mark.parametrize("path", ["/", "/webhooks/status"])
def test_json_nested_100000_deep_without_credentials_is_not_a_500(client, path):
    raw = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
    response = post(client, path, raw, headers={"Authorization": "Custom a:b"})
    assert response.status_code in (400, 401)


def test_depth_is_limited_below_the_recursion_limit(client, vonage):
    deep = {**SEND, "extra": json.loads("[" * 40 + "]" * 40)}
    assert_refused(post(client, "/", json.dumps(deep).encode()), 400, "nested more than 32")
    shallow = {**SEND, "extra": json.loads("[" * 20 + "]" * 20)}
    assert post(client, "/", json.dumps(shallow).encode()).status_code == 200
    assert len(vonage.sent()) == 1


@pytest.mark.parametrize("field", ["campaign_id", "customer_id", "client_ref", "from"])
@pytest.mark.parametrize("bad", ["\\ud800", "\\udfff x", "a\\u0000b"])
def test_unstorable_string_in_a_send_is_400(client, vonage, field, bad):
    raw = json.dumps({**SEND, field: "PLACEHOLDER"}).replace('"PLACEHOLDER"', f'"{bad}"').encode()
    assert_refused(post(client, "/", raw), 400, f"`{field}` holds")
    assert vonage.requests == []


def test_cesu8_surrogate_bytes_in_a_send_are_400(client, vonage):
    raw = b'{"to": "447700900000", "text": "hi", "campaign_id": "\xed\xa0\x80"}'
    assert_refused(post(client, "/", raw), 400, "lone surrogate")


def test_nul_in_a_form_field_is_400(client, vonage):
    response = client.post(
        "/", data={"to": "447700900000", "text": "hi", "customer_id": "u\x001"}, headers=AUTH
    )
    assert_refused(response, 400, "`customer_id` holds a NUL")
    assert vonage.requests == []


@pytest.mark.parametrize(
    "path, field",
    [
        ("/webhooks/status", "message_uuid"),
        ("/webhooks/inbound", "message_uuid"),
        ("/webhooks/inbound", "from"),
    ],
)
@pytest.mark.parametrize("bad", ["\\ud800", "x\\u0000"])
def test_unstorable_string_in_a_signed_webhook_is_400_and_logged(
    client, moengage, caplog, path, field, bad
):
    body = status_body() if "status" in path else inbound_body("STOP")
    body[field] = "PLACEHOLDER"
    raw = json.dumps(body).replace('"PLACEHOLDER"', f'"{bad}"').encode()
    with caplog.at_level(logging.WARNING, logger="connector"):
        response = post(client, path, raw)
    assert_refused(response, 400, f"`{field}` holds")
    assert moengage.requests == []
    assert any(
        "refused (400)" in r.getMessage() and field in r.getMessage() for r in caplog.records
    )


def test_overlong_message_uuid_is_400(client, moengage):
    raw = json.dumps(status_body(message_uuid="u" * 5000)).encode()
    assert_refused(post(client, "/webhooks/status", raw), 400, "longer than 200")


@pytest.mark.parametrize("to", [-447700900003, "-447700900003", 0])
def test_negative_to_is_400(client, vonage, to):
    raw = json.dumps({"to": to, "text": "hi"}).encode()
    assert_refused(post(client, "/", raw), 400, "`to`")
    assert vonage.requests == []


def chunked(client, path, stream, headers):
    """A body without Content-Length, as a chunked one reaches the app (gunicorn decodes it)."""
    return client.post(
        path,
        headers=headers,
        environ_overrides={"wsgi.input": stream, "wsgi.input_terminated": True},
    )


class Broken(io.RawIOBase):
    """A body whose reading fails as gunicorn's does on an invalid chunk size."""

    def readinto(self, buffer):
        raise ValueError("Invalid chunk size: 'zz'")


def one_mib_of_json(body):
    """`body` as JSON padded with spaces to exactly 1 MiB: valid on its own."""
    raw = json.dumps(body).encode()
    return raw + b" " * (1024 * 1024 - len(raw))


@pytest.mark.parametrize("path", ["/", "/webhooks/inbound"])
def test_chunked_body_over_1_mib_is_413_not_cut(client, vonage, path):
    raw = one_mib_of_json(SEND) + b" " * (1024 * 1024)  # 2 MiB; its first MiB is valid JSON
    headers = {**AUTH, "Content-Type": "application/json"}
    assert_refused(chunked(client, path, io.BytesIO(raw), headers), 413, "over 1024 KiB")
    assert vonage.requests == []


def test_chunked_body_of_exactly_1_mib_is_read_whole(client, vonage):
    raw = one_mib_of_json(SEND)
    response = chunked(client, "/", io.BytesIO(raw), {**AUTH, "Content-Type": "application/json"})
    assert response.status_code == 200, response.json


@pytest.mark.parametrize("path", ["/", "/webhooks/status"])
def test_unreadable_chunked_body_is_400(client, path):
    response = chunked(client, path, Broken(), {**AUTH, "Content-Type": "application/json"})
    assert_refused(response, 400, "could not be read")
