from __future__ import annotations

import json
from pathlib import Path

import click

from unlearnd_client.cli import exit_codes
from unlearnd_client.cli.options import Api, api_command, read_json_file, read_key
from unlearnd_client.cli.output import emit_json, fields
from unlearnd_client.offline import verify_certificate


@click.group(help="Fetch and verify signed deletion certificates.")
def certificate() -> None:
    pass


@certificate.command(
    help="The signed certificate of a SUCCEEDED forget request: a summary, the document with "
    "--json, or the document written to a file with -o (what `certificate verify FILE` reads)."
)
@click.argument("forget_request_id")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write the document here.")
@api_command
def get(api: Api, forget_request_id: str, output: Path | None) -> None:
    document = api.client.certificates.get(forget_request_id)
    if output is not None:
        output.write_text(json.dumps(document, sort_keys=True, separators=(",", ":")), encoding="utf-8")
        click.echo(f"wrote {output}", err=True)
    if api.json:
        emit_json(document)
    elif output is None:
        cert = document["certificate"]
        fields(
            [
                ("claim", cert.get("claim")),
                ("guarantee", cert.get("guarantee")),
                ("model", (cert.get("model") or {}).get("name")),
                ("versions", f"{cert['source_version']['number']} -> {cert['result_version']['number']}"),
                ("result sha256", cert["result_version"]["sha256"]),
                ("signed by key", document["signature"].get("kid")),
            ]
        )


@certificate.command(
    help="Check a certificate's Ed25519 signature here: a FILE (from `certificate get -o`) or a forget request "
    "id (fetched from the API). The public key defaults to the API's key of the certificate's kid "
    f"(GET /v1/keys); pass --public-key with one you trust. Exit {exit_codes.CHECK_FAILED} when invalid."
)
@click.argument("source", metavar="FILE|REQUEST_ID")
@click.option("--public-key", help="A PEM file, or the base64url key from GET /v1/keys.")
@api_command
def verify(api: Api, source: str, public_key: str | None) -> None:
    path = Path(source)
    document = read_json_file(path, "FILE") if path.is_file() else api.client.certificates.get(source)
    key = read_key(public_key)
    result = verify_certificate(document, key) if key is not None else api.client.certificates.verify(document)
    if api.json:
        emit_json({"ok": result.ok, "reason": result.reason, "guarantee": result.guarantee})
    else:
        click.echo(f"valid: {result.reason}" if result.ok else f"INVALID: {result.reason}")
    raise SystemExit(exit_codes.OK if result.ok else exit_codes.CHECK_FAILED)
