"""What every client command shares: where the API is, the key, ``--json``, and turning the
client's exceptions into a message on stderr and an exit code."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any

import click

from unlearnd_client.cli import exit_codes
from unlearnd_client.cli.output import emit_json
from unlearnd_client.client import DEFAULT_URL, Client
from unlearnd_client.errors import ApiError, ChecksumMismatch, ServiceUnreachable, UnlearndError, WaitTimeout


class Api:
    """The options of one invocation; the HTTP client is made on first use (offline checks never need it)."""

    def __init__(self, url: str, key: str | None, as_json: bool):
        self.url = url
        self.key = key
        self.json = as_json

    @cached_property
    def client(self) -> Client:
        if not self.key:
            raise click.UsageError("no API key: set UNLEARND_KEY or pass --key")
        return Client(self.url, self.key)

    def close(self) -> None:
        if "client" in self.__dict__:
            self.client.close()


def api_command(func: Callable[..., Any]) -> Callable[..., Any]:
    """Adds --url, --key and --json to a command, which then receives an :class:`Api` first."""

    @click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts) instead of a table.")
    @click.option("--key", envvar="UNLEARND_KEY", metavar="KEY", help="API key [env: UNLEARND_KEY].")
    @click.option(
        "--url", envvar="UNLEARND_URL", default=DEFAULT_URL, show_default=True, help="API base URL [env: UNLEARND_URL]."
    )
    @functools.wraps(func)
    def wrapper(url: str, key: str | None, as_json: bool, **kwargs: Any) -> Any:
        api = Api(url, key, as_json)
        try:
            return func(api, **kwargs)
        except UnlearndError as error:
            fail(api, error)
        finally:
            api.close()

    return wrapper


def fail(api: Api, error: UnlearndError) -> None:
    """The error on stderr (its problem document with --json), then the matching exit code."""
    if isinstance(error, ApiError):
        code = exit_codes.API_ERROR
        message = json.dumps(error.to_dict()) if api.json else f"error: {error}"
    elif isinstance(error, ServiceUnreachable):
        code, message = exit_codes.API_ERROR, f"error: the API at {api.url} did not answer: {error}"
    elif isinstance(error, ChecksumMismatch):
        code, message = exit_codes.CHECK_FAILED, f"error: {error}; the partial file was deleted"
    elif isinstance(error, WaitTimeout):
        if api.json and error.last is not None:
            emit_json(error.last)
        code, message = exit_codes.TIMEOUT, f"error: gave up waiting: {error}"
    else:
        code, message = exit_codes.API_ERROR, f"error: {error}"
    click.echo(message, err=True)
    raise SystemExit(code)


def csv_ints(_ctx: click.Context, _param: click.Parameter, value: str | None) -> list[int] | None:
    """``3,5`` -> [3, 5]."""
    if value is None:
        return None
    try:
        numbers = [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter(f"expected integers separated by commas, got {value!r}") from None
    if not numbers:
        raise click.BadParameter("no class label given")
    return numbers


def json_object(_ctx: click.Context, _param: click.Parameter, value: str | None) -> dict | None:
    """Inline JSON (``{"epochs": 1}``) or ``@file.json``."""
    if value is None:
        return None
    text = value
    if value.startswith("@"):
        try:
            text = Path(value[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise click.BadParameter(str(exc)) from None
    try:
        parsed = json.loads(text)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise click.BadParameter("expected a JSON object")
    return parsed


def read_json_file(path: Path, hint: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise click.BadParameter(f"{path}: {exc}", param_hint=hint) from None


def read_key(public_key: str | None) -> str | bytes | None:
    """``--public-key``: a PEM file's bytes, or the text as given (the base64url key of GET /v1/keys)."""
    if public_key is None:
        return None
    path = Path(public_key)
    return path.read_bytes() if path.is_file() else public_key
