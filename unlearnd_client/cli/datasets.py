from __future__ import annotations

from pathlib import Path

import click

from unlearnd_client.cli.options import Api, api_command
from unlearnd_client.cli.output import emit_json, fields, table
from unlearnd_client.schemas import Dataset


@click.group(help="Register and list datasets.")
def datasets() -> None:
    pass


@datasets.command("add", help="Register FILE (.npz arrays or .jsonl text), a built-in dataset or a file on the server.")
@click.argument("file", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", help="Its name (default: FILE's name without the suffix).")
@click.option("--builtin", type=click.Choice(["digits"]), help="A dataset the service ships instead of a file.")
@click.option("--server-path", help="An absolute path of a file already on the server (under <root>/<tenant>/).")
@api_command
def add(api: Api, file: Path | None, name: str | None, builtin: str | None, server_path: str | None) -> None:
    if sum(x is not None for x in (file, builtin, server_path)) != 1:
        raise click.UsageError("give exactly one of FILE, --builtin or --server-path")
    if file is not None:
        name = name or file.stem
    elif server_path is not None and not name:
        raise click.UsageError("--name is required with --server-path")
    show(api, api.client.datasets.add(name, file=file, builtin=builtin, server_path=server_path))


@datasets.command("list", help="Your tenant's datasets.")
@api_command
def list_(api: Api) -> None:
    rows = list(api.client.datasets.list())
    if api.json:
        emit_json(rows)
        return
    table(
        rows,
        [
            ("ID", lambda d: d.id),
            ("NAME", lambda d: d.name),
            ("FORMAT", lambda d: d.format),
            ("ROWS", lambda d: d.num_rows),
            ("CLASSES", lambda d: len(d.classes)),
            ("CREATED", lambda d: d.created_at),
        ],
    )


def show(api: Api, dataset: Dataset) -> None:
    if api.json:
        emit_json(dataset)
        return
    fields(
        [
            ("id", dataset.id),
            ("name", dataset.name),
            ("source", dataset.source),
            ("format", dataset.format),
            ("rows", dataset.num_rows),
            ("classes", dataset.classes),
            ("splits", dataset.splits),
            ("sha256", dataset.sha256),
        ]
    )
