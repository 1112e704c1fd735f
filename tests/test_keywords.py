import pytest

from connector.relay.keywords import classify
from connector.settings import DEFAULT_OPT_IN, DEFAULT_OPT_OUT

OUT, IN = tuple(DEFAULT_OPT_OUT.split(",")), tuple(DEFAULT_OPT_IN.split(","))


@pytest.mark.parametrize(
    "text, expected",
    [
        ("STOP", ("STOP", "OPTOUT")),
        ("  stop.\n", ("STOP", "OPTOUT")),
        ("Stop!!", ("STOP", "OPTOUT")),
        ("stopall", ("STOPALL", "OPTOUT")),
        ("Cancel", ("CANCEL", "OPTOUT")),
        ("start", ("START", "OPTIN")),
        ("Yes!", ("YES", "OPTIN")),
        ("unstop", ("UNSTOP", "OPTIN")),
        ("Stop sending me the blue one", ("STOP SENDING ME THE BLUE ONE", None)),
        ("yes please", ("YES PLEASE", None)),
        ("", ("", None)),
        ("?!", ("", None)),
    ],
)
def test_classify(text, expected):
    assert classify(text, OUT, IN) == expected
