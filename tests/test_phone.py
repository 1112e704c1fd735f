"""How `to` is read, with and without DEFAULT_COUNTRY (issue 19; docs/setup.md, "How numbers
are read", has the table). NATIONAL: refused, naming DEFAULT_COUNTRY; NOT: refused as "not a phone number"."""

import pytest

from connector import countries, phone

NATIONAL = "400: set DEFAULT_COUNTRY"
NOT = "400: not a phone number"

# (DEFAULT_COUNTRY when set, `to` as MoEngage sends it, read with it set, read with it empty)
TABLE = [
    ("GB", "07700 900123", "447700900123", NATIONAL),
    ("GB", "7700 900123", "447700900123", NATIONAL),  # issue: was +7, Kazakhstan
    ("GB", "+44 7700 900123", "447700900123", "447700900123"),
    ("GB", "0044 7700 900123", "447700900123", "447700900123"),
    ("GB", "447700900123", "447700900123", "447700900123"),
    ("US", "(202) 555-0143", "12025550143", "2025550143"),  # empty: +20, doctor warns
    ("US", "1 202 555 0143", "12025550143", "12025550143"),
    ("US", "+1 202-555-0143", "12025550143", "12025550143"),
    ("US", "001 202 555 0143", "12025550143", "12025550143"),
    ("FR", "06 12 34 56 78", "33612345678", NATIONAL),
    ("FR", "612345678", "33612345678", "612345678"),  # empty: +61, doctor warns
    ("FR", "+33 6 12 34 56 78", "33612345678", "33612345678"),
    ("FR", "0033612345678", "33612345678", "33612345678"),
    ("DE", "030 1234567", "49301234567", NATIONAL),
    ("DE", "0151 23456789", "4915123456789", NATIONAL),
    ("DE", "+49 151 23456789", "4915123456789", "4915123456789"),
    ("DE", "4915123456789", "4915123456789", "4915123456789"),
    ("IN", "098765 43210", "919876543210", NATIONAL),
    ("IN", "98765 43210", "919876543210", NATIONAL),
    ("IN", "+91 98765 43210", "919876543210", "919876543210"),
    ("IN", "919876543210", "919876543210", "919876543210"),
    ("AU", "0412 345 678", "61412345678", NATIONAL),
    ("AU", "412 345 678", "61412345678", NATIONAL),
    ("AU", "+61 412 345 678", "61412345678", "61412345678"),
    ("BR", "011 91234 5678", "5511912345678", NATIONAL),
    ("BR", "(11) 91234-5678", "5511912345678", "11912345678"),
    ("BR", "+55 11 91234 5678", "5511912345678", "5511912345678"),
    ("JP", "090-1234-5678", "819012345678", NATIONAL),
    ("JP", "90 1234 5678", "819012345678", NATIONAL),
    ("JP", "+81 90 1234 5678", "819012345678", "819012345678"),
    ("ZA", "082 123 4567", "27821234567", NATIONAL),
    ("ZA", "+27 82 123 4567", "27821234567", "27821234567"),
    ("ZA", "27821234567", "27821234567", "27821234567"),
    ("MX", "55 1234 5678", "525512345678", "5512345678"),
    ("MX", "+52 55 1234 5678", "525512345678", "525512345678"),
    ("IT", "06 1234 5678", "390612345678", NATIONAL),  # Italy keeps its leading 0
    ("IT", "+39 06 1234 5678", "390612345678", "390612345678"),
    ("IT", "312 345 6789", "393123456789", "3123456789"),
    # Not possible there, possible as international: international (the example).
    ("US", "447700900123", "447700900123", "447700900123"),
    ("FR", "919876543210", "919876543210", "919876543210"),
    ("GB", "33612345678", "33612345678", "33612345678"),
    # Too short, too long, letters.
    ("GB", "123", NOT, NOT),
    ("US", "12", NOT, NOT),
    ("GB", "+44 1234", NOT, NOT),
    ("FR", "+33 6 12 34 56 78 90 12", NOT, NOT),
    ("DE", "1234567890123456789", NOT, NOT),
    ("GB", "07700 90012x", NOT, NOT),
    ("US", "CALL-NOW", NOT, NOT),
    ("IN", "+91 abc", NOT, NOT),
    ("GB", "00", NOT, NOT),
]


def read(raw, country):
    try:
        return phone.normalise(raw, country)
    except ValueError as exc:
        reason = str(exc)
        if "not a phone number" in reason:
            return NOT
        assert "DEFAULT_COUNTRY" in reason
        return NATIONAL


@pytest.mark.parametrize("country, raw, with_country, without", TABLE)
def test_how_a_number_is_read_with_default_country(country, raw, with_country, without):
    assert read(raw, country) == with_country


@pytest.mark.parametrize("country, raw, with_country, without", TABLE)
def test_how_a_number_is_read_without_default_country(country, raw, with_country, without):
    assert read(raw, "") == without


def test_the_table_covers_ten_countries_and_thirty_numbers():
    assert len({row[0] for row in TABLE}) >= 10 and len(TABLE) >= 30


def test_a_national_number_is_one_person_with_its_international_form():
    """What opt-outs, the identical-send window and trace key on."""
    assert phone.normalise("07700 900123", "GB") == phone.normalise("+44 7700 900123")
    assert phone.normalise(447700900123, "GB") == "447700900123"


def test_the_reason_for_a_national_number_names_the_setting():
    with pytest.raises(ValueError, match="Set DEFAULT_COUNTRY to the country") as refused:
        phone.normalise("07700 900123")
    assert "`to`" in str(refused.value)


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


@pytest.mark.parametrize(
    "number, region, name, described",
    [
        ("447700900123", "GB", "United Kingdom", "+44 (United Kingdom)"),
        ("14165550123", "CA", "Canada", "+1 (Canada)"),
        ("12025550143", "US", "United States", "+1 (United States)"),
        ("2025550143", "EG", "Egypt", "+20 (Egypt)"),
        ("919876543210", "IN", "India", "+91 (India)"),
    ],
)
def test_the_country_of_a_number_comes_from_the_library(number, region, name, described):
    country = countries.of(number)
    assert (country.region, country.name) == (region, name)
    assert countries.describe(region) == described
    assert countries.label(number) == f"{region} ({name})"


def test_a_calling_code_recorded_before_regions_is_still_named():
    assert countries.describe("91") == "+91 (India)" and countries.describe("999") == "+999"


def test_a_number_of_no_one_country_is_named_by_its_calling_code():
    assert countries.key("80012345678") == "800" and countries.label("80012345678") == "+800"
    assert countries.key("999") == "ZZ" and countries.describe("ZZ") == "an unknown country"


def test_mask_keeps_last_four():
    assert phone.mask("447700900123") == "********0123"
    assert phone.mask("12") == "****"
    assert phone.mask(None) == "****"
