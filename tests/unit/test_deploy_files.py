"""docker-compose.yml and the Dockerfile cannot run here (no Docker engine), so they are checked by
reading them: the services exist, their commands point at real entry points, and their environment
is exactly what the settings read."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from app.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _env(service: dict) -> dict[str, str]:
    return {k: str(v) for k, v in service["environment"].items()}


def test_services_and_dependencies(compose):
    services = compose["services"]
    assert set(services) == {"postgres", "redis", "migrate", "api", "worker", "beat"}
    for name in ("api", "worker", "beat"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    gpu = services["worker"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and gpu["capabilities"] == ["gpu"] and gpu["count"] == 1


def test_environment_matches_the_settings(compose):
    fields = {f"UNLEARND_{name.upper()}" for name in Settings.model_fields}
    services = compose["services"]
    for name in ("migrate", "api", "worker", "beat"):
        env = _env(services[name])
        assert set(env) <= fields, set(env) - fields
        # the secret comes from the operator's environment; substitute a value and validate
        env["UNLEARND_SUBJECT_HMAC_KEY"] = "x" * 40
        settings = Settings(**{k.removeprefix("UNLEARND_").lower(): v for k, v in env.items()})
        assert settings.env == "production"
        db = urlparse(settings.database_url)
        pg = services["postgres"]["environment"]
        assert (db.hostname, db.username, db.password, db.path.lstrip("/")) == (
            "postgres",
            pg["POSTGRES_USER"],
            pg["POSTGRES_PASSWORD"],
            pg["POSTGRES_DB"],
        )
        assert urlparse(settings.broker_url).hostname == "redis"
    secret = services["api"]["environment"]["UNLEARND_SUBJECT_HMAC_KEY"]
    assert secret.startswith("${UNLEARND_SUBJECT_HMAC_KEY:?")  # refuses to start without the secret


def test_commands_point_at_real_entry_points(compose):
    from app import cli

    services = compose["services"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["unlearnd"] == "app.cli:main"
    for name in ("migrate", "api"):
        command = services[name]["command"]
        assert command[0] == "unlearnd"
        with pytest.raises(SystemExit) as exited:  # parses (and --help exits 0) only if the subcommand exists
            cli.main([command[1], "--help"])
        assert exited.value.code == 0
    for name in ("worker", "beat"):
        command = services[name]["command"]
        assert command[:3] == ["celery", "-A", "workers.celery_app"] and command[3] == name
    worker_cmd = services["worker"]["command"]
    assert worker_cmd[worker_cmd.index("-Q") + 1] == _env(services["worker"])["UNLEARND_QUEUE_NAME"]
    assert "--concurrency=1" in services["worker"]["command"]
    artifact_dir = _env(services["api"])["UNLEARND_ARTIFACT_DIR"]
    for name in ("api", "worker"):
        assert f"artifacts:{artifact_dir}" in services[name]["volumes"]
    api_port = services["api"]["command"][services["api"]["command"].index("--port") + 1]
    assert services["api"]["ports"] == [f"{api_port}:{api_port}"]


def test_dockerfile_agrees(compose):
    text = (ROOT / "Dockerfile").read_text()
    instructions = [line.split(None, 1) for line in text.splitlines() if line and not line.startswith((" ", "#"))]
    ops = {op for op, *_ in instructions}
    assert {"FROM", "WORKDIR", "COPY", "RUN", "USER", "EXPOSE", "CMD"} <= ops
    assert re.search(r"^FROM python:3\.11", text, re.M)
    torch_version = re.search(r"ARG TORCH_VERSION=(\S+)", text).group(1)
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    torch_spec = next(d for d in deps if d.startswith("torch"))
    lower, upper = re.findall(r"[\d.]+", torch_spec)[:2]
    as_tuple = lambda v: tuple(int(p) for p in v.split("."))  # noqa: E731
    assert as_tuple(lower) <= as_tuple(torch_version) < as_tuple(upper)
    for path in ("app", "workers", "migrations", "alembic.ini", "pyproject.toml"):
        assert re.search(rf"^COPY .*\b{re.escape(path)}\b", text, re.M), path
        assert (ROOT / path).exists()
    cmd = shlex.split(next(rest for op, rest in instructions if op == "CMD").strip("[]").replace(",", " "))
    assert [c.strip('"') for c in cmd] == compose["services"]["api"]["command"]
    expose = next(rest for op, rest in instructions if op == "EXPOSE").strip()
    assert compose["services"]["api"]["ports"] == [f"{expose}:{expose}"]
    assert re.search(r"^USER (?!root)", text, re.M)
    assert "ENV UNLEARND_ARTIFACT_DIR=/data/artifacts" in text
