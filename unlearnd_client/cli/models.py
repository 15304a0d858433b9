from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from unlearnd_client.cli import exit_codes
from unlearnd_client.cli.options import Api, api_command
from unlearnd_client.cli.output import ProgressLine, emit_json, fields, table
from unlearnd_client.schemas import Model

SPEC_HELP = "The model spec (as POST /v1/models takes it): a JSON file, - for stdin, or inline JSON."


@click.group(help="Register (train or upload), list and show models.")
def models() -> None:
    pass


def read_spec(spec: str, name: str | None, dataset: str | None) -> dict[str, Any]:
    if spec == "-":
        text = sys.stdin.read()
    elif spec.lstrip().startswith("{"):
        text = spec
    else:
        try:
            text = Path(spec).read_text(encoding="utf-8")
        except OSError as exc:
            raise click.BadParameter(str(exc), param_hint="SPEC") from None
    try:
        parsed = json.loads(text)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="SPEC") from None
    if not isinstance(parsed, dict):
        raise click.BadParameter("expected a JSON object", param_hint="SPEC")
    overrides = {"name": name, "dataset_id": dataset}
    return {**parsed, **{k: v for k, v in overrides.items() if v is not None}}


name_option = click.option("--name", help="Overrides the spec's name.")
dataset_option = click.option("--dataset", help="Overrides the spec's dataset_id.")


@models.command(help="Register a model that the service trains on a worker. " + SPEC_HELP)
@click.argument("spec")
@name_option
@dataset_option
@click.option("--wait", is_flag=True, help="Follow the training job until it ends (exit code: its outcome).")
@api_command
def register(api: Api, spec: str, name: str | None, dataset: str | None, wait: bool) -> None:
    model = api.client.models.register(read_spec(spec, name, dataset))
    if wait and model.training_job_id:
        code = follow_training(api, model.training_job_id)
        model = api.client.models.get(model.id)
        show(api, model)
        raise SystemExit(code)
    show(api, model)


@models.command(help="Register a model with your own safetensors WEIGHTS as version 1. " + SPEC_HELP)
@click.argument("spec")
@click.argument("weights", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@name_option
@dataset_option
@api_command
def upload(api: Api, spec: str, weights: Path, name: str | None, dataset: str | None) -> None:
    show(api, api.client.models.upload(read_spec(spec, name, dataset), weights))


@models.command("list", help="Your tenant's models.")
@click.option("--name", help="Only the model with this name.")
@api_command
def list_(api: Api, name: str | None) -> None:
    rows = list(api.client.models.list(name=name))
    if api.json:
        emit_json(rows)
        return
    table(
        rows,
        [
            ("ID", lambda m: m.id),
            ("NAME", lambda m: m.name),
            ("ARCHITECTURE", lambda m: m.architecture),
            ("STATE", lambda m: m.state),
            ("HEAD", lambda m: m.head_version),
            ("CREATED", lambda m: m.created_at),
        ],
    )


@models.command("show", help="A model (by id or name) and its versions.")
@click.argument("model")
@api_command
def show_model(api: Api, model: str) -> None:
    found = api.client.models.resolve(model)
    versions = list(api.client.models.versions(found.id))
    if api.json:
        emit_json({**found.model_dump(mode="json"), "versions": [v.model_dump(mode="json") for v in versions]})
        return
    show(api, found)
    click.echo()
    table(
        versions,
        [
            ("VERSION", lambda v: v.version),
            ("PARENT", lambda v: v.parent_version),
            ("STATE", lambda v: v.state),
            ("SIZE", lambda v: v.size_bytes),
            ("SHA256", lambda v: v.sha256),
            ("CREATED", lambda v: v.created_at),
        ],
    )


def show(api: Api, model: Model) -> None:
    if api.json:
        emit_json(model)
        return
    fields(
        [
            ("id", model.id),
            ("name", model.name),
            ("architecture", model.architecture),
            ("dataset", model.dataset_id),
            ("state", model.state),
            ("head version", model.head_version),
            ("parameters", model.parameter_count),
            ("training job", model.training_job_id),
        ]
    )


def follow_training(api: Api, job_id: str) -> int:
    """Polls the training job (progress on stderr); its outcome as an exit code."""
    line, last = ProgressLine(), None
    while True:
        job = api.client.jobs.get(job_id)
        p = job.progress
        text = f"[{job.state}] training  step {p.step}/{p.total_steps or '?'}  {p.fraction:.0%}"
        if text != last:
            line.show(text)
            last = text
        if job.state in ("SUCCEEDED", "FAILED", "CANCELLED"):
            line.done()
            return {"SUCCEEDED": exit_codes.OK, "FAILED": exit_codes.FAILED}.get(job.state, exit_codes.CANCELLED)
        time.sleep(1.0)
