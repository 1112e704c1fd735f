"""Settings: read once from the environment, typed, with defaults from the contract."""

import pytest

from connector.settings import load_settings


def test_defaults_follow_the_contract():
    s = load_settings(environ={})
    assert s.vonage_api_url == "https://api.nexmo.com"
    assert s.send_dedupe_seconds == 60 and s.vonage_timeout == 4
    assert s.opt_out_keywords == ("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT")
    assert s.opt_in_keywords == ("START", "YES", "UNSTOP")
    assert s.log_level == "INFO"
    assert not s.data_api_enabled


def test_environment_is_parsed():
    s = load_settings(
        environ={
            "VONAGE_SIGNATURE_SECRET": "old, new",
            "VONAGE_TIMEOUT": "3.5",
            "MOENGAGE_DELIVERY_URL": "https://api-02.moengage.com/sms/dlr/custom/9?a=b",
            "OPT_OUT_KEYWORDS": "stop, arret",
            "VONAGE_API_URL": "https://api-eu.nexmo.com/",
            "MOENGAGE_WORKSPACE_ID": "ws",
            "MOENGAGE_DATA_API_KEY": "k",
        }
    )
    assert s.vonage_signature_secrets == ("old", "new")
    assert s.vonage_timeout == 3.5
    assert s.opt_out_keywords == ("STOP", "ARRET")
    assert s.vonage_api_url == "https://api-eu.nexmo.com"
    assert s.data_api_base == "https://api-02.moengage.com"
    assert s.data_api_enabled


def test_a_malformed_number_names_the_variable():
    with pytest.raises(ValueError, match="VONAGE_TIMEOUT"):
        load_settings(environ={"VONAGE_TIMEOUT": "four"})


def test_problems_name_the_fix():
    problems = load_settings(environ={}).problems()
    assert any("MOENGAGE_DELIVERY_URL" in p and "MoEngage" in p for p in problems)
    assert any("VONAGE_SIGNATURE_SECRET" in p and "Dashboard" in p for p in problems)


def test_api_keys_limit_and_account_api_host():
    assert load_settings(environ={}).vonage_api_keys == ()
    assert load_settings(environ={}).vonage_account_url == "https://rest.nexmo.com"
    s = load_settings(
        environ={"VONAGE_API_KEYS": " abcd1234, efgh5678 ,", "VONAGE_API_URL": "http://127.0.0.1:9"}
    )
    assert s.vonage_api_keys == ("abcd1234", "efgh5678")
    assert s.vonage_account_url == "http://127.0.0.1:9"  # a stand-in or proxy serves both
    eu = load_settings(environ={"VONAGE_API_URL": "https://api-eu.vonage.com"})
    assert eu.vonage_account_url == "https://rest.nexmo.com"


def test_default_country_and_console_password_are_exposed():
    s = load_settings(environ={})
    assert (s.default_country, s.console_password) == ("", "")
    s = load_settings(environ={"DEFAULT_COUNTRY": " us ", "CONSOLE_PASSWORD": "twelve chars"})
    assert (s.default_country, s.console_password) == ("US", "twelve chars")
    with pytest.raises(ValueError, match="DEFAULT_COUNTRY must be"):
        load_settings(environ={"DEFAULT_COUNTRY": "Narnia"})
    with pytest.raises(ValueError, match="CONSOLE_PASSWORD must be"):
        load_settings(environ={"CONSOLE_PASSWORD": "eleven char"})


def test_gunicorns_settings_are_declared_with_the_apps():
    s = load_settings(environ={"PORT": "9000", "WEB_CONCURRENCY": "2", "GUNICORN_REUSE_PORT": "1"})
    assert (s.port, s.workers, s.threads, s.gunicorn_reuse_port) == (9000, 2, 64, True)
