from __future__ import annotations

from pathlib import Path

import click

from unlearnd_client.cli import exit_codes
from unlearnd_client.cli.options import Api, api_command
from unlearnd_client.cli.output import emit_json, fields
from unlearnd_client.errors import ApiError


def split_ref(ref: str) -> tuple[str, int | None]:
    """``MODEL`` or ``MODEL@VERSION``."""
    model, at, version = ref.rpartition("@")
    if not at:
        return ref, None
    if not version.isdigit() or int(version) < 1:
        raise click.BadParameter(f"expected MODEL@VERSION with a version number from 1, got {ref!r}")
    return model, int(version)


@click.command(
    help="Download a checkpoint: MODEL (id or name) at VERSION (default: the head). Its sha256 is checked "
    "against what the API reports for the version; on a mismatch no file is left and the exit code is "
    f"{exit_codes.CHECK_FAILED}."
)
@click.argument("ref", metavar="MODEL[@VERSION]")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where (default: <model>-v<version>.safetensors).",
)
@api_command
def download(api: Api, ref: str, output: Path | None) -> None:
    model_ref, version = split_ref(ref)
    model = api.client.models.resolve(model_ref)
    version = version or model.head_version
    if version is None:
        raise ApiError(409, "/problems/model-not-ready", "Model not ready", f"model {model.name} has no version yet")
    target = output or Path(f"{model.name}-v{version}.safetensors")
    done = api.client.models.download(model.id, target, version=version)
    if api.json:
        emit_json(done)
        return
    fields(
        [
            ("wrote", done.path),
            ("model", f"{model.name} ({model.id})"),
            ("version", done.version),
            ("bytes", done.size_bytes),
            ("sha256", f"{done.sha256} (matches the API's)"),
        ]
    )
