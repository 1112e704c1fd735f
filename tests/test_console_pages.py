"""The console's pages after known traffic (issue 18), on both backends: the Overview's
figures, search and a message's timeline, Reveal, opt-outs and Opt in, Push now, Health, Setup;
numbers masked and no secret anywhere."""

import logging
import re

import pytest
from conftest import AUTH, SIGNATURE_SECRET
from consolekit import NUMBER, OTHER, PASSWORD, csrf_of, done, signed_in, traffic
from standins import API_SECRET, Answer

from connector.diagnostics import trace

WORKSPACE = {"moengage_workspace_id": "WS123", "moengage_data_api_key": "data-key-xyz"}


@pytest.fixture
def console(make_app):
    return make_app(console_password=PASSWORD, **WORKSPACE)


@pytest.fixture
def client(console):
    return signed_in(console)


def text(answer):
    assert answer.status_code == 200, answer.status_code
    return answer.get_data(as_text=True)


def figure(page, name):
    return re.search(rf'<span class="value" id="{name}">([^<]*)</span>', page).group(1)


def no_full_number(page):
    assert NUMBER not in page and OTHER not in page


def test_overview_figures_match_the_traffic(client, vonage):
    traffic(client, vonage)
    for period in ("24h", "7d", "30d"):
        page = text(client.get(f"/console?period={period}"))
        assert figure(page, "sends") == "5" and figure(page, "answered") == "4"
        assert figure(page, "accepted") == "4" and figure(page, "delivered") == "2"
        assert figure(page, "failed") == "1" and figure(page, "rate") == "50.0%"
        assert figure(page, "cost") == "0.0666 EUR" and figure(page, "parts") == "4"
        assert figure(page, "opt-outs") == "1" and figure(page, "opt-ins") == "0"
        assert figure(page, "pending") == "0"
        assert "<svg" in page and "1250" in page and "Unroutable" in page
        assert "+44 (United Kingdom)" in page
        no_full_number(page)


def test_overview_filters_by_api_key_when_more_than_one_is_in_use(client):
    traffic(client)
    assert 'id="key"' not in text(client.get("/console"))
    other = {"Authorization": "Custom efgh5678:other-secret"}
    done(client.post("/", json={"to": OTHER, "text": "hi"}, headers=other))
    page = text(client.get("/console"))
    assert '<option value="efgh5678"' in page and figure(page, "sends") == "5"
    assert figure(text(client.get("/console?key=efgh5678")), "sends") == "1"
    assert figure(text(client.get("/console?key=abcd1234")), "delivered") == "2"


def test_search_finds_by_tracking_id_ref_number_and_campaign(client, vonage):
    uuids = traffic(client, vonage)
    for query, expected in [
        (uuids[1], [uuids[1]]),
        ("ref-3", [uuids[2]]),
        ("+44 (7700) 900-000", uuids[2::-1]),
        ("camp-7", uuids[::-1]),
    ]:
        page = text(client.get("/console/messages", query_string={"q": query}))
        found = re.findall(r'href="/console/messages/([0-9a-f-]{36})"', page)
        assert found == expected, query
        no_full_number(page)
    everything = text(client.get("/console/messages"))
    assert "(not accepted)" in everything and "rejected" in everything
    assert "Nothing recorded" in text(client.get("/console/messages?q=nope"))


def test_message_page_shows_the_trace_timeline_and_reveal_is_logged(client, console, caplog):
    uuid = traffic(client)[0]
    page = text(client.get(f"/console/messages/{uuid}"))
    traced = trace.find(console.extensions["connector"].store, uuid)
    stages = re.findall(r'<span class="stage">(\w+)</span>', page)
    assert stages == [e["stage"] for e in traced["messages"][0]["timeline"]]
    assert stages[:3] == ["send", "vonage", "answer"] and "forward" in stages
    no_full_number(page)
    caplog.set_level(logging.INFO, "connector")
    assert client.post(f"/console/messages/{uuid}/reveal").status_code == 403
    revealed = text(client.post(f"/console/messages/{uuid}/reveal", data={"csrf": csrf_of(client)}))
    assert f'<strong id="revealed">{NUMBER}</strong>' in revealed
    assert revealed.count(NUMBER) == 1  # one number, the timeline stays masked
    assert "********0000 revealed" in caplog.text and NUMBER not in caplog.text


def test_opt_outs_list_export_and_opt_in(client, console, moengage):
    traffic(client)
    page = text(client.get("/console/optouts"))
    assert "********0000" in page and "STOP" in page
    no_full_number(page)
    csv = client.get("/console/optouts.csv")
    assert csv.status_code == 200 and csv.mimetype == "text/csv"
    assert "********0000" in csv.get_data(as_text=True) and NUMBER not in csv.get_data(as_text=True)
    link = re.search(r'href="(/console/optouts/[^"]+/optin)"', page).group(1)
    confirm = text(client.get(link))
    assert "Confirm opt-in" in confirm
    no_full_number(confirm)
    store = console.extensions["connector"].store
    assert store.is_opted_out(NUMBER)  # the GET changed nothing
    answer = client.post(link, data={"csrf": csrf_of(client)})
    done_page = text(answer)
    answer.close()  # as a server does once the answer is out: the trail row is written then
    assert "opted in" in done_page and not store.is_opted_out(NUMBER)
    assert "No number has opted out" in text(client.get("/console/optouts"))
    by_number = text(client.get(f"/console/messages/{NUMBER}"))
    assert "OPTIN" in by_number and "Reveal" not in by_number
    history = trace.find(store, NUMBER)["subscription"]["history"]  # as `flask optin` leaves it
    assert [h["state"] for h in history] == ["OPTOUT", "OPTIN"]
    assert history[1]["decided_by"] == "by hand"
    no_full_number(by_number)


def test_push_now_reports_what_moengage_accepted(client, console, moengage):
    moengage.script(*[Answer(503, {})] * 100)
    traffic(client)
    moengage.reset()
    page = text(client.get("/console/pending"))
    total = int(re.search(r'id="pending-total">(\d+)', page).group(1))
    assert total > 0 and "503" in page
    moengage.script(*[Answer(503, {})] * 3)
    refused = text(client.post("/console/pending", data={"csrf": csrf_of(client)}))
    assert "3 refused by MoEngage" in refused and "not tried" in refused
    pushed = text(client.post("/console/pending", data={"csrf": csrf_of(client)}))
    assert f"Pushed: {total} delivered to MoEngage" in pushed
    assert 'id="pending-total">0<' in pushed


def test_health_and_setup_show_settings_never_secrets(client, console):
    traffic(client)
    health = text(client.get("/console/health"))
    setup = text(client.get("/console/setup"))
    for page in (health, setup):
        for secret in (SIGNATURE_SECRET, API_SECRET, PASSWORD, "data-key-xyz"):
            assert secret not in page
    assert "VONAGE_SIGNATURE_SECRET" in health and "set (hidden)" in health
    assert "sqlite" in health or "postgresql" in health
    assert "/sms/dlr/custom/42" in health  # URLs are shown
    assert "Custom &lt;Vonage API key&gt;:&lt;Vonage API secret&gt;" in setup
    assert "http://localhost/webhooks/status" in setup and "SHA-256 HMAC" in setup
    assert setup.count("✔ Seen") == 4  # all but the Data API sync (no customer_id sent)
    assert "Not seen yet: the Data API accepted" in setup


def test_setup_says_why_a_step_was_never_seen(make_app):
    app = make_app(console_password=PASSWORD)
    client = signed_in(app)
    done(client.post("/", json={"to": NUMBER, "text": "hi"}, headers={"Authorization": "Basic x"}))
    app.extensions["connector"].evidence.flush(app.extensions["connector"].store)
    setup = text(client.get("/console/setup"))
    assert "Not seen yet: a send received" in setup
    assert "Authorization header" in setup and "scheme `Basic`" in setup
    assert "Data API is not configured" in setup
    assert AUTH["Authorization"] not in setup
