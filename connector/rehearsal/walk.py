"""`flask --app app rehearse`: the connector over real HTTP on loopback, with Vonage and MoEngage
stand-ins and a throwaway database (connector/rehearsal/loopback.py), walked through a send, its delivery
reports, a STOP and a START. Each exchange is printed (secrets masked) and each step checks that
it did what the README says, so a newcomer sees it work before opening an account, and the exit
status says whether it did. It needs no settings (the environment and `.env` are not read) and
no network.
"""

import json
import time

import click
import requests

from connector.diagnostics import trace
from connector.rehearsal.loopback import CUSTOMER, TO, Rehearsal


class StepFailed(Exception):
    pass


def check(r, condition, promise):
    """One thing the README promises, checked; a broken promise stops the rehearsal."""
    if not condition:
        raise StepFailed(promise)
    r.out(f"  ✓ {promise}")


# --- the walk-through: each step prints its exchanges and checks what the README says ----------


def step_send(r):
    """MoEngage sends an SMS; the connector answers with Vonage's message_uuid as trackingId."""
    before = len(r.vonage.requests)
    answer = r.send({"to": "+44 7700 900123", "text": "Your code is 4921", "customer_id": CUSTOMER})
    body = answer.json()
    check(r, answer.status_code == 200 and body.get("status") == "sent", "200, status sent")
    r.tracking_id = body.get("trackingId")
    r.out("")
    got = r.received(r.vonage, before, "Vonage")
    sent = got[0] if got else {}
    message = sent.get("json") or {}
    check(
        r,
        len(got) == 1 and message.get("to") == TO and message.get("channel") == "sms",
        "Vonage received one SMS to 447700900123 (number normalised)",
    )
    check(
        r,
        r.tracking_id and r.tracking_id == (sent.get("answer") or {}).get("message_uuid"),
        "trackingId is Vonage's message_uuid",
    )


def step_submitted(r):
    """Vonage reports `submitted`; MoEngage gets `sent` for that trackingId."""
    _status_step(r, "submitted", "sent")


def step_delivered(r):
    """Vonage reports `delivered`; MoEngage gets `delivered`."""
    _status_step(r, "delivered", "delivered")


def _status_step(r, vonage_status, moengage_status):
    before = len(r.moengage.requests)
    answer = r.status(r.tracking_id, vonage_status)
    check(r, answer.status_code == 200, "the signed webhook is verified and acknowledged")
    got = r.received(r.moengage, before, "MoEngage")
    event = (got[0]["json"] or {}) if got else {}
    check(
        r,
        len(got) == 1
        and got[0]["path"] == "/sms/dlr/custom/rehearsal"
        and event.get("trackingId") == r.tracking_id
        and event.get("status") == moengage_status,
        f"MoEngage's tracking URL received {moengage_status!r} for the trackingId",
    )


def step_stop(r):
    """The recipient replies STOP; MoEngage gets the reply and the user is opted out."""
    _reply_step(r, "STOP", "OPTOUT")


def step_refused(r):
    """The next send to that number is refused with 422, and Vonage is not called."""
    before = len(r.vonage.requests)
    answer = r.send({"to": TO, "text": "Last chance: 20% off"})
    check(
        r,
        answer.status_code == 422 and "opted out" in answer.json().get("error", ""),
        "refused 422: the number opted out",
    )
    check(r, len(r.vonage.requests) == before, "Vonage was not called")


def step_start(r):
    """The recipient replies START; MoEngage gets it and the user is opted back in."""
    _reply_step(r, "START", "OPTIN")


def step_accepted(r):
    """A send to that number is accepted again."""
    before = len(r.vonage.requests)
    answer = r.send({"to": TO, "text": "Welcome back"})
    check(r, answer.status_code == 200, "200: sent again")
    got = r.received(r.vonage, before, "Vonage")
    check(r, [rec["status"] for rec in got] == [202], "Vonage received it")


def step_trace(r):
    """`flask --app app trace <trackingId>`: the first message's whole life, from the database."""
    store = r.app.extensions["connector"].store
    wanted = {"send", "vonage", "answer", "status", "forward"}
    deadline = time.monotonic() + 5.0  # a step's row is written as its answer goes out
    while True:
        traced = trace.find(store, r.tracking_id)
        stages = [e["stage"] for m in traced["messages"] for e in m["timeline"]] if traced else []
        if (wanted <= set(stages) and stages.count("forward") >= 2) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    for line in trace.lines(traced) if traced else []:
        r.out(f"  {line}")
    check(
        r,
        wanted <= set(stages) and stages.count("status") >= 2 and stages.count("forward") >= 2,
        "the trace shows the send, Vonage's answer, both statuses and both forwards to MoEngage",
    )


def _reply_step(r, word, subscription):
    before = len(r.moengage.requests)
    answer = r.reply(word)
    check(r, answer.status_code == 200, "the signed webhook is verified and acknowledged")
    got = r.received(r.moengage, before, "MoEngage")
    events = [rec["json"] or {} for rec in got if rec["path"].startswith("/sms/dlr/")]
    synced = [rec["json"] or {} for rec in got if rec["path"].startswith("/v1/customer/")]
    check(
        r,
        len(events) == 1
        and events[0].get("type") == "inbound"
        and events[0].get("subscription") == subscription,
        f"MoEngage's tracking URL received the reply, subscription {subscription}",
    )
    check(
        r,
        len(synced) == 1 and subscription in json.dumps(synced[0]),
        f"the Data API set {CUSTOMER}'s moe_sms_subscription to {subscription}",
    )


# The walk-through, in order. A step is a function of the Rehearsal whose docstring is its
# title; add one here and it runs, numbered, in this place.
STEPS = [
    step_send,
    step_submitted,
    step_delivered,
    step_stop,
    step_refused,
    step_start,
    step_accepted,
    step_trace,
]


def run(make_app, out=click.echo, overrides=None, steps=STEPS):
    """Walk through `steps` with the app `make_app(settings)` builds and starts; True when
    every check held. Nothing is left running."""
    began = time.monotonic()
    with Rehearsal(make_app, out, overrides) as r:
        out(
            f"Rehearsal: the connector on {r.url}, Vonage and MoEngage stand-ins on "
            "loopback, a throwaway SQLite database. Nothing leaves this machine; secrets "
            "are masked.\n"
        )
        for number, step in enumerate(steps, 1):
            out(f"{number}. {step.__doc__.strip()}")
            try:
                step(r)
            except (StepFailed, requests.RequestException, ValueError) as exc:
                out(f"  ✗ FAILED: {exc}")
                out(f"\nRehearsal failed at step {number}; the README's promise above broke.")
                return False
            out("")
    out(f"Rehearsal passed: {len(steps)} steps in {time.monotonic() - began:.1f} s.")
    return True
