"""Every setting declared once and checked at start: a value outside what its declaration
allows stops the start naming the variable and what it allows, never a secret's value; the
docs/settings.md's table and .env.example are written from the declarations."""

import re

import phonenumbers
import pytest

from connector import create_app, settings_docs, start
from connector.setting_schema import SettingError
from connector.settings import SETTINGS, load_settings

NUMERIC = [s for s in SETTINGS if s.kind in ("number", "integer")]
BY_ENV = {s.env: s for s in SETTINGS}


def refused(environ):
    """The SettingError's message for `environ`; fails if it loads."""
    with pytest.raises(SettingError) as caught:
        load_settings(environ=environ)
    return str(caught.value)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-1", "1e999", "four", "5 s", "0x10"])
@pytest.mark.parametrize("setting", NUMERIC, ids=lambda s: s.env)
def test_every_number_refuses_nan_infinity_negatives_and_garbage(setting, value):
    message = refused({setting.env: value})
    assert f"{setting.env} must be {setting.allowed()}, not {value!r}" in message


@pytest.mark.parametrize("setting", NUMERIC, ids=lambda s: s.env)
def test_zero_is_refused_unless_the_declaration_says_what_it_means(setting):
    if setting.minimum == 0 and not setting.above:
        assert setting.zero, f"{setting.env} takes 0: its declaration must say what 0 means"
        assert load_settings(environ={setting.env: "0"})
        assert f"0 = {setting.zero}" in setting.allowed()
    else:
        assert f"{setting.env} must be" in refused({setting.env: "0"})


@pytest.mark.parametrize("setting", NUMERIC, ids=lambda s: s.env)
def test_every_number_takes_its_default_written_out(setting):
    value = getattr(load_settings(environ={setting.env: f" {setting.default} "}), setting.field)
    assert value == getattr(load_settings(environ={}), setting.field)


@pytest.mark.parametrize(
    "env, value",
    [
        ("VONAGE_TIMEOUT", "nan"),
        ("VONAGE_TIMEOUT", "0"),
        ("VONAGE_TIMEOUT", "-1"),
        ("VONAGE_MAX_RPS", "-5"),
        ("GUNICORN_THREADS", "0"),
        ("RETENTION_DAYS", "inf"),
        ("RETENTION_DAYS", "0.0001"),
        ("RETENTION_DAYS", "0.99"),
        ("MOENGAGE_TIMEOUT", "0"),
        ("WEB_CONCURRENCY", "0"),
        ("SEND_DEDUPE_SECONDS", "-60"),
        ("PENDING_SWEEP_SECONDS", "-1"),
        ("PORT", "70000"),
        ("GUNICORN_REUSE_PORT", "yes"),
        ("LOG_LEVEL", "loud"),
        ("PUBLIC_URL", "sms.example.com"),
        ("PUBLIC_URL", "https://sms.example.com/webhooks/status"),
        ("VONAGE_API_URL", "https://api.nexmo.com/v1/messages"),
        ("VONAGE_API_URL", "https://api.nexmo.com/v1/"),
        ("VONAGE_API_URL", "api.nexmo.com"),
        ("VONAGE_API_URL", "https://api.nexmo.com?x=1"),
        ("MOENGAGE_DELIVERY_URL", "ftp://moengage.example.com/x"),
        ("MOENGAGE_DELIVERY_URL", "https:///no-host"),
        ("MOENGAGE_API_URL", "https://api-02.moengage.com/v1/customer"),
        ("DEFAULT_COUNTRY", "XX"),
        ("DEFAULT_COUNTRY", "UK"),
        ("DEFAULT_COUNTRY", "GBR"),
    ],
)
def test_values_that_used_to_load_and_break_the_connector_stop_the_start(env, value):
    message = refused({env: value})
    assert message.startswith(f"configuration: {env} must ")
    assert BY_ENV[env].allowed() in message


@pytest.mark.parametrize(
    "env, value, expected",
    [
        ("RETENTION_DAYS", "1", 1.0),
        ("RETENTION_DAYS", "1.5", 1.5),
        ("VONAGE_MAX_RPS", "0", 0.0),
        ("PENDING_SWEEP_SECONDS", "0", 0.0),
        ("SEND_DEDUPE_SECONDS", "0", 0.0),
        ("PUBLIC_URL", "https://sms.example.com/", "https://sms.example.com"),
        ("VONAGE_API_URL", "https://proxy.example.com/vonage", "https://proxy.example.com/vonage"),
        ("MOENGAGE_DELIVERY_URL", "https://a.moengage.com/sms/dlr/custom/9?r=eu", None),
        ("DEFAULT_COUNTRY", "in", "IN"),
        ("DEFAULT_COUNTRY", "", ""),
        ("GUNICORN_REUSE_PORT", "1", True),
        ("LOG_LEVEL", "debug", "DEBUG"),
    ],
)
def test_allowed_values_load(env, value, expected):
    setting = BY_ENV[env]
    loaded = getattr(load_settings(environ={env: value}), setting.field)
    assert loaded == (value if expected is None else expected)


def test_default_country_accepts_every_region_phonenumbers_knows():
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        assert load_settings(environ={"DEFAULT_COUNTRY": region.lower()}).default_country == region


def test_console_password_is_empty_or_at_least_12_characters_and_never_shown():
    assert load_settings(environ={}).console_password == ""
    assert load_settings(environ={"CONSOLE_PASSWORD": "x" * 12}).console_password == "x" * 12
    message = refused({"CONSOLE_PASSWORD": "hunter2-abc"})
    assert "CONSOLE_PASSWORD must be empty (off) or at least 12 characters" in message
    assert "hunter2" not in message


def test_a_secrets_bad_value_is_never_echoed():
    message = refused({"DATABASE_URL": "mysql://app:hunter2@db.example.com/app"})
    assert "DATABASE_URL must start with postgres:// or postgresql://" in message
    assert "hunter2" not in message and "db.example.com" not in message
    settings = load_settings(
        environ={"VONAGE_SIGNATURE_SECRET": "sig-hunter2", "MOENGAGE_DATA_API_KEY": "key-hunter2"}
    )
    assert "hunter2" not in repr(settings)


def test_every_bad_setting_is_named_at_once():
    message = refused({"VONAGE_TIMEOUT": "nan", "WEB_CONCURRENCY": "0", "PORT": "http"})
    assert [line.split()[1] for line in message.splitlines()] == [
        "VONAGE_TIMEOUT",
        "PORT",
        "WEB_CONCURRENCY",
    ]


def test_an_unknown_override_is_refused():
    with pytest.raises(ValueError, match="unknown settings"):
        load_settings({"vonage_timout": 3}, environ={})


def test_each_declaration_is_whole():
    for setting in SETTINGS:
        assert re.fullmatch(r"[A-Z][A-Z0-9_]*", setting.env), setting.env
        assert setting.help and setting.group, setting.env
        load_settings(environ={setting.env: setting.default})  # its default is allowed
        if setting.example:
            load_settings(environ={setting.env: setting.example})


def test_an_app_built_with_a_bad_setting_starts_nothing_and_health_names_it(tmp_path):
    """Building the app (any `flask` command, even --help) does not fail on a setting; starting
    it, opening its database or asking /health does, naming it."""
    bad = {"VONAGE_TIMEOUT": "nan", "DATABASE_URL": "mysql://app:hunter2@db.example.com/app"}
    app = create_app({"database_path": str(tmp_path / "c.db")}, environ=bad)
    with pytest.raises(SettingError, match="VONAGE_TIMEOUT must be a number from 1"):
        start(app)
    with pytest.raises(SettingError, match="DATABASE_URL must start with postgres://"):
        app.extensions["connector"].store  # noqa: B018 - never SQLite in its place
    health = app.test_client().get("/health")
    assert health.status_code == 503
    assert [p.split()[0] for p in health.json["problems"][:2]] == ["VONAGE_TIMEOUT", "DATABASE_URL"]
    assert "hunter2" not in health.get_data(as_text=True)
    assert list(tmp_path.iterdir()) == []


# --- the documents follow the declarations ---------------------------------------------------


def test_env_example_is_written_from_the_declarations():
    text = settings_docs.ENV_EXAMPLE.read_text()
    listed = re.findall(r"^#?([A-Z][A-Z0-9_]*)=", text, flags=re.MULTILINE)
    assert listed == [s.env for s in SETTINGS]
    assert text == settings_docs.env_example(), "run: python -m connector.settings_docs"


@pytest.mark.parametrize("path", settings_docs.TABLED, ids=lambda p: p.name)
def test_the_settings_tables_are_written_from_the_declarations(path):
    text = path.read_text()
    table = text.split(settings_docs.BEGIN, 1)[1].split(settings_docs.END, 1)[0]
    assert re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \|", table, flags=re.MULTILINE) == [
        s.env for s in SETTINGS
    ]
    assert text == settings_docs.with_table(text), "run: python -m connector.settings_docs"
