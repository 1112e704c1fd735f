"""Signed webhooks: every forgery is rejected and nothing is forwarded or stored."""

import base64
import hashlib
import json
import time

import jwt
import pytest
from conftest import SIGNATURE_SECRET, b64, record_send, sign, status_body, webhook
from standins import fixture

from connector.clients import signatures

BODY = status_body()
RAW = json.dumps(BODY).encode()


def claims(**extra):
    base = {
        "iat": int(time.time()),
        "jti": "j",
        "iss": "Vonage",
        "payload_hash": hashlib.sha256(RAW).hexdigest(),
        "api_key": "abcd1234",
    }
    base.update(extra)
    return base


def bearer(token):
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


def unsigned_token(alg):
    header = b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    return f"{header}.{b64(json.dumps(claims()).encode())}."


FORGERIES = {
    "wrong secret": bearer(
        jwt.encode(claims(), "not-the-secret-0123456789abcdef01", algorithm="HS256")
    ),
    "alg none": bearer(unsigned_token("none")),
    "alg None with signature stripped": bearer(unsigned_token("None")),
    "HS512 with the right secret": bearer(
        jwt.encode(claims(), SIGNATURE_SECRET, algorithm="HS512")
    ),
    "RS256 header": bearer(unsigned_token("RS256") + "c2lnbmF0dXJl"),
    "token for another body": bearer(
        jwt.encode(
            claims(payload_hash=hashlib.sha256(b'{"other": 1}').hexdigest()),
            SIGNATURE_SECRET,
            algorithm="HS256",
        )
    ),
    "no payload_hash": bearer(
        jwt.encode(
            {k: v for k, v in claims().items() if k != "payload_hash"},
            SIGNATURE_SECRET,
            algorithm="HS256",
        )
    ),
    "no iat": bearer(
        jwt.encode(
            {k: v for k, v in claims().items() if k != "iat"}, SIGNATURE_SECRET, algorithm="HS256"
        )
    ),
    "garbage token": bearer("not.a.jwt"),
    "empty bearer": {"Authorization": "Bearer ", "Content-Type": "application/json"},
    "basic scheme": {"Authorization": "Basic " + base64.b64encode(b"a:b").decode()},
    "expired token": bearer(
        jwt.encode(claims(exp=int(time.time()) - 10), SIGNATURE_SECRET, algorithm="HS256")
    ),
}


@pytest.mark.parametrize("name", FORGERIES)
@pytest.mark.parametrize("path", ["/webhooks/status", "/webhooks/inbound"])
def test_forgery_is_401_and_nothing_forwarded(app, client, moengage, name, path):
    response = client.post(path, data=RAW, headers=FORGERIES[name])
    assert response.status_code == 401, name
    assert moengage.requests == []
    assert app.extensions["connector"].store.pending_events() == []


def test_tampered_body_is_401(client, moengage):
    headers = sign(RAW)
    tampered = RAW.replace(b"delivered", b"submitted")
    assert client.post("/webhooks/status", data=tampered, headers=headers).status_code == 401
    assert moengage.requests == []


def test_reserialised_body_is_401(client, moengage):
    """The hash is of the raw bytes: the same JSON with other spacing is another body."""
    headers = sign(RAW)
    reformatted = json.dumps(BODY, separators=(",", ":")).encode()
    assert client.post("/webhooks/status", data=reformatted, headers=headers).status_code == 401


@pytest.mark.parametrize("path", ["/webhooks/status", "/webhooks/inbound"])
def test_no_authorization_is_503_so_vonage_retries_signed(client, moengage, path):
    response = client.post(path, data=RAW, headers={"Content-Type": "application/json"})
    assert response.status_code == 503
    assert moengage.requests == []


def test_valid_signature_is_accepted(client, moengage):
    assert webhook(client, "/webhooks/status", BODY).status_code == 200
    assert len(moengage.requests) == 1


def test_iat_just_inside_5_minutes_ahead_is_accepted(client, moengage):
    record_send(client.application, BODY)
    response = client.post(
        "/webhooks/status", data=RAW, headers=sign(RAW, iat=int(time.time()) + 290)
    )
    assert response.status_code == 200


def test_old_iat_is_accepted_because_vonage_retries_for_24_hours(client, moengage):
    record_send(client.application, BODY)
    response = client.post(
        "/webhooks/status", data=RAW, headers=sign(RAW, iat=int(time.time()) - 23 * 3600)
    )
    assert response.status_code == 200


def test_any_configured_secret_verifies_during_rotation(make_app, moengage):
    client = make_app(
        vonage_signature_secrets=("new-secret-0123456789abcdef0123456789", SIGNATURE_SECRET)
    ).test_client()
    assert webhook(client, "/webhooks/status", BODY).status_code == 200


def test_rejection_reason_is_logged_but_not_the_token(client, caplog):
    headers = FORGERIES["wrong secret"]
    client.post("/webhooks/status", data=RAW, headers=headers)
    assert "signature matches no configured signature secret" in caplog.text
    assert headers["Authorization"].split()[1] not in caplog.text


def test_sdk_verify_vector():
    """Vonage's python SDK test vector: HS256 checks pass/fail as the SDK expects, and the
    connector still refuses it, since it carries no payload_hash."""
    vector = fixture("python-sdk/jwt__verify_signature_vector.json")
    token = vector["token"]
    jwt.decode(
        token, vector["valid_signature_secret"], algorithms=["HS256"], options={"verify_aud": False}
    )
    with pytest.raises(signatures.Rejected, match="no configured signature secret"):
        signatures.verify(f"Bearer {token}", b"{}", [vector["invalid_signature_secret"] * 8])
    with pytest.raises(signatures.Rejected, match="payload_hash"):
        signatures.verify(f"Bearer {token}", b"{}", [vector["valid_signature_secret"]])
    with pytest.raises(signatures.Rejected, match="not a JWT"):
        signatures.verify("Bearer asdf", b"{}", [vector["valid_signature_secret"]])
