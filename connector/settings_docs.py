"""The settings' documentation, written from their declarations (connector/settings.py): the
table in docs/settings.md (its one place; the README links to it) and `.env.example`. Run
after changing a setting:

    python -m connector.settings_docs

tests/test_settings.py fails while either differs from what this writes.
"""

import textwrap
from itertools import groupby
from pathlib import Path

from connector.settings import SETTINGS

ROOT = Path(__file__).resolve().parents[1]
BEGIN = "<!-- settings table: written by `python -m connector.settings_docs` from connector/settings.py -->"
END = "<!-- end of settings table -->"
TABLED = (ROOT / "docs" / "settings.md",)
ENV_EXAMPLE = ROOT / ".env.example"


def default_text(setting):
    """The table's default: `literal`, "required", or words (no literal default)."""
    if setting.required:
        return "required"
    return f"`{setting.default}`" if setting.default else setting.none


def table():
    lines = ["| variable | meaning | allowed | default |", "|---|---|---|---|"]
    for s in SETTINGS:
        secret = "; secret: never logged or shown" if s.secret else ""
        lines.append(f"| `{s.env}` | {s.help}{secret} | {s.allowed()} | {default_text(s)} |")
    return "\n".join(lines)


def with_table(text):
    """`text` with the part between BEGIN and END replaced by today's table."""
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    return f"{head}{BEGIN}\n{table()}\n{END}{tail}"


def _comment(text):
    return textwrap.wrap(
        text, 97, initial_indent="# ", subsequent_indent="# ", break_on_hyphens=False
    )


def env_example():
    """Every setting: the required ones set and empty, the others commented out at their
    default (or empty where there is none)."""
    lines = _comment(
        "Copy to .env (read at start by the app and by gunicorn.conf.py; the environment wins "
        "over it) or set these in your PaaS's environment. Written from connector/settings.py by "
        "`python -m connector.settings_docs`: every setting is here, the required ones empty, "
        "the others commented out at their default (or empty where there is none)."
    )
    for group, settings in groupby(SETTINGS, key=lambda s: s.group):
        lines += ["", f"# --- {group} " + "-" * (93 - len(group))]
        for s in settings:
            lines += _comment(f"{s.help[0].upper()}{s.help[1:]}. Allowed: {s.allowed()}.")
            lines.append(f"{s.env}=" if s.required else f"#{s.env}={s.default}")
    return "\n".join(lines) + "\n"


def main():
    for path in TABLED:
        path.write_text(with_table(path.read_text()))
    ENV_EXAMPLE.write_text(env_example())


if __name__ == "__main__":
    main()
