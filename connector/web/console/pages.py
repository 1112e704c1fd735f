"""The console's pages (routes on console.bp): Overview, Messages and a message, Opt-outs,
Pending, Health, Setup. Thin: each reads through console_data / console_ops or the code
`flask trace` uses, and renders a template."""

import csv
import io
import json
import logging

from flask import Response, abort, g, render_template, request

from connector import phone
from connector.diagnostics import trace
from connector.web.console import actions as console_ops
from connector.web.console import bp, sign_in_page
from connector.web.console import charts as console_charts
from connector.web.console import data as console_data
from connector.web.context import services

log = logging.getLogger(__name__)


def _page():
    try:
        return max(0, int(request.args.get("page", "0")))
    except ValueError:
        return 0


def render(template, **values):
    return render_template(f"console/{template}", csrf=g.csrf, when=console_data.when, **values)


@bp.get("")
def overview():
    if g.csrf is None:
        return sign_in_page()
    store = services().store
    period = request.args.get("period", "24h")
    if period not in console_data.PERIODS:
        period = "24h"
    key = request.args.get("key") or None
    figures = console_data.overview(store, period, key)
    return render(
        "overview.html",
        page_name="Overview",
        o=figures,
        key=key,
        pending=console_data.pending_count(store),
        chart=console_charts.bars(figures["bars"], figures["per_bar"]),
        span=console_charts.span(figures["bars"], figures["per_bar"]),
    )


@bp.get("/messages")
def messages():
    query = request.args.get("q", "")
    rows, more = console_data.messages(services().store, query, _page())
    return render(
        "messages.html", page_name="Messages", q=query, rows=rows, more=more, page=_page()
    )


@bp.get("/messages/<path:ident>")
def message(ident, revealed=None):
    traced = trace.find(services().store, ident)
    if traced is None:
        abort(404, "nothing recorded for this trackingId")
    return render(
        "message.html",
        page_name="Messages",
        t=traced,
        ident=ident,
        shown_ident=_masked_if_number(ident),
        revealed=revealed,
    )


def _masked_if_number(ident):
    try:
        return phone.mask(phone.normalise(ident))
    except ValueError:
        return ident


@bp.post("/messages/<path:ident>/reveal")
def reveal(ident):
    """One number in full, the message's own; logged (masked) as revealed."""
    traced = trace.find(services().store, ident, unmask=True)
    numbers = {
        entry.get("to") or entry.get("from")
        for m in (traced or {}).get("messages", [])
        for entry in m["timeline"]
        if entry["stage"] in ("send", "inbound")
    } - {None}
    if len(numbers) != 1:
        abort(404, "no single number to reveal for this message")
    number = numbers.pop()
    log.warning("console: number %s revealed on message %s", phone.mask(number), ident)
    return message(ident, revealed=number)


@bp.get("/optouts")
def optouts():
    ctx = services()
    query = request.args.get("q", "")
    rows, more = console_data.opt_outs(ctx.store, query, _page())
    waiting = ctx.store.pending_syncs()
    for row in rows:
        row["masked"] = phone.mask(row["number"])
        row["state"] = console_ops.sync_state(ctx, row["number"], row["synced"], waiting)
        row["ref"] = console_ops.ref(ctx, row["number"], row["event_ts"])
    return render("optouts.html", page_name="Opt-outs", q=query, rows=rows, more=more, page=_page())


@bp.get("/optouts.csv")
def optouts_csv():
    """Every opted-out number, masked as on the page."""
    ctx = services()
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["number", "opted_out_at", "reply", "moengage_sync"])
    waiting, page = ctx.store.pending_syncs(), 0
    while True:
        rows, more = console_data.opt_outs(ctx.store, "", page, limit=1000)
        for row in rows:
            reply = (row["reply"] or (None, None))[0] or ""
            state = console_ops.sync_state(ctx, row["number"], row["synced"], waiting)
            writer.writerow(
                [phone.mask(row["number"]), console_data.when(row["event_ts"]), reply, state]
            )
        if not more:
            break
        page += 1
    headers = {"Content-Disposition": "attachment; filename=opt-outs.csv"}
    return Response(out.getvalue(), mimetype="text/csv", headers=headers)


@bp.route("/optouts/<ref>/optin", methods=["GET", "POST"])
def optin(ref):
    """GET: the confirmation; POST: opt the number in, as `flask optin` does."""
    ctx = services()
    number = console_ops.resolve(ctx, ref)
    if number is None:
        return render("optin.html", page_name="Opt-outs", masked=None, ref=ref, outcome=None)
    masked, outcome = phone.mask(number), None
    if request.method == "POST":
        outcome = console_ops.opt_in(ctx, number, force=bool(request.form.get("force")))
        log.info("console: opt-in of %s: %s", masked, outcome[1])
    return render("optin.html", page_name="Opt-outs", masked=masked, ref=ref, outcome=outcome)


@bp.route("/pending", methods=["GET", "POST"])
def pending():
    """GET: events waiting for MoEngage, oldest first; POST: push them now."""
    ctx = services()
    pushed = console_ops.push(ctx) if request.method == "POST" else None
    rows = ctx.store.pending_events(limit=console_data.PAGE)
    total = console_data.pending_count(ctx.store)
    return render("pending.html", page_name="Pending", rows=rows, total=total, pushed=pushed)


@bp.get("/health")
def health():
    return render("health.html", page_name="Health", h=console_ops.health(services()))


@bp.get("/setup")
def setup():
    ctx = services()
    base = (ctx.settings.public_url or request.host_url).rstrip("/")
    last = ctx.store.query(
        "SELECT at, detail FROM trail WHERE stage = 'send' ORDER BY at DESC LIMIT 1"
    )
    return render(
        "setup.html",
        page_name="Setup",
        base=base,
        public_url_set=bool(ctx.settings.public_url),
        checks=console_ops.checks(ctx),
        last_send=(last[0][0], json.loads(last[0][1]).get("http")) if last else None,
    )
