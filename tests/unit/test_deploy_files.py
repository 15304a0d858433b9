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

from app.queue import RECONCILE, celery_app, housekeeping_queue, job_queue
from app.settings import Settings, get_settings

ROOT = Path(__file__).resolve().parents[2]
GPU_WORKERS = {"worker-gpu0": "0", "worker-gpu1": "1"}  # service: the host GPU it reserves
WORKERS = (*GPU_WORKERS, "worker-cpu")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _env(service: dict) -> dict[str, str]:
    return {k: str(v) for k, v in service["environment"].items()}


def _queues(service: dict) -> list[str]:
    command = service["command"]
    return command[command.index("-Q") + 1].split(",")


def test_services_and_dependencies(compose):
    services = compose["services"]
    assert set(services) == {"postgres", "redis", "migrate", "api", *WORKERS, "housekeeping", "beat"}
    for name in ("api", *WORKERS, "housekeeping", "beat"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "deploy" not in services["housekeeping"]  # no GPU for the reconciler


def test_one_worker_per_gpu_and_one_for_the_cpu_queue(compose):
    """Each GPU worker reserves its own host GPU (the only one its container sees, so CUDA's device 0
    there) and consumes the gpu queue; the cpu worker reserves none, runs on the CPU and consumes
    the cpu queue: the queues the API sends each device class's jobs to (app.queue)."""
    services = compose["services"]
    for name, host_gpu in GPU_WORKERS.items():
        service = services[name]
        [device] = service["deploy"]["resources"]["reservations"]["devices"]
        assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"] and "count" not in device
        assert device["device_ids"] == [host_gpu]
        env = _env(service)
        assert env["CUDA_VISIBLE_DEVICES"] == "0" and env["UNLEARND_DEVICE"] in ("auto", "cuda")
        assert _queues(service) == [job_queue(env["UNLEARND_QUEUE_NAME"], "gpu")]
    reserved = [services[n]["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"] for n in GPU_WORKERS]
    assert sorted(reserved) == [["0"], ["1"]]  # no GPU is shared
    cpu = services["worker-cpu"]
    assert "deploy" not in cpu and "CUDA_VISIBLE_DEVICES" not in _env(cpu) and _env(cpu)["UNLEARND_DEVICE"] == "cpu"
    assert _queues(cpu) == [job_queue(_env(cpu)["UNLEARND_QUEUE_NAME"], "cpu")]
    for name in WORKERS:
        command = services[name]["command"]
        assert command[:4] == ["celery", "-A", "workers.celery_app", "worker"] and "--concurrency=1" in command
    names = [services[n]["command"][services[n]["command"].index("-n") + 1] for n in WORKERS]
    assert len(set(names)) == len(names)  # each says which one it is in GET /v1/workers


def test_environment_matches_the_settings(compose):
    fields = {f"UNLEARND_{name.upper()}" for name in Settings.model_fields}
    services = compose["services"]
    for name in ("migrate", "api", *WORKERS, "housekeeping", "beat"):
        env = _env(services[name])
        assert set(env) - {"CUDA_VISIBLE_DEVICES"} <= fields, set(env) - fields
        env.pop("CUDA_VISIBLE_DEVICES", None)
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
    assert services["beat"]["command"][:4] == ["celery", "-A", "workers.celery_app", "beat"]
    # what beat sends goes to the housekeeping queue (app.queue), and one worker takes nothing else
    housekeeping = services["housekeeping"]["command"]
    assert housekeeping[:4] == ["celery", "-A", "workers.celery_app", "worker"] and "--concurrency=1" in housekeeping
    queue = housekeeping_queue(_env(services["housekeeping"])["UNLEARND_QUEUE_NAME"])
    assert _queues(services["housekeeping"]) == [queue]
    assert all(queue not in _queues(services[name]) for name in WORKERS)
    assert celery_app().amqp.router.route({}, RECONCILE)["queue"].name == housekeeping_queue(get_settings().queue_name)
    artifact_dir = _env(services["api"])["UNLEARND_ARTIFACT_DIR"]
    for name in ("api", *WORKERS, "housekeeping"):  # housekeeping purges and sweeps files
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
