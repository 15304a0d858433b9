"""The text policy of app/core/validation.py: names, client keys, sample IDs, instants, page tokens."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import unicodedata
from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest
from pydantic import TypeAdapter, ValidationError

from app.core.errors import ProblemError
from app.core.pagination import decode_int_token, encode_token
from app.core.validation import (
    ClientKey,
    Instant,
    PrintableText,
    SafeName,
    SampleId,
    describe_char,
)

NAME = TypeAdapter(SafeName)
KEY = TypeAdapter(ClientKey)
SAMPLE = TypeAdapter(SampleId)
TEXT = TypeAdapter(PrintableText)
INSTANT = TypeAdapter(Instant)


def _error(adapter: TypeAdapter, value) -> dict:
    with pytest.raises(ValidationError) as info:
        adapter.validate_python(value)
    (error,) = info.value.errors()
    return error


@pytest.mark.parametrize(
    "name",
    [
        "model-1",
        "Modèle-日本 v2",
        "données_2024.npz",
        "a",
        "x" * 200,
        "Ελληνικά (test) #3",
        "emoji 🧠",
        "a..b",
        ".hidden",
    ],
)
def test_ordinary_names_are_accepted(name):
    assert NAME.validate_python(name) == unicodedata.normalize("NFC", name)


def test_names_are_normalised_to_nfc():
    decomposed = "Cafe\u0301"
    assert NAME.validate_python(decomposed) == "Café" == unicodedata.normalize("NFC", decomposed)
    assert NAME.validate_python("Café") == NAME.validate_python(decomposed)
    assert NAME.validate_python("\uff21") == "\uff21"  # NFC, not NFKC: a fullwidth A stays itself


@pytest.mark.parametrize(
    ("name", "kind", "char"),
    [
        ("a\x00b", "a control character", "U+0000 NUL"),
        ("tab\there", "a control character", "U+0009 TAB"),
        ("line\nbreak", "a control character", "U+000A LINE FEED"),
        ("del\x7f", "a control character", "U+007F DELETE"),
        ("c1\x85", "a control character", "U+0085"),
        ("evil\u202egpj.exe", "an invisible formatting character", "U+202E RIGHT-TO-LEFT OVERRIDE"),
        ("isolate\u2066x", "an invisible formatting character", "U+2066 LEFT-TO-RIGHT ISOLATE"),
        ("zero\u200bwidth", "an invisible formatting character", "U+200B ZERO WIDTH SPACE"),
        ("joiner\u200d", "an invisible formatting character", "U+200D ZERO WIDTH JOINER"),
        ("\ufeffbom", "an invisible formatting character", "U+FEFF ZERO WIDTH NO-BREAK SPACE"),
        ("soft\u00adhyphen", "an invisible formatting character", "U+00AD SOFT HYPHEN"),
        ("half\ud800", "an unpaired surrogate", "U+D800"),
        ("private\ue000", "a private-use character", "U+E000"),
        ("unassigned\U000e0fff", "an unassigned code point", "U+E0FFF"),
        ("no\u00a0break", "a space other than U+0020", "U+00A0 NO-BREAK SPACE"),
        ("ideographic\u3000space", "a space other than U+0020", "U+3000 IDEOGRAPHIC SPACE"),
        ("line\u2028sep", "a line separator", "U+2028 LINE SEPARATOR"),
    ],
)
def test_invisible_and_control_characters_are_refused_by_name(name, kind, char):
    error = _error(NAME, name)
    assert error["type"] == "unsafe_character"
    assert kind in error["msg"] and char in error["msg"], error["msg"]
    position = next(i for i, c in enumerate(name) if not c.isprintable())
    assert f"at position {position}" in error["msg"]
    # the message names the character; it never echoes it
    assert all(c.isprintable() for c in error["msg"])


@pytest.mark.parametrize("name", ["../etc/passwd", "a/b", "a\\b", "/", "\\\\server\\share"])
def test_path_separators_are_refused(name):
    error = _error(NAME, name)
    assert error["type"] == "unsafe_character" and "path separator" in error["msg"]


@pytest.mark.parametrize("name", [".", ".."])
def test_dot_names_are_refused(name):
    assert _error(NAME, name)["type"] == "reserved_name"


@pytest.mark.parametrize("name", [" leading", "trailing ", " "])
def test_surrounding_spaces_are_refused(name):
    assert _error(NAME, name)["type"] == "surrounding_space"


@pytest.mark.parametrize("name", ["", "x" * 201, "é" * 1000])
def test_name_length_is_1_to_200(name):
    error = _error(NAME, name)
    assert error["type"] == "string_length" and "1-200" in error["msg"]


def test_name_length_counts_after_normalisation():
    assert NAME.validate_python("e\u0301" * 200) == "é" * 200  # 400 code points in, 200 out


def test_names_must_be_strings():
    assert _error(NAME, 5)["type"] == "string_type"


@pytest.mark.parametrize("key", ["req-1", "a" * 200, "!~", "order:42/erasure#1"])
def test_client_keys_are_printable_ascii(key):
    assert KEY.validate_python(key) == key


@pytest.mark.parametrize(
    ("key", "char"),
    [
        ("has space", "U+0020 SPACE"),
        ("naïve", "U+00EF LATIN SMALL LETTER I WITH DIAERESIS"),
        ("rtl\u202e", "U+202E RIGHT-TO-LEFT OVERRIDE"),
        ("zw\u200b", "U+200B ZERO WIDTH SPACE"),
        ("nul\x00", "U+0000 NUL"),
        ("sur\udc00", "U+DC00"),
    ],
)
def test_client_keys_refuse_everything_else(key, char):
    error = _error(KEY, key)
    assert error["type"] == "unsafe_character" and char in error["msg"], error["msg"]


@pytest.mark.parametrize("key", ["", "k" * 201])
def test_client_key_length(key):
    assert _error(KEY, key)["type"] == "string_length"


def test_sample_ids_are_exact_and_printable():
    for ok in ("digits-0001", "user/42", "Zoë", "a b", "x" * 200):
        assert SAMPLE.validate_python(ok) == ok
    decomposed = "Zoe\u0308"
    assert SAMPLE.validate_python(decomposed) == decomposed  # not normalised: IDs are matched exactly
    for bad in ("a\x00", "a\u202e", "a\ud800", "a\u200b", "\t"):
        assert _error(SAMPLE, bad)["type"] == "unsafe_character"
    assert _error(SAMPLE, "")["type"] == "string_length"
    assert _error(SAMPLE, "x" * 201)["type"] == "string_length"


def test_printable_text():
    assert TEXT.validate_python("alice@example.com") == "alice@example.com"
    assert TEXT.validate_python("Zoe\u0308") == "Zoe\u0308"
    for bad in ("a\x00b", "a\nb", "\u202e", "\ud800"):
        assert _error(TEXT, bad)["type"] == "unsafe_character"


def test_instants_need_a_time_zone_and_come_out_in_utc():
    paris = datetime(2024, 5, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    assert INSTANT.validate_python(paris) == datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    assert INSTANT.validate_python("2024-05-01T10:00:00Z").tzinfo == UTC
    assert _error(INSTANT, "2024-05-01T10:00:00")["type"] == "timezone_aware"
    assert _error(INSTANT, "0001-01-01T00:00:00+14:00")["type"] == "datetime_range"
    assert _error(INSTANT, "9999-12-31T23:59:59-23:59")["type"] == "datetime_range"


def test_describe_char():
    assert describe_char("\u202e") == "U+202E RIGHT-TO-LEFT OVERRIDE"
    assert describe_char("\x00") == "U+0000 NUL"
    assert describe_char("\ud800") == "U+D800"
    assert describe_char("é") == "U+00E9 LATIN SMALL LETTER E WITH ACUTE"


def test_json_schema_patterns_agree_with_the_validators_on_common_cases():
    pattern = re.compile(NAME.json_schema()["pattern"])
    for good in ("model-1", "Modèle-日本 v2", "a..b"):
        assert pattern.match(good)
    for bad in ("a/b", "a\\b", "..", ".", " x", "x ", "a\x00", "a\u202e", "a\u200b", "a\u00a0b"):
        assert not pattern.match(bad), bad
    assert re.compile(KEY.json_schema()["pattern"]).match("req-1")
    assert not re.compile(SAMPLE.json_schema()["pattern"]).match("a\x00")


def _token(value) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def test_integer_page_tokens():
    assert decode_int_token(None, 1, 10) is None
    assert decode_int_token(encode_token([7]), 1, 10) == [7]
    assert decode_int_token(encode_token([1, 2]), 2, 10) == [1, 2]
    for forged in (["abc"], [{"a": 1}], [1.5], [True], [-1], [11], [2**70], [], [1, 2], None, "x"):
        with pytest.raises(ProblemError) as info:
            decode_int_token(_token(forged), 1, 10)
        assert info.value.status == 422 and "page_token" in info.value.detail
    with pytest.raises(ProblemError):
        decode_int_token("not base64 at all!", 1, 10)


def _answer_to(exc: Exception) -> httpx.Response:
    """What the API's error handlers answer when a route raises ``exc``."""
    from fastapi import FastAPI

    from app.core import handlers

    app = FastAPI()
    handlers.install(app)

    @app.get("/boom")
    async def boom():
        raise exc

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get("/boom")

    return asyncio.run(call())


def test_database_refusals_and_unparseable_bodies_are_422_problems():
    from fastapi import HTTPException
    from sqlalchemy.exc import DataError

    resp = _answer_to(DataError("SELECT 1", {}, Exception("integer out of range")))
    assert resp.status_code == 422 and resp.json()["type"] == "/problems/unstorable-value"
    assert resp.headers["content-type"].startswith("application/problem+json")

    unparseable = HTTPException(400, "There was an error parsing the body")
    unparseable.__cause__ = RecursionError("maximum recursion depth exceeded")
    body = _answer_to(unparseable).json()
    assert body["status"] == 422 and body["type"] == "/problems/validation-error"
    assert body["detail"] == "the request body could not be parsed: the JSON is nested too deeply"
    assert body["errors"][0]["field"] == "body"


def test_problems_quoting_an_unpaired_surrogate_still_render():
    from app.core.errors import Invalid

    resp = _answer_to(Invalid("unknown layer 'fc\ud800'"))
    assert resp.status_code == 422
    assert resp.json()["detail"] == "unknown layer 'fc\ud800'"  # sent as the JSON escape \ud800
    assert b"\\ud800" in resp.content
