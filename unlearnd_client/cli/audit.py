from __future__ import annotations

import itertools
from pathlib import Path

import click

from unlearnd_client.cli import exit_codes
from unlearnd_client.cli.options import Api, api_command, read_json_file, read_key
from unlearnd_client.cli.output import emit_json, table
from unlearnd_client.offline import verify_export_lines


@click.group(help="Search, export and verify the hash-chained audit trail.")
def audit() -> None:
    pass


def filter_options(func):
    options = [
        click.option("--model", "model_id", help="Only events of this model id."),
        click.option("--request", "forget_request_id", help="Only events of this forget request id."),
        click.option("--job", "job_id", help="Only events of this job id."),
        click.option("--action", help="Only this action (e.g. job.succeeded)."),
        click.option("--since", help="From this instant on (ISO 8601 with a time zone), inclusive."),
        click.option("--until", help="Before this instant (ISO 8601 with a time zone)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@audit.command(help="Matching events, oldest first.")
@filter_options
@click.option("--limit", type=click.IntRange(min=1), help="At most this many.")
@api_command
def search(api: Api, limit: int | None, **filters: str | None) -> None:
    events = list(itertools.islice(api.client.audit.search(**filters), limit))
    if api.json:
        emit_json(events)
        return
    table(
        events,
        [
            ("SEQ", lambda e: e.seq),
            ("OCCURRED", lambda e: e.occurred_at),
            ("ACTION", lambda e: e.action),
            ("ENTITY", lambda e: f"{e.entity_type}:{e.entity_id}"),
            ("ACTOR", lambda e: e.actor),
        ],
    )


@audit.command(
    help="Stream the trail as JSON Lines or CSV to a file (or stdout). Without filters other than "
    "--from-seq/--to-seq the export is the whole chain, which `audit verify FILE` checks offline."
)
@filter_options
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True)
@click.option("--from-seq", type=click.IntRange(min=1), help="First seq.")
@click.option("--to-seq", type=click.IntRange(min=1), help="Last seq.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write here, not to stdout.")
@api_command
def export(api: Api, fmt: str, from_seq: int | None, to_seq: int | None, output: Path | None, **filters) -> None:
    options = {"format": fmt, "from_seq": from_seq, "to_seq": to_seq, **filters}
    if output is None:
        for line in api.client.audit.export_lines(**options):
            click.echo(line)
        return
    count = api.client.audit.export(output, **options)
    click.echo(f"wrote {count} lines to {output}", err=True)


@audit.command(
    help="Re-walk the hash chain here, against its signed heads: an export FILE (from `audit export`), else a "
    "fresh export of the API's chain. The public key defaults to the API's (GET /v1/keys); pass --public-key "
    f"with one you trust. --server asks the API's own walk instead. Exit {exit_codes.CHECK_FAILED} when broken."
)
@click.argument("file", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--public-key", help="A PEM file, or the base64url key from GET /v1/keys.")
@click.option(
    "--head",
    "heads",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A signed chain head saved earlier (JSON file); repeatable.",
)
@click.option("--from-seq", type=click.IntRange(min=1), help="First seq (without FILE).")
@click.option("--to-seq", type=click.IntRange(min=1), help="Last seq (without FILE).")
@click.option("--server", is_flag=True, help="Ask GET /v1/audit-events/verify rather than walk it here.")
@api_command
def verify(
    api: Api,
    file: Path | None,
    public_key: str | None,
    heads: tuple[Path, ...],
    from_seq: int | None,
    to_seq: int | None,
    server: bool,
) -> None:
    head_docs = [read_json_file(h, "--head") for h in heads]
    if server:
        if file is not None or len(head_docs) > 1:
            raise click.UsageError("--server walks the API's chain: no FILE, and at most one --head")
        result = api.client.audit.verify(from_seq=from_seq, to_seq=to_seq, head=head_docs[0] if head_docs else None)
        ok, reason, where = result.ok, result.reason or f"{result.checked} events link", result.first_broken_seq
    else:
        key = read_key(public_key)
        if file is not None and key is not None:  # all offline: no API key needed
            with file.open(encoding="utf-8") as lines:
                result = verify_export_lines(lines, key, head_docs)
        elif file is not None:
            with file.open(encoding="utf-8") as lines:
                result = api.client.audit.verify_export(lines, public_key=key, heads=head_docs)
        else:
            result = api.client.audit.verify_export(public_key=key, heads=head_docs, from_seq=from_seq, to_seq=to_seq)
        ok, reason, where = result.ok, result.reason, result.first_broken_seq
    if api.json:
        emit_json({"ok": ok, "reason": reason, "first_broken_seq": where})
    else:
        click.echo(f"valid: {reason}" if ok else f"INVALID{'' if where is None else f' at seq {where}'}: {reason}")
    raise SystemExit(exit_codes.OK if ok else exit_codes.CHECK_FAILED)
