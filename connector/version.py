"""The connector's version, shown by `/health` and `flask --app app version`; CHANGELOG.md says
what each one changed and what to do on upgrading."""

__version__ = "2.0.0"
