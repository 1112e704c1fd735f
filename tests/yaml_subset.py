"""Read the small YAML subset render.yaml is kept to, without adding PyYAML to the project.

Block mappings and lists, plain and quoted scalars, comments: nothing else. Whatever is
outside the subset (flow collections, anchors, tags, block scalars, tabs) is refused rather
than guessed at, so a render.yaml this accepts means the same to any YAML parser.
"""

import json
import re
from collections import namedtuple

Line = namedtuple("Line", "number indent text")
KEY = re.compile(r"""([A-Za-z0-9_][A-Za-z0-9_.\-/]*|"[^"\\]*"|'[^']*'):(?: +(.*))?$""")
INT = re.compile(r"[-+]?[0-9]+$")
FLOAT = re.compile(r"[-+]?([0-9]+\.[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$")
NOT_IN_SUBSET = tuple("[]{}&*!|>%@`?,")


class YamlError(ValueError):
    pass


def parse(text):
    lines = _lines(text)
    if not lines:
        return None
    value, end = _block(lines, 0, lines[0].indent)
    if end != len(lines):
        raise YamlError(f"line {lines[end].number}: unexpected indentation")
    return value


def _lines(text):
    found = []
    for number, raw in enumerate(text.splitlines(), 1):
        if "\t" in raw:
            raise YamlError(f"line {number}: tab (YAML indents with spaces)")
        stripped = _without_comment(raw).rstrip()
        if stripped.strip():
            found.append(Line(number, len(stripped) - len(stripped.lstrip(" ")), stripped.strip()))
    return found


def _without_comment(raw):
    quote = None
    for i, char in enumerate(raw):
        if quote:
            quote = None if char == quote else quote
        elif char in "\"'" and (i == 0 or raw[i - 1] in " :-"):
            quote = char
        elif char == "#" and (i == 0 or raw[i - 1] == " "):
            return raw[:i]
    return raw


def _is_item(text):
    return text == "-" or text.startswith("- ")


def _block(lines, i, indent):
    return (_sequence if _is_item(lines[i].text) else _mapping)(lines, i, indent)


def _sequence(lines, i, indent):
    items = []
    while i < len(lines) and lines[i].indent == indent and _is_item(lines[i].text):
        rest = lines[i].text[1:].lstrip(" ")
        if not rest:
            if i + 1 >= len(lines) or lines[i + 1].indent <= indent:
                raise YamlError(f"line {lines[i].number}: empty list item")
            item, i = _block(lines, i + 1, lines[i + 1].indent)
        elif _is_item(rest) or KEY.match(rest):
            # `- key: value` opens a mapping whose keys line up with `key`.
            column = indent + len(lines[i].text) - len(rest)
            lines[i] = Line(lines[i].number, column, rest)
            item, i = _block(lines, i, column)
        else:
            item, i = _scalar(rest, lines[i].number), i + 1
        items.append(item)
    return items, i


def _mapping(lines, i, indent):
    result = {}
    while i < len(lines) and lines[i].indent == indent and not _is_item(lines[i].text):
        line = lines[i]
        match = KEY.match(line.text)
        if not match:
            raise YamlError(f"line {line.number}: expected `key: value`")
        key = _scalar(match.group(1), line.number)
        if key in result:
            raise YamlError(f"line {line.number}: duplicate key {key!r}")
        i += 1
        if match.group(2):
            result[key] = _scalar(match.group(2), line.number)
        elif i < len(lines) and (
            lines[i].indent > indent or (lines[i].indent == indent and _is_item(lines[i].text))
        ):
            result[key], i = _block(lines, i, lines[i].indent)
        else:
            result[key] = None
    if i < len(lines) and lines[i].indent > indent:
        raise YamlError(f"line {lines[i].number}: unexpected indentation")
    return result, i


def _scalar(text, number):
    if text[0] == '"':
        if len(text) < 2 or not text.endswith('"'):
            raise YamlError(f"line {number}: unterminated string")
        return json.loads(text)
    if text[0] == "'":
        if len(text) < 2 or not text.endswith("'"):
            raise YamlError(f"line {number}: unterminated string")
        return text[1:-1].replace("''", "'")
    if text.startswith(NOT_IN_SUBSET) or ": " in text or text.endswith(":"):
        raise YamlError(f"line {number}: {text!r} is outside the YAML subset this reads")
    if text in ("null", "Null", "NULL", "~"):
        return None
    if text in ("true", "True", "TRUE", "false", "False", "FALSE"):
        return text.lower() == "true"
    if INT.match(text):
        return int(text)
    if FLOAT.match(text):
        return float(text)
    return text
