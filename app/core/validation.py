"""Field types shared by request schemas, and the text policy they enforce.

Text policy (every rule is a 422 whose `errors[]` names the field and the offending character by
code point and Unicode name, never by echoing it):

- Forbidden everywhere: characters Python does not call printable, i.e. Unicode category C
  (Cc controls such as NUL, tab and newline; Cf invisible format characters such as the bidi
  overrides U+202A-U+202E / U+2066-U+2069, zero-width U+200B-U+200D and the BOM U+FEFF; Cs unpaired
  surrogates such as a JSON "\\ud800"; Co private use; Cn unassigned code points) and category Z
  other than the ASCII space (no-break and other Unicode spaces, U+2028 / U+2029).
- ``SafeName`` (dataset, model and API-key names: chosen by people, shown to people): normalised to
  NFC before anything else, so a composed and a decomposed "é" are the same name (for the uniqueness
  check and for ``?name=`` lookups too); 1-200 characters after normalisation; no path separators
  (``/``, ``\\``); not ``.`` or ``..``; no leading or trailing space. Letters, marks, digits,
  punctuation and symbols of any script are fine ("Modèle-日本 v2").
- ``ClientKey`` (``request_id``, ``Idempotency-Key``): 1-200 printable ASCII characters without
  spaces (U+0021-U+007E); compared byte for byte.
- ``SampleId``: 1-200 characters, the same rule as the ids of an uploaded dataset (printable, so
  nothing from category C or Z but the space); compared exactly, never normalised.
- ``PrintableText`` (the forget request's ``subject``, the audit ``action`` filter): printable, not
  normalised (the subject is only ever stored as a keyed HMAC of exactly what was sent).
"""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BeforeValidator, Field, WithJsonSchema
from pydantic_core import PydanticCustomError

NAME_MAX = 200
KEY_MAX = 200
SAMPLE_ID_MAX = 200  # workers.engine.datasets.MAX_ID_LENGTH
INT32_MAX = 2**31 - 1  # Postgres integer: versions, attempts, steps
INT64_MAX = 2**63 - 1  # Postgres bigint: audit seq

_CATEGORY_WHAT = {
    "Cc": "a control character",
    "Cf": "an invisible formatting character",
    "Cs": "an unpaired surrogate",
    "Co": "a private-use character",
    "Cn": "an unassigned code point",
    "Zl": "a line separator",
    "Zp": "a paragraph separator",
    "Zs": "a space other than U+0020",
}
_CONTROL_NAMES = {0x00: "NUL", 0x09: "TAB", 0x0A: "LINE FEED", 0x0D: "CARRIAGE RETURN", 0x1B: "ESCAPE", 0x7F: "DELETE"}


def describe_char(ch: str) -> str:
    """``U+202E RIGHT-TO-LEFT OVERRIDE``: a character named without echoing it."""
    code = ord(ch)
    name = unicodedata.name(ch, "") or _CONTROL_NAMES.get(code, "")
    return f"U+{code:04X} {name}".rstrip()


def _first_unprintable(value: str) -> tuple[int, str] | None:
    if value.isprintable():  # the common case, in C
        return None
    for i, ch in enumerate(value):
        if not ch.isprintable():
            return i, ch
    return None  # pragma: no cover


def _unprintable_error(value: str, what: str) -> PydanticCustomError | None:
    found = _first_unprintable(value)
    if found is None:
        return None
    pos, ch = found
    kind = _CATEGORY_WHAT.get(unicodedata.category(ch), "an unprintable character")
    return PydanticCustomError(
        "unsafe_character",
        "{what} must not contain {kind}: found {char} at position {position}",
        {"what": what, "kind": kind, "char": describe_char(ch), "position": pos},
    )


def _length_error(value: str, what: str, maximum: int) -> PydanticCustomError | None:
    if 1 <= len(value) <= maximum:
        return None
    return PydanticCustomError(
        "string_length",
        "{what} must be 1-{maximum} characters long, not {length}",
        {"what": what, "maximum": maximum, "length": len(value)},
    )


def check_name(value: str) -> str:
    """A SafeName in NFC, or a PydanticCustomError saying what is wrong with it."""
    if len(value) > 4 * NAME_MAX:  # no point normalising a megabyte to refuse it
        raise _length_error(value, "a name", NAME_MAX)
    value = unicodedata.normalize("NFC", value)
    error = _length_error(value, "a name", NAME_MAX) or _unprintable_error(value, "a name")
    if error:
        raise error
    for sep in ("/", "\\"):
        if sep in value:
            raise PydanticCustomError(
                "unsafe_character",
                "a name must not contain a path separator: found {char} at position {position}",
                {"char": describe_char(sep), "position": value.index(sep)},
            )
    if value in (".", ".."):
        raise PydanticCustomError("reserved_name", "a name must not be '.' or '..'")
    if value[0] == " " or value[-1] == " ":
        raise PydanticCustomError("surrounding_space", "a name must not start or end with a space")
    return value


def check_client_key(value: str) -> str:
    error = _length_error(value, "a client key", KEY_MAX)
    if error:
        raise error
    for i, ch in enumerate(value):
        if not "!" <= ch <= "~":
            raise PydanticCustomError(
                "unsafe_character",
                "a client key must be printable ASCII without spaces (U+0021-U+007E): found {char} at position "
                "{position}",
                {"char": describe_char(ch), "position": i},
            )
    return value


def check_sample_id(value: str) -> str:
    error = _length_error(value, "a sample ID", SAMPLE_ID_MAX) or _unprintable_error(value, "a sample ID")
    if error:
        raise error
    return value


def check_printable(value: str) -> str:
    error = _unprintable_error(value, "this text")
    if error:
        raise error
    return value


def to_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise PydanticCustomError("datetime_range", "the instant is out of range once converted to UTC") from None


# The JSON-schema patterns document the common part of each rule for clients and fuzzers (ECMA-262
# and Python `re` alike); the validators above are the rule. Excluded there: C0/C1 controls, DEL,
# Unicode spaces and separators, the usual invisible format characters, surrogates, private use.
_INVISIBLE = (
    r"\x00-\x1f\x7f-\xa0\u00ad\u061c\u1680\u180e\u2000-\u200f\u2028-\u202f\u205f-\u206f\u3000"
    r"\ud800-\uf8ff\ufeff\ufff9-\ufffb\ufffe\uffff"
)
_NAME_CHAR = rf"[^/\\{_INVISIBLE}]"
_NAME_PATTERN = rf"^(?!\.\.?$)(?! )(?!.* $){_NAME_CHAR}+$"

SafeName = Annotated[
    str,
    AfterValidator(check_name),
    WithJsonSchema(
        {
            "type": "string",
            "minLength": 1,
            "maxLength": NAME_MAX,
            "pattern": _NAME_PATTERN,
            "description": "1-200 characters, stored in Unicode NFC; no control, invisible-format or "
            "non-ASCII space characters, no / or \\, not . or .., no leading or trailing space.",
        }
    ),
]
ClientKey = Annotated[
    str,
    AfterValidator(check_client_key),
    WithJsonSchema(
        {
            "type": "string",
            "minLength": 1,
            "maxLength": KEY_MAX,
            "pattern": r"^[!-~]+$",
            "description": "1-200 printable ASCII characters, no spaces.",
        }
    ),
]
SampleId = Annotated[
    str,
    AfterValidator(check_sample_id),
    WithJsonSchema(
        {
            "type": "string",
            "minLength": 1,
            "maxLength": SAMPLE_ID_MAX,
            "pattern": rf"^[^{_INVISIBLE}]+$",
            "description": "A sample ID of the model's dataset (printable; compared exactly).",
        }
    ),
]
PrintableText = Annotated[str, AfterValidator(check_printable)]
_ISO_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]")
INSTANT_RULE = (
    "An ISO 8601 date-time with an explicit time zone, e.g. 2024-05-01T12:00:00Z or "
    "2024-05-01T14:00:00+02:00; a time without a zone or a number (Unix time) is a 422."
)


def check_iso_instant(value: object) -> object:
    """Only ISO 8601 text: pydantic would also read a number (or "0.5") as Unix seconds."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _ISO_DATE_TIME.match(value):
        raise PydanticCustomError("datetime_format", INSTANT_RULE)
    return value


# An instant with a time zone (naive ones are ambiguous), as UTC.
Instant = Annotated[
    AwareDatetime,
    BeforeValidator(check_iso_instant),
    AfterValidator(to_utc),
    WithJsonSchema({"type": "string", "format": "date-time", "description": INSTANT_RULE}),
]
Int32 = Annotated[int, Field(ge=0, le=INT32_MAX)]
