"""Country calling codes: the code a number starts with, found by longest prefix.

ITU-T E.164 codes are a prefix code: 1 and 7 are the one-digit codes, the two-digit ones are
listed here, and every other code is three digits long, so three tables decide any number.
"""

ONE_DIGIT = {"1": "NANP (US, Canada, Caribbean)", "7": "Russia, Kazakhstan"}
TWO_DIGITS = {
    "20": "Egypt", "27": "South Africa", "30": "Greece", "31": "Netherlands",
    "32": "Belgium", "33": "France", "34": "Spain", "36": "Hungary", "39": "Italy",
    "40": "Romania", "41": "Switzerland", "43": "Austria", "44": "United Kingdom",
    "45": "Denmark", "46": "Sweden", "47": "Norway", "48": "Poland", "49": "Germany",
    "51": "Peru", "52": "Mexico", "53": "Cuba", "54": "Argentina", "55": "Brazil",
    "56": "Chile", "57": "Colombia", "58": "Venezuela", "60": "Malaysia", "61": "Australia",
    "62": "Indonesia", "63": "Philippines", "64": "New Zealand", "65": "Singapore",
    "66": "Thailand", "81": "Japan", "82": "South Korea", "84": "Vietnam", "86": "China",
    "90": "Turkey", "91": "India", "92": "Pakistan", "93": "Afghanistan", "94": "Sri Lanka",
    "95": "Myanmar", "98": "Iran",
}  # fmt: skip
SOME_THREE_DIGITS = {
    "234": "Nigeria", "254": "Kenya", "351": "Portugal", "353": "Ireland", "358": "Finland",
    "380": "Ukraine", "880": "Bangladesh", "852": "Hong Kong", "886": "Taiwan",
    "966": "Saudi Arabia", "971": "United Arab Emirates", "972": "Israel", "974": "Qatar",
}  # fmt: skip


def calling_code(number):
    """The country calling code of an E.164 number (digits, no `+`), e.g. "91"."""
    digits = "".join(c for c in str(number) if c.isdigit())
    if digits[:1] in ONE_DIGIT:
        return digits[:1]
    if digits[:2] in TWO_DIGITS:
        return digits[:2]
    return digits[:3]


def describe(code):
    """'+91 (India)', or '+999' for a code without a name here."""
    name = ONE_DIGIT.get(code) or TWO_DIGITS.get(code) or SOME_THREE_DIGITS.get(code)
    return f"+{code} ({name})" if name else f"+{code}"
