"""Contract section 4: /health, start-up problems, and logs that never leak a secret."""

import logging

from conftest import AUTH, SIGNATURE_SECRET, send
from standins import API_SECRET

from connector import start


def test_health_is_ok_when_configured(client, backend):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json["status"] == "ok"
    assert response.json["database"] == {"sqlite": "sqlite", "postgres": "postgresql"}[backend]


def test_missing_settings_are_named_in_health_and_the_log(make_app, caplog):
    app = make_app(moengage_delivery_url="", vonage_signature_secrets=())
    with caplog.at_level(logging.ERROR):
        start(app)  # what gunicorn does before serving
    response = app.test_client().get("/health")
    assert response.status_code == 503
    text = " ".join(response.json["problems"])
    assert "MOENGAGE_DELIVERY_URL" in text and "VONAGE_SIGNATURE_SECRET" in text
    assert "MOENGAGE_DELIVERY_URL is not set" in caplog.text


def test_health_never_shows_a_secret(client):
    assert SIGNATURE_SECRET not in client.get("/health").get_data(as_text=True)


def test_unreachable_database_is_503(make_app, tmp_path, unused_port):
    app = make_app()
    store = app.extensions["connector"].store
    store.close()
    store.path = str(tmp_path / "missing-dir" / "x" / "db")
    store.url = f"postgresql://connector:pw@127.0.0.1:{unused_port}/connector"
    response = app.test_client().get("/health")
    assert response.status_code == 503
    assert "database" in response.json["problems"][0]


def test_logs_mask_numbers_and_hold_no_secret(client, vonage, caplog):
    with caplog.at_level(logging.DEBUG):
        send(client, {"to": "447700900123", "text": "hi"})
        send(
            client,
            {"to": "447700900123", "text": "hi"},
            headers={"Authorization": "Custom abcd1234:wrong"},
        )
    assert "0123" in caplog.text
    for leak in (
        "447700900123",
        API_SECRET,
        "wrong",
        AUTH["Authorization"],
        "Custom ",
        SIGNATURE_SECRET,
    ):
        assert leak not in caplog.text
