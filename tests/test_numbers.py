"""Issue 19 part 1 through the routes: DEFAULT_COUNTRY decides where a national number goes,
and its national and international forms are one person for opt-outs, the identical-send
window and trace (on both backends)."""

import json

from conftest import AUTH, inbound_body, send, webhook

NATIONAL, INTERNATIONAL, E164 = "07700 900123", "+44 7700 900123", "447700900123"


def done(response):
    response.get_data()
    response.close()
    return response


def test_a_national_number_goes_to_default_country(make_app, vonage):
    client = make_app(default_country="US").test_client()
    assert send(client, {"to": "2025550143", "text": "hi"}).status_code == 200
    assert send(client, {"to": "447700900123", "text": "hi"}).status_code == 200
    assert [m["to"] for m in vonage.sent()] == ["12025550143", "447700900123"]


def test_a_national_number_without_default_country_is_400_naming_it(make_app, vonage):
    client = make_app().test_client()
    for to in ("7700900123", NATIONAL):  # 7700900123 was sent to +7, Kazakhstan
        response = send(client, {"to": to, "text": "hi"})
        assert response.status_code == 400
        assert "DEFAULT_COUNTRY" in response.json["error"]
    assert vonage.requests == []


def test_not_a_phone_number_is_400_and_vonage_not_called(make_app, vonage):
    client = make_app(default_country="GB").test_client()
    for to in ("123", "+44 1234", "07700 90012x"):
        response = send(client, {"to": to, "text": "hi"})
        assert response.status_code == 400 and "not a phone number" in response.json["error"]
    assert vonage.requests == []


def test_a_stop_from_the_international_form_holds_for_the_national_one(make_app, vonage, moengage):
    client = make_app(default_country="GB").test_client()
    assert (
        webhook(client, "/webhooks/inbound", inbound_body("STOP", sender=E164)).status_code == 200
    )
    response = send(client, {"to": NATIONAL, "text": "Sale!"})
    assert response.status_code == 422 and "opted out" in response.json["error"]
    assert vonage.sends() == []


def test_national_and_international_forms_are_one_identical_send(make_app, vonage):
    client = make_app(default_country="GB").test_client()
    first = send(client, {"to": NATIONAL, "text": "Your code is 1234"})
    again = send(client, {"to": INTERNATIONAL, "text": "Your code is 1234"})
    assert first.status_code == again.status_code == 200
    assert again.json["trackingId"] == first.json["trackingId"]
    assert len(vonage.sent()) == 1


def test_trace_finds_a_number_by_its_national_form_and_names_its_country(make_app, vonage):
    app = make_app(default_country="GB")
    done(send(app.test_client(), {"to": INTERNATIONAL, "text": "hi"}))
    result = app.test_cli_runner().invoke(args=["trace", NATIONAL, "--json"])
    assert result.exit_code == 0, result.output
    [message] = json.loads(result.output)["messages"]
    assert message["timeline"][0]["country"] == "GB (United Kingdom)"
    report = app.test_cli_runner().invoke(args=["report", "--json"])
    assert json.loads(report.output)["by_country"] == {"GB (United Kingdom)": 1}


def test_an_opt_out_stored_before_this_change_holds_for_the_national_form(make_app, vonage):
    """A database written before: opt-outs were stored by the number Vonage gave (E.164
    digits), the key the national form is now read to, so no stored key changes."""
    app = make_app(default_country="GB")
    store = app.extensions["connector"].store
    with store.transaction() as tx:  # as the first release's inbound route stored a STOP
        tx.execute(
            "INSERT INTO subscriptions (number, state, event_ts, updated_at, synced)"
            " VALUES (?, 'OPTOUT', 1, 1, 0)",
            (E164,),
        )
    assert send(app.test_client(), {"to": NATIONAL, "text": "hi"}).status_code == 422
    result = app.test_cli_runner().invoke(args=["optin", NATIONAL])
    assert result.exit_code == 0 and "opted in" in result.output
    assert send(app.test_client(), {"to": NATIONAL, "text": "hi"}, AUTH).status_code == 200


def warnings(app, code):
    response = done(app.test_client().get("/health"))
    assert response.status_code == 200
    return [w for w in response.get_json()["warnings"] if w["code"] == code]


def test_a_country_under_1_percent_of_sends_is_named_while_default_country_is_empty(
    make_app, vonage
):
    """100 sends to GB, then one `2025550143` (a US number without its 1): it went to +20."""
    app = make_app(evidence_flush_seconds=0)
    client = app.test_client()
    for n in range(100):
        assert done(send(client, {"to": f"4477009001{n:02d}", "text": "hi"})).status_code == 200
    assert warnings(app, "rare-country") == []  # one country only
    assert done(send(client, {"to": "2025550143", "text": "hi"})).status_code == 200
    [warning] = warnings(app, "rare-country")
    assert warning["message"].startswith(
        "1 of the last day's 101 sends (0.99%) went to +20 (Egypt)"
    )
    assert "e.g. ******0143" in warning["message"] and "2025550143" not in warning["message"]
    assert "DEFAULT_COUNTRY" in warning["fix"]
    result = app.test_cli_runner().invoke(args=["doctor"])
    assert result.exit_code == 1 and "[rare-country]" in result.output
    with app.extensions["connector"].store.transaction() as tx:  # a day later
        tx.execute("UPDATE trail SET at = at - 86401")
    assert warnings(app, "rare-country") == []


def test_no_rare_country_warning_once_default_country_is_set(make_app, vonage):
    app = make_app(evidence_flush_seconds=0, default_country="US")
    client = app.test_client()
    for n in range(100):
        assert done(send(client, {"to": f"+4477009001{n:02d}", "text": "hi"})).status_code == 200
    assert done(send(client, {"to": "+20 2 5550 1430", "text": "hi"})).status_code == 200
    assert warnings(app, "rare-country") == []
