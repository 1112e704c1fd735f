"""The one-click deploy files: Heroku's app.json and Render's render.yaml describe the same app."""

import json
import re
from pathlib import Path

import pytest
import yaml_subset

from connector.config import _ENV

ROOT = Path(__file__).resolve().parents[1]
# Heroku's app.json schema (devcenter "app.json Schema"): every key it defines, and no other.
APP_JSON_KEYS = {
    "name",
    "description",
    "keywords",
    "website",
    "repository",
    "logo",
    "success_url",
    "scripts",
    "env",
    "formation",
    "image",
    "addons",
    "buildpacks",
    "environments",
    "stack",
}
ENV_KEYS = {"description", "value", "required", "generator"}
FORMATION_KEYS = {"quantity", "size"}
ADDON_KEYS = {"plan", "as", "options"}
# Render's Blueprint spec: root fields, and the sources one envVars entry may take (exactly one).
RENDER_KEYS = {"services", "databases", "envVarGroups", "projects", "ungrouped", "previews"}
ENV_SOURCES = {"value", "sync", "generateValue", "fromDatabase", "fromService", "fromGroup"}
# What the connector and gunicorn.conf.py read.
SETTINGS = {var for var, _ in _ENV.values()} | {
    "PORT",
    "WEB_CONCURRENCY",
    "GUNICORN_THREADS",
    "GUNICORN_TIMEOUT",
    "GUNICORN_GRACEFUL_TIMEOUT",
    "GUNICORN_KEEPALIVE",
}
REQUIRED = {"VONAGE_SIGNATURE_SECRET"}  # the one setting a newcomer has before deploying


@pytest.fixture(scope="module")
def app_json():
    return json.loads((ROOT / "app.json").read_text())


@pytest.fixture(scope="module")
def blueprint():
    return yaml_subset.parse((ROOT / "render.yaml").read_text())


def procfile():
    return dict(
        line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line.strip()
    )


def test_app_json_uses_only_herokus_keys(app_json):
    assert set(app_json) <= APP_JSON_KEYS
    assert 3 <= len(app_json["name"]) <= 30 and len(app_json["description"]) <= 140
    assert all(isinstance(word, str) for word in app_json["keywords"])


def test_app_json_env_describes_every_setting(app_json):
    for var, spec in app_json["env"].items():
        assert re.fullmatch(r"[A-Z][A-Z0-9_]*", var) and var in SETTINGS, var
        assert set(spec) <= ENV_KEYS and spec["description"], var
        assert isinstance(spec.get("required", True), bool)
        assert isinstance(spec.get("value", ""), str)
        assert spec.get("generator", "secret") == "secret"
        # Heroku's default is required: an optional setting must say so or carry a value.
        assert spec.get("required", True) is False or "value" in spec or var in REQUIRED, var
    assert "DATABASE_URL" not in app_json["env"]  # the add-on sets it


def test_app_json_adds_postgres_and_runs_the_procfiles_web_process(app_json):
    plans = [a if isinstance(a, str) else a["plan"] for a in app_json["addons"]]
    assert all(isinstance(a, str) or set(a) <= ADDON_KEYS for a in app_json["addons"])
    assert any(plan.split(":")[0] == "heroku-postgresql" for plan in plans)
    assert set(app_json["formation"]) <= set(procfile()) and "web" in app_json["formation"]
    for process in app_json["formation"].values():
        assert set(process) <= FORMATION_KEYS and process["quantity"] >= 1
    assert app_json["buildpacks"] == [{"url": "heroku/python"}]


def test_render_yaml_is_one_python_web_service_and_its_database(blueprint):
    assert set(blueprint) <= RENDER_KEYS
    [service] = blueprint["services"]
    [database] = blueprint["databases"]
    assert (service["type"], service["runtime"]) == ("web", "python")
    assert service["buildCommand"] == "pip install -r requirements.txt"
    assert "--config gunicorn.conf.py" in service["startCommand"]
    assert service["startCommand"].split()[0] == "gunicorn"
    assert service["startCommand"].endswith(" app:app") and procfile()["web"].endswith(" app:app")
    env = {entry["key"]: entry for entry in service["envVars"]}
    assert env["DATABASE_URL"]["fromDatabase"] == {
        "name": database["name"],
        "property": "connectionString",
    }
    for key, entry in env.items():
        assert len(set(entry) & ENV_SOURCES) == 1 and set(entry) <= ENV_SOURCES | {"key"}, key
        assert isinstance(entry.get("value", ""), str), key  # numbers quoted: Render wants text
        assert entry.get("sync", False) is False, key  # sync: false = asked for at creation


def test_heroku_and_render_ask_for_the_same_settings(app_json, blueprint):
    [service] = blueprint["services"]
    render_env = {entry["key"]: entry for entry in service["envVars"]}
    assert set(render_env) == set(app_json["env"]) | {"DATABASE_URL"}
    for var, spec in app_json["env"].items():
        assert render_env[var].get("value") == spec.get("value"), var


# The smallest plans the buttons create, and what else may hold a connection at once: a
# one-off `flask` command or psql session (Heroku), or the instances being replaced during a
# zero-downtime deploy (Render runs old and new together).
HEROKU_ESSENTIAL_0, HEROKU_DYNOS, HEROKU_SPARE = 20, 2, 4
RENDER_BASIC, RENDER_INSTANCES, RENDER_RESERVED = 100, 5, 10


def connections_per_instance(env):
    return int(env["WEB_CONCURRENCY"]["value"]) * int(env["DATABASE_POOL_SIZE"]["value"])


def test_deploy_files_fit_the_database_plans_connection_limit(app_json, blueprint):
    """The README's rule: instances x workers x DATABASE_POOL_SIZE under the plan's limit."""
    heroku = connections_per_instance(app_json["env"])
    assert HEROKU_DYNOS * heroku + HEROKU_SPARE <= HEROKU_ESSENTIAL_0
    [service] = blueprint["services"]
    render = connections_per_instance({e["key"]: e for e in service["envVars"]})
    assert 2 * RENDER_INSTANCES * render <= RENDER_BASIC - RENDER_RESERVED
    # Threads no longer open connections of their own: more of them cost no connections.
    assert int(app_json["env"]["GUNICORN_THREADS"]["value"]) > heroku


@pytest.mark.parametrize(
    "text",
    [
        "a: [1]\n",
        "a: {b: 1}\n",
        "a: &x 1\n",
        "a: |\n  b\n",
        "a: 1\na: 2\n",
        "a:\n\tb: 1\n",
        "a: b: c\n",
        "a: 'open\n",
    ],
)
def test_the_yaml_reader_refuses_what_is_outside_its_subset(text):
    with pytest.raises(yaml_subset.YamlError):
        yaml_subset.parse(text)


def test_the_yaml_reader_reads_its_subset():
    text = (
        "# comment\nlist:\n  - key: 'it''s'  # trailing\n    n: 2\n  - plain app:app\n"
        'same:\n- "x # y"\n- 1.5\nempty:\nflag: true\n'
    )
    assert yaml_subset.parse(text) == {
        "list": [{"key": "it's", "n": 2}, "plain app:app"],
        "same": ["x # y", 1.5],
        "empty": None,
        "flag": True,
    }
