"""The one-click deploy files, checked against the platforms' own schemas (tests/fixtures/deploy),
and the settings: docs/settings.md's table, .env.example, connector/settings.py and
gunicorn.conf.py agree on every variable and its default. Adding a setting means declaring it in
connector/settings.py and running `python -m connector.settings_docs` (tests/test_settings.py);
these tests need no change."""

import copy
import json
import os
import re
import runpy
from pathlib import Path

import dotenv
import jsonschema
import pytest
import yaml

from connector.settings import SETTINGS as DECLARED
from connector.settings import load_settings

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = Path(__file__).resolve().parent / "fixtures" / "deploy"  # sources: its README.md
CONFIG_VARS = {setting.env for setting in DECLARED}
EXAMPLES = {setting.env: setting.example for setting in DECLARED}


def schema(name):
    return json.loads((SCHEMAS / name).read_text())


def errors(document, schema_document):
    validator = jsonschema.validators.validator_for(schema_document)(schema_document)
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)]


@pytest.fixture(scope="module")
def app_json():
    return json.loads((ROOT / "app.json").read_text())


@pytest.fixture(scope="module")
def blueprint():
    return yaml.safe_load((ROOT / "render.yaml").read_text())


def procfile():
    return dict(
        line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line.strip()
    )


# --- docs/settings.md's table (the README links to it) -----------------------------------------


def readme_settings():
    """{variable: default}: the literal default (text), "required", or None (no literal
    default: none, or derived from another setting)."""
    text = (ROOT / "docs" / "settings.md").read_text()
    section = text.split("\n## Every setting\n", 1)[1].split("\n## ", 1)[0]
    found = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`"):
            continue
        names = re.findall(r"`([A-Z][A-Z0-9_]*)`", cells[0])
        default = cells[-1]
        if default.startswith("`"):
            values = re.findall(r"`([^`]*)`", default)
            assert len(values) == len(names), f"one default per variable: {line}"
        else:
            values = ["required" if default == "required" else None] * len(names)
        found.update(zip(names, values, strict=True))
    return found


def env_example():
    """{variable: (commented out, value)} of .env.example."""
    found = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        match = re.fullmatch(r"(#?)([A-Z][A-Z0-9_]*)=(.*)", line.strip())
        if match:
            assert match[2] not in found, f"{match[2]} twice in .env.example"
            found[match[2]] = (bool(match[1]), match[3])
    return found


SETTINGS = readme_settings()


def test_the_readme_table_is_read():
    assert {"MOENGAGE_DELIVERY_URL", "DATABASE_PATH", "PORT", "GUNICORN_THREADS"} <= set(SETTINGS)
    assert SETTINGS["VONAGE_SIGNATURE_SECRET"] == "required"
    assert SETTINGS["GUNICORN_THREADS"] == "64" and SETTINGS["PUBLIC_URL"] is None


def test_env_example_lists_every_setting_at_its_default():
    example = env_example()
    assert set(example) == set(SETTINGS)
    for var, default in SETTINGS.items():
        commented, value = example[var]
        if default == "required":
            assert (commented, value) == (False, ""), f"{var}: required, so set and empty"
        elif default is None:
            assert (commented, value) == (True, ""), f"{var}: no default, so #{var}="
        else:
            assert (commented, value) == (True, default), f"{var}: #{var}={default}"


def other_than(default, var=None):
    """A value that differs from `default` and is allowed: the declaration's example, if any."""
    if EXAMPLES.get(var):
        return EXAMPLES[var]
    if default is None or default == "required":
        return "https://example.invalid/x"
    if default in ("0", "1"):  # may be a switch: flip it
        return str(1 - int(default))
    if default.isdigit():
        return str(int(default) + 1)
    try:
        return str(float(default) + 1)
    except ValueError:
        return default + "X"


def gunicorn_settings(monkeypatch, **env):
    """gunicorn.conf.py's values with only `env` set of the documented settings (no `.env`)."""
    monkeypatch.setattr(os, "environ", {k: v for k, v in os.environ.items() if k not in SETTINGS})
    os.environ.update(env)
    monkeypatch.setattr(dotenv, "load_dotenv", lambda *a, **k: None)
    values = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    return {k: v for k, v in values.items() if isinstance(v, (str, int, float, bool, type(None)))}


@pytest.mark.parametrize("var", sorted(SETTINGS))
def test_the_app_or_gunicorn_reads_each_setting_with_the_readmes_default(var, monkeypatch):
    default = SETTINGS[var]
    read = False
    if var in CONFIG_VARS:
        read = True
        unset = load_settings(environ={})
        if default not in (None, "required"):
            assert load_settings(environ={var: default}) == unset, f"{var}: default differs"
        assert load_settings(environ={var: other_than(default, var)}) != unset, f"{var} not read"
    unset = gunicorn_settings(monkeypatch)
    changed = gunicorn_settings(monkeypatch, **{var: other_than(default, var)})
    if changed != unset:
        read = True
        assert gunicorn_settings(monkeypatch, **{var: default}) == unset, f"{var}: default differs"
    assert read, (
        f"{var} is in the README but neither connector/settings.py nor gunicorn.conf.py reads it"
    )


def test_the_app_reads_the_working_directorys_dotenv(tmp_path, monkeypatch):
    """Whatever runs it (gunicorn, flask, pytest-xdist's workers, whose __main__ has no file)."""
    (tmp_path / ".env").write_text("VONAGE_FROM=FromDotenv\n")
    monkeypatch.setattr(os, "environ", {k: v for k, v in os.environ.items() if k not in SETTINGS})
    monkeypatch.chdir(tmp_path)
    assert load_settings().vonage_from == "FromDotenv"


def test_gunicorn_reads_dotenv_as_the_app_does(tmp_path, monkeypatch):
    (tmp_path / "gunicorn.conf.py").write_text((ROOT / "gunicorn.conf.py").read_text())
    (tmp_path / ".env").write_text("PORT=1234\nWEB_CONCURRENCY=3\nGUNICORN_THREADS=5\n")
    monkeypatch.setattr(os, "environ", {k: v for k, v in os.environ.items() if k not in SETTINGS})
    monkeypatch.chdir(tmp_path)  # `.env` is the working directory's, as docs/settings.md says
    os.environ["GUNICORN_THREADS"] = "7"  # the environment wins over .env, as in the app
    values = runpy.run_path(str(tmp_path / "gunicorn.conf.py"))
    assert (values["bind"].rsplit(":", 1)[1], values["workers"], values["threads"]) == (
        "1234",
        3,
        7,
    )


# --- app.json against Heroku's schema ----------------------------------------------------------


def test_app_json_matches_herokus_schema(app_json):
    assert errors(app_json, schema("heroku-app.schema.json")) == []


@pytest.mark.parametrize(
    "break_it",
    [
        lambda a: a.update(formations=a["formation"]),  # a misspelt key
        lambda a: a["env"]["LOG_LEVEL"].update(value=3),  # Heroku wants text
        lambda a: a.update(name="a name far longer than thirty characters"),
    ],
)
def test_herokus_schema_catches_a_broken_app_json(app_json, break_it):
    broken = copy.deepcopy(app_json)
    break_it(broken)
    assert errors(broken, schema("heroku-app.schema.json"))


def test_app_json_env_describes_only_documented_settings(app_json):
    for var, spec in app_json["env"].items():
        assert var in SETTINGS and spec["description"], var
        # Heroku's default is required: an optional setting must say so or carry a value.
        required = spec.get("required", True)
        assert required is False or "value" in spec or SETTINGS[var] == "required", var
    assert "DATABASE_URL" not in app_json["env"]  # the add-on sets it


def test_app_json_adds_postgres_and_runs_the_procfiles_web_process(app_json):
    plans = [a if isinstance(a, str) else a["plan"] for a in app_json["addons"]]
    assert any(plan.split(":")[0] == "heroku-postgresql" for plan in plans)
    assert set(app_json["formation"]) <= set(procfile()) and "web" in app_json["formation"]
    assert all(process["quantity"] >= 1 for process in app_json["formation"].values())
    assert app_json["buildpacks"] == [{"url": "heroku/python"}]


# --- render.yaml against the Blueprint reference -----------------------------------------------


def test_render_yaml_matches_the_blueprint_reference(blueprint):
    assert errors(blueprint, schema("render-blueprint.schema.json")) == []


@pytest.mark.skipif(
    not os.environ.get("RENDER_SCHEMA"),
    reason="Render's own schema has no license, so it is not in the repository: set "
    "RENDER_SCHEMA to a download of https://render.com/schema/render.yaml.json to check it too",
)
def test_render_yaml_matches_renders_own_schema(blueprint):
    assert errors(blueprint, json.loads(Path(os.environ["RENDER_SCHEMA"]).read_text())) == []


@pytest.mark.parametrize(
    "break_it",
    [
        lambda b: b["services"][0].update(startcommand="gunicorn app:app"),  # misspelt
        lambda b: b["services"][0]["envVars"].append({"key": "X", "value": "1", "sync": False}),
        lambda b: b["services"][0]["envVars"].append({"key": "X", "sync": True}),
        lambda b: b["databases"][0].update(plan="huge"),
        lambda b: b.update(service=b["services"]),
    ],
)
def test_the_blueprint_schema_catches_a_broken_render_yaml(blueprint, break_it):
    broken = copy.deepcopy(blueprint)
    break_it(broken)
    assert errors(broken, schema("render-blueprint.schema.json"))


def test_render_yaml_is_one_python_web_service_and_its_database(blueprint):
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
        assert key in SETTINGS, key
        assert isinstance(entry.get("value", ""), str), key  # numbers quoted: Render wants text


def test_heroku_and_render_ask_for_the_same_settings(app_json, blueprint):
    [service] = blueprint["services"]
    render_env = {entry["key"]: entry for entry in service["envVars"]}
    assert set(render_env) == set(app_json["env"]) | {"DATABASE_URL"}
    for var, spec in app_json["env"].items():
        assert render_env[var].get("value") == spec.get("value"), var


def test_deploy_files_values_are_allowed_and_secrets_never_written(app_json, blueprint):
    """What the buttons set passes the start's checks; a secret is asked for or generated."""
    [service] = blueprint["services"]
    render_env = {entry["key"]: entry for entry in service["envVars"]}
    load_settings(environ={k: e["value"] for k, e in render_env.items() if "value" in e})
    load_settings(environ={k: e["value"] for k, e in app_json["env"].items() if "value" in e})
    for setting in DECLARED:
        if setting.secret and setting.env in app_json["env"]:
            assert "value" not in app_json["env"][setting.env], setting.env
            assert "value" not in render_env[setting.env], setting.env
    # The console: on, with a password the platform generates (Heroku: 64 hex characters,
    # Render: 44 base64 ones, both over CONSOLE_PASSWORD's 12).
    assert app_json["env"]["CONSOLE_PASSWORD"]["generator"] == "secret"
    assert render_env["CONSOLE_PASSWORD"] == {"key": "CONSOLE_PASSWORD", "generateValue": True}
    assert app_json["env"]["DEFAULT_COUNTRY"]["required"] is False
    assert render_env["DEFAULT_COUNTRY"] == {"key": "DEFAULT_COUNTRY", "sync": False}


# The smallest plans the buttons create, and what else may hold a connection at once: a
# one-off `flask` command or psql session (Heroku), or the instances being replaced during a
# zero-downtime deploy (Render runs old and new together).
HEROKU_ESSENTIAL_0, HEROKU_DYNOS, HEROKU_SPARE = 20, 2, 4
RENDER_BASIC, RENDER_INSTANCES, RENDER_RESERVED = 100, 5, 10


def connections_per_instance(env):
    return int(env["WEB_CONCURRENCY"]["value"]) * int(env["DATABASE_POOL_SIZE"]["value"])


def test_deploy_files_fit_the_database_plans_connection_limit(app_json, blueprint):
    """docs/deploy.md's rule: instances x workers x DATABASE_POOL_SIZE under the plan's limit."""
    heroku = connections_per_instance(app_json["env"])
    assert HEROKU_DYNOS * heroku + HEROKU_SPARE <= HEROKU_ESSENTIAL_0
    [service] = blueprint["services"]
    render = connections_per_instance({e["key"]: e for e in service["envVars"]})
    assert 2 * RENDER_INSTANCES * render <= RENDER_BASIC - RENDER_RESERVED
    # Threads no longer open connections of their own: more of them cost no connections.
    assert int(app_json["env"]["GUNICORN_THREADS"]["value"]) > heroku


# --- the project's habits ----------------------------------------------------------------------


def test_the_license_is_mit():
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License")
    assert "Copyright (c) 2026 the Vonage SMS connector for MoEngage contributors" in text


def test_python_version_is_the_one_ci_and_ruff_target():
    version = (ROOT / ".python-version").read_text().strip()
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.fullmatch(r"3\.\d+", version)
    assert f'target-version = "py{version.replace(".", "")}"' in pyproject
    assert f"Python {version}+" in (ROOT / "README.md").read_text()
