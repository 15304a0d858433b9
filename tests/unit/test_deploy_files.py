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

from app.queue import RECONCILE, celery_app, housekeeping_queue
from app.settings import Settings, get_settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _env(service: dict) -> dict[str, str]:
    return {k: str(v) for k, v in service["environment"].items()}


def test_services_and_dependencies(compose):
    services = compose["services"]
    assert set(services) == {"postgres", "redis", "migrate", "api", "worker", "housekeeping", "beat"}
    for name in ("api", "worker", "housekeeping", "beat"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    gpu = services["worker"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and gpu["capabilities"] == ["gpu"] and gpu["count"] == 1
    assert "deploy" not in services["housekeeping"]  # no GPU for the reconciler


def test_environment_matches_the_settings(compose):
    fields = {f"UNLEARND_{name.upper()}" for name in Settings.model_fields}
    services = compose["services"]
    for name in ("migrate", "api", "worker", "housekeeping", "beat"):
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
    # what beat sends goes to the housekeeping queue (app.queue), and one worker takes nothing else
    housekeeping = services["housekeeping"]["command"]
    assert housekeeping[:4] == ["celery", "-A", "workers.celery_app", "worker"] and "--concurrency=1" in housekeeping
    queue = housekeeping_queue(_env(services["housekeeping"])["UNLEARND_QUEUE_NAME"])
    assert housekeeping[housekeeping.index("-Q") + 1] == queue != worker_cmd[worker_cmd.index("-Q") + 1]
    assert celery_app().amqp.router.route({}, RECONCILE)["queue"].name == housekeeping_queue(get_settings().queue_name)
    artifact_dir = _env(services["api"])["UNLEARND_ARTIFACT_DIR"]
    for name in ("api", "worker", "housekeeping"):  # housekeeping purges and sweeps files
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


def _run_commands(text: str) -> list[list[str]]:
    """Each shell command of the Dockerfile's RUN instructions (continuations joined, split at &&)."""
    joined = re.sub(r"\\\n", " ", text)
    runs = [line.split(None, 1)[1] for line in joined.splitlines() if line.startswith("RUN ")]
    return [shlex.split(part) for run in runs for part in run.split("&&")]


def test_volume_mount_points_exist_in_the_image_owned_by_its_user(compose):
    """A new named volume takes its owner from the image's directory: a mount point the image never
    creates is root's, and the non-root API could not write the signing key there."""
    text = (ROOT / "Dockerfile").read_text()
    user = re.search(r"^USER (\S+)", text, re.M).group(1)
    commands = _run_commands(text)
    created = {p for c in commands if c[0] == "mkdir" for p in c[1:] if not p.startswith("-")}
    owned = {p for c in commands if c[0] == "chown" and c[1].split(":")[0] == user for p in c[2:]}
    named = set(compose["volumes"])
    image_services = {n: s for n, s in compose["services"].items() if s.get("image") == "unlearnd:latest"}
    mounts = {
        v.split(":")[1] for s in image_services.values() for v in s.get("volumes", []) if v.split(":")[0] in named
    }
    assert {"/data/artifacts", "/data/keys"} <= mounts
    for target in mounts:
        assert target in created and target in owned, f"{target}: not created and chowned to {user}"
    key_file = Path(_env(compose["services"]["api"])["UNLEARND_SIGNING_KEY_FILE"])
    assert "keys:" + str(key_file.parent) in compose["services"]["api"]["volumes"]
    assert f"UNLEARND_SIGNING_KEY_FILE={key_file}" in text  # the image's default agrees with compose
