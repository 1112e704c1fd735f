import pytest

from connector import phone


@pytest.mark.parametrize(
    "raw, number",
    [
        ("+44 7700 900000", "447700900000"),
        ("0033612345678", "33612345678"),
        (15550109999, "15550109999"),
    ],
)
def test_normalise(raw, number):
    assert phone.normalise(raw) == number


@pytest.mark.parametrize("raw", ["0612345678", "+0", "12345", "4477009000001234", "44x7700900000"])
def test_normalise_refuses(raw):
    with pytest.raises(ValueError):
        phone.normalise(raw)


def test_mask_keeps_last_four():
    assert phone.mask("447700900123") == "********0123"
    assert phone.mask("12") == "****"
    assert phone.mask(None) == "****"
