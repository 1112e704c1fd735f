"""Helpers for the console's tests: its password, signing in through the form as a browser
does, and a day of known traffic through the stand-ins."""

import re

from conftest import AUTH, inbound_body, status_body, webhook
from standins import Answer

PASSWORD = "correct horse battery staple"
NUMBER = "447700900000"
OTHER = "33612345678"
USAGE = {"usage": {"currency": "EUR", "price": "0.0333"}, "sms": {"count_total": "2"}}
COST_ERROR = {"error": {"title": "1250", "detail": "Unroutable"}}


def form_token(page):
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


def sign_in(client, password=PASSWORD, headers=None, **request):
    """The sign-in form, filled in; returns the answer to its POST (`request`: more arguments
    of both requests, e.g. base_url)."""
    token = form_token(client.get("/console", **request).get_data(as_text=True))
    return client.post(
        "/console/sign-in",
        data={"csrf": token, "password": password},
        headers=headers or {},
        **request,
    )


def signed_in(app):
    client = app.test_client()
    assert sign_in(client).status_code == 303
    return client


def csrf_of(client, path="/console"):
    return form_token(client.get(path).get_data(as_text=True))


def done(response):
    response.get_data()
    response.close()
    return response


def traffic(client, vonage=None):
    """Known traffic: 3 sends to NUMBER (one delivered, its status redelivered; one failed
    with 1250; one with no status yet), one to OTHER delivered, a STOP from NUMBER; with the
    Vonage stand-in, first a send Vonage refuses (422)."""
    if vonage is not None:
        vonage.script(Answer(422, {"title": "Invalid sender", "detail": "bad from"}))
        done(
            client.post("/", json={"to": NUMBER, "text": "hi", "client_ref": "ref-0"}, headers=AUTH)
        )
    uuids = []
    for ref, to in (("ref-1", NUMBER), ("ref-2", NUMBER), ("ref-3", NUMBER), ("ref-4", OTHER)):
        body = {"to": to, "text": "hi", "client_ref": ref, "campaign_id": "camp-7"}
        uuids.append(done(client.post("/", json=body, headers=AUTH)).get_json()["trackingId"])
    done(client.post("/", json={"to": NUMBER, "text": "hi"}, headers={"Authorization": "x"}))
    status = "/webhooks/status"
    done(webhook(client, status, status_body("submitted", uuids[0], **USAGE)))
    done(webhook(client, status, status_body("delivered", uuids[0], **USAGE)))
    done(webhook(client, status, status_body("delivered", uuids[0], **USAGE)))  # redelivered
    done(webhook(client, status, status_body("rejected", uuids[1], **COST_ERROR)))
    done(webhook(client, status, status_body("delivered", uuids[3], to=OTHER, **USAGE)))
    done(webhook(client, "/webhooks/inbound", inbound_body("STOP", sender=NUMBER)))
    return uuids
