"""The CLI does only what is asked: building the app opens no database and complains about
nothing; commands that only read never create a database; each command names the settings and
arguments it concerns. gunicorn still opens the database before serving, and stops on a bad one."""

import os
import subprocess
import sys

from gunicorn_proc import ROOT, free_port

from connector.settings import load_settings
from connector.store import open_store


def flask(cwd, *args, **env):
    """`flask --app app ...` as a user runs it, from `cwd`, with no connector settings but `env`."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("VONAGE_", "MOENGAGE_"))}
    clean.pop("DATABASE_URL", None)
    clean.pop("DATABASE_PATH", None)
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", str(ROOT / "app.py"), *args],
        check=False,
        cwd=cwd,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_help_builds_nothing_and_creates_no_file(tmp_path):
    done = flask(tmp_path, "--help")
    assert done.returncode == 0, done.stderr
    assert "rehearse" in done.stdout and "sign-webhook" in done.stdout
    assert list(tmp_path.iterdir()) == []  # no connector.db
    assert "configuration" not in done.stderr and "MOENGAGE_DELIVERY_URL" not in done.stderr


def test_help_builds_the_app_despite_a_bad_setting_and_commands_name_it(tmp_path):
    done = flask(tmp_path, "--help", VONAGE_TIMEOUT="nan")
    assert done.returncode == 0, done.stderr
    done = flask(tmp_path, "pending", VONAGE_TIMEOUT="nan")
    assert done.returncode == 1
    assert "configuration: VONAGE_TIMEOUT must be a number from 1" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_read_only_commands_on_a_missing_sqlite_file_say_so_and_create_nothing(tmp_path):
    for command in ("pending", "optouts"):
        done = flask(tmp_path, command, DATABASE_PATH="conector.db")
        assert done.returncode == 1, done.stdout + done.stderr
        assert f"no database at {tmp_path / 'conector.db'}" in done.stderr
        assert list(tmp_path.iterdir()) == []


def test_optouts_complains_about_nothing_it_does_not_need(tmp_path):
    open_store(load_settings({"database_path": str(tmp_path / "connector.db")}, environ={}))
    done = flask(tmp_path, "optouts")
    assert done.returncode == 0, done.stderr
    assert "0 opted out" in done.stdout
    assert "MOENGAGE_DELIVERY_URL" not in done.stderr + done.stdout
    assert "VONAGE_SIGNATURE_SECRET" not in done.stderr + done.stdout


def test_push_names_the_setting_it_needs(make_app):
    result = make_app(moengage_delivery_url="").test_cli_runner().invoke(args=["push"])
    assert result.exit_code == 1
    assert "MOENGAGE_DELIVERY_URL is not set" in result.output


def test_optin_names_the_argument_typed(app):
    result = app.test_cli_runner().invoke(args=["optin", "123"])
    assert result.exit_code == 2
    assert "Invalid value for NUMBER: '123' is not a phone number" in result.output
    assert "`to`" not in result.output


def test_gunicorn_stops_at_start_on_a_bad_database_url(tmp_path):
    env = {
        **os.environ,
        "DATABASE_URL": "mysql://user:pw@127.0.0.1/connector",
        "PORT": str(free_port()),
        "WEB_CONCURRENCY": "1",
    }
    done = subprocess.run(
        [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py", "app:app"],
        check=False,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "DATABASE_URL must start with postgres:// or postgresql://" in done.stderr
    assert "pw" not in done.stderr.split("DATABASE_URL must start", 1)[1].splitlines()[0]


def test_gunicorn_stops_at_start_on_bad_settings_naming_each_and_no_secret():
    """Values that used to load and then break the connector silently: the master stops before
    any worker starts, one line per setting, and a secret's value is never shown."""
    env = {
        **os.environ,
        "PORT": str(free_port()),
        "VONAGE_TIMEOUT": "nan",
        "WEB_CONCURRENCY": "0",
        "RETENTION_DAYS": "0.0001",
        "PUBLIC_URL": "sms.example.com",
        "CONSOLE_PASSWORD": "hunter2",
    }
    done = subprocess.run(
        [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py", "app:app"],
        check=False,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    for line in (
        "configuration: VONAGE_TIMEOUT must be a number from 1 to 30 (seconds)",
        "configuration: WEB_CONCURRENCY must be a whole number of at least 1 (processes), not '0'",
        "configuration: RETENTION_DAYS must be a number of at least 1 (days), not '0.0001'",
        "configuration: PUBLIC_URL must be an http:// or https:// URL with a host",
        "configuration: CONSOLE_PASSWORD must be empty (off) or at least 12 characters",
    ):
        assert line in done.stderr, done.stderr
    assert "hunter2" not in done.stderr and "Traceback" not in done.stderr
    assert "Booting worker" not in done.stderr
