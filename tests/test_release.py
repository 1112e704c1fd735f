"""A release as a user meets it: its version in /health, `flask version` and CHANGELOG.md, and
what a production install brings."""

import re
from pathlib import Path

import connector

ROOT = Path(__file__).resolve().parent.parent


def test_health_shows_the_version(client):
    assert client.get("/health").json["version"] == connector.__version__


def test_the_version_command_prints_it(app):
    result = app.test_cli_runner().invoke(args=["version"])
    assert result.exit_code == 0
    assert connector.__version__ in result.output


def test_the_changelog_starts_with_this_version():
    """A release is not cut without saying what changed and what to do."""
    changelog = (ROOT / "CHANGELOG.md").read_text()
    first = re.search(r"^## (\d+\.\d+\.\d+)", changelog, re.MULTILINE)
    assert first and first.group(1) == connector.__version__
    section = changelog[first.end() :].split("\n## ", 1)[0]
    assert "Upgrading" in section, "each release says what to do on upgrading"


def _packages(name):
    lines = (ROOT / name).read_text().splitlines()
    return {re.split(r"[=<>\[ ]", line, 1)[0].lower() for line in lines if line[:1].isalpha()}


def test_production_installs_no_test_tool():
    """requirements.txt is what a PaaS installs: the tests' tools stay in requirements-dev.txt."""
    tools = {"pytest", "jsonschema", "pyyaml", "ruff", "import-linter", "mypy", "selenium"}
    assert not _packages("requirements.txt") & tools
    dev = (ROOT / "requirements-dev.txt").read_text()
    assert "-r requirements.txt" in dev and {"pytest", "import-linter", "mypy"} <= _packages(
        "requirements-dev.txt"
    )
