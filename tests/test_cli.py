"""`flask` commands, run as an operator would through Flask's CLI runner."""
import pytest

from connector.store import OPTOUT, SqliteStore


@pytest.fixture
def old_file(tmp_path):
    store = SqliteStore(str(tmp_path / "old.db"))
    store.init_schema()
    store.set_subscription("447700900001", OPTOUT, 100.0, 1.0, sync=False)
    store.close()
    return store.path


def test_copy_sqlite_prints_what_it_copied_and_can_run_again(app, backend, old_file):
    if backend != "postgres":
        pytest.skip("copy-sqlite copies into PostgreSQL")
    runner = app.test_cli_runner()
    first = runner.invoke(args=["copy-sqlite", old_file])
    assert first.exit_code == 0, first.output
    assert f"Copied {old_file} into postgresql:" in first.output
    assert "opt-outs and opt-ins: 1 of 1 copied" in first.output
    assert "sends: 0 of 0 copied" in first.output
    assert app.extensions["connector"].store.is_opted_out("447700900001")
    again = runner.invoke(args=["copy-sqlite", old_file])
    assert again.exit_code == 0 and "opt-outs and opt-ins: 0 of 1 copied" in again.output


def test_copy_sqlite_needs_database_url(make_app, old_file):
    result = make_app(database_url="").test_cli_runner().invoke(args=["copy-sqlite", old_file])
    assert result.exit_code == 1
    assert "DATABASE_URL is not set" in result.output


def test_copy_sqlite_refuses_a_missing_file(app, tmp_path):
    result = app.test_cli_runner().invoke(args=["copy-sqlite", str(tmp_path / "none.db")])
    assert result.exit_code == 2 and "does not exist" in result.output
