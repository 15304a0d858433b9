"""The client and the `unlearnd` command without a server: what they import, that the server
commands kept their names and options when the CLI moved to click, and the Retry-After rule."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from app import cli
from tests.processes import ROOT
from unlearnd_client.retry import parse_retry_after

SERVER_HEAVY = {"torch", "fastapi", "starlette", "sqlalchemy", "celery", "kombu", "uvicorn", "psycopg", "workers"}


def test_the_client_and_the_cli_load_nothing_of_the_server():
    code = (
        "import sys, json, unlearnd_client, app.cli\n"
        "from unlearnd_client import Client\n"
        "Client('http://127.0.0.1:1', 'k').close()\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert not {m for m in loaded if m.split(".")[0] in SERVER_HEAVY}
    assert {m for m in loaded if m.startswith("app.")} <= {
        "app.cli",
        "app.certificates",
        "app.certificates.offline",
        "app.audit",
        "app.audit.offline",
        "app.audit.hashchain",
        "app.core",
        "app.core.hashing",
    }
    assert "httpx" in loaded and "unlearnd_client.cli.forget" in loaded  # the probe did import them


SERVER_COMMANDS = {
    "embedded": [],
    "api": ["--host", "--port", "--workers"],
    "migrate": [],
    "reconcile": [],
    "bootstrap-admin": ["--tenant", "--name", "--force"],
    "verify-certificate": ["--public-key"],
    "verify-audit-export": ["--public-key", "--head"],
}


@pytest.mark.parametrize("command", sorted(SERVER_COMMANDS))
def test_server_commands_keep_their_names_and_options(command, capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main([command, "--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"Usage: unlearnd {command} ")
    assert all(option in text for option in SERVER_COMMANDS[command]), text


def test_offline_verify_certificate_keeps_its_exit_code_and_message(tmp_path):
    cert = tmp_path / "cert.json"
    cert.write_text("{}", encoding="utf-8")
    args = [sys.executable, "-m", "app.cli", "verify-certificate", str(cert), "--public-key=-AAAA"]
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and done.stdout.startswith("INVALID: malformed document")


def test_retry_after_is_seconds_or_an_http_date():
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("5") == 5.0
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now=now) == 0.0  # already past
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
