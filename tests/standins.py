"""The stand-ins the tests use (connector/rehearsal/standins.py), answering errors with the bodies
Vonage's own SDKs test against (tests/fixtures/vonage), and the test accounts."""

import json
from pathlib import Path

from connector.rehearsal import standins
from connector.rehearsal.standins import Answer, MoEngageStandIn, StandIn

__all__ = ["Answer", "MoEngageStandIn", "StandIn", "VonageStandIn", "fixture"]

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "vonage"  # sources: its README.md
API_KEY, API_SECRET = "abcd1234", "Secr3t:with:colons"
ACCOUNTS = {API_KEY: API_SECRET, "efgh5678": "other-secret"}
PROBLEM_FIXTURES = {
    "not_found": "python-sdk/messages__not_found.json",
    "unauthorized": "python-sdk/http_client__401.json",
    "invalid_json": "php-sdk/bad-request.json",
    "invalid_params": "python-sdk/messages__invalid_error.json",
}


def fixture(name):
    return json.loads((FIXTURES / name).read_text())


class VonageStandIn(standins.VonageStandIn):
    def __init__(self, accounts=ACCOUNTS):
        super().__init__(accounts)

    def problem(self, name):
        return fixture(PROBLEM_FIXTURES[name])
