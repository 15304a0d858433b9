from __future__ import annotations

import itertools
import sys
from pathlib import Path

import click

from unlearnd_client.cli import exit_codes
from unlearnd_client.cli.options import Api, api_command, csv_ints, json_object
from unlearnd_client.cli.output import ProgressLine, cell, emit_json, fields, table
from unlearnd_client.schemas import ForgetRequest

STATES = ["QUEUED", "RUNNING", "VERIFYING", "SUCCEEDED", "FAILED", "CANCELLING", "CANCELLED"]


def read_sample_ids(path: str) -> list[str]:
    """One sample ID per line (blank lines skipped); ``-`` reads stdin."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise click.BadParameter(str(exc), param_hint="--samples") from None
    ids = [line.strip() for line in text.splitlines() if line.strip()]
    if not ids:
        raise click.BadParameter(f"{path} holds no sample ID", param_hint="--samples")
    return ids


@click.command(
    help="Ask the service to make MODEL forget training samples (--samples) or whole classes (--classes). "
    "With --wait, follow it (phase and step on stderr) and exit with its outcome.\n\n" + exit_codes.HELP
)
@click.option("--model", "model_ref", required=True, help="The model's id or name.")
@click.option("--samples", metavar="FILE", help="A file of training-sample IDs, one per line (- for stdin).")
@click.option("--classes", callback=csv_ints, metavar="3,5", help="Class labels to forget, comma-separated.")
@click.option("--method", default="auto", show_default=True, help="An unlearning method (GET /v1/methods).")
@click.option("--params", callback=json_object, metavar="JSON", help="The method's params: inline JSON or @file.")
@click.option(
    "--on-failure",
    type=click.Choice(["fail", "escalate", "accept"]),
    help="When an explicit method's model fails verification (default on the server: fail).",
)
@click.option("--request-id", help="Your own id for the request (default: derived from the Idempotency-Key).")
@click.option("--idempotency-key", help="Reuse a key to repeat a submit safely (default: a new one).")
@click.option("--regulation", type=click.Choice(["gdpr", "ccpa", "other"]), help="Default on the server: gdpr.")
@click.option("--subject", help="Who asked (stored only as a keyed HMAC).")
@click.option("--wait", is_flag=True, help="Follow the request until it ends; the exit code says how.")
@click.option("--timeout", type=float, metavar="SECONDS", help="With --wait: give up after this long (exit 8).")
@api_command
def forget(
    api: Api,
    model_ref: str,
    samples: str | None,
    classes: list[int] | None,
    method: str,
    params: dict | None,
    on_failure: str | None,
    request_id: str | None,
    idempotency_key: str | None,
    regulation: str | None,
    subject: str | None,
    wait: bool,
    timeout: float | None,
) -> None:
    if (samples is None) == (classes is None):
        raise click.UsageError("give exactly one of --samples FILE or --classes 3,5")
    sample_ids = read_sample_ids(samples) if samples is not None else None
    model = api.client.models.resolve(model_ref)
    submitted = api.client.forget_requests.submit(
        model.id,
        sample_ids=sample_ids,
        class_labels=classes,
        method=method,
        params=params,
        request_id=request_id,
        regulation=regulation,
        subject=subject,
        on_verification_failure=on_failure,
        idempotency_key=idempotency_key,
    )
    if not wait:
        show(api, submitted)
        return
    if not api.json:
        click.echo(f"submitted forget request {submitted.id}; waiting", err=True)
    finish(api, submitted.id, timeout)


def finish(api: Api, forget_request_id: str, timeout: float | None) -> None:
    """Wait for the request, show its final state, exit with its outcome."""
    line = ProgressLine()
    try:
        final = api.client.wait(forget_request_id, timeout_s=timeout, on_progress=lambda fr: line.show(progress(fr)))
    finally:
        line.done()
    show(api, final)
    raise SystemExit(exit_codes.BY_OUTCOME[final.outcome])


def progress(fr: ForgetRequest) -> str:
    job = fr.job
    if job is None:
        return f"[{fr.state}]"
    p = job.progress
    total = f"/{p.total_steps}" if p.total_steps else ""
    where = f"phase {p.phase or '-'}  step {p.step}{total}  {p.fraction:.0%}"
    attempt = f" attempt {job.attempt}" if job.attempt else ""  # 0 until a worker takes it
    return f"[{job.state}] {job.method}{attempt}  {where}"


def show(api: Api, fr: ForgetRequest) -> None:
    if api.json:
        emit_json({**fr.model_dump(mode="json"), "outcome": fr.outcome.value})
        return
    job = fr.job
    pairs = [
        ("id", fr.id),
        ("request id", fr.request_id),
        ("model", fr.model_id),
        ("scope", f"{fr.scope.get('count')} {fr.scope.get('type')}"),
        ("method", fr.method),
        ("state", fr.state),
        ("outcome", fr.outcome.value),
    ]
    if job is not None:
        used = (job.metrics or {}).get("method_used")
        pairs += [
            ("job", job.id),
            ("method used", used),
            ("versions", f"{cell(job.source_version)} -> {cell(job.result_version)}"),
            ("guarantee", job.guarantee),
        ]
        if job.error:
            pairs.append(("error", job.error.get("detail") or job.error))
    if fr.replayed:
        pairs.append(("replayed", "the API answered with the request this Idempotency-Key made earlier"))
    fields(pairs)


@click.group(help="List, show, wait for and cancel forget requests.")
def requests() -> None:
    pass


@requests.command("list", help="Forget requests, oldest first.")
@click.option("--model", "model_ref", help="Only this model's (id or name).")
@click.option("--state", type=click.Choice(STATES), help="Only requests in this state.")
@click.option("--overdue", is_flag=True, help="Only requests past their due date that are not done.")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many.")
@api_command
def list_(api: Api, model_ref: str | None, state: str | None, overdue: bool, limit: int | None) -> None:
    model_id = api.client.models.resolve(model_ref).id if model_ref else None
    rows = list(
        itertools.islice(api.client.forget_requests.list(model_id=model_id, state=state, overdue=overdue), limit)
    )
    if api.json:
        emit_json(rows)
        return
    table(
        rows,
        [
            ("ID", lambda r: r.id),
            ("REQUEST ID", lambda r: r.request_id),
            ("MODEL", lambda r: r.model_id),
            ("SCOPE", lambda r: f"{r.scope.get('count')} {r.scope.get('type')}"),
            ("METHOD", lambda r: r.method),
            ("STATE", lambda r: r.state),
            ("DUE", lambda r: r.due_at),
        ],
    )


@requests.command("show", help="One forget request with its job.")
@click.argument("forget_request_id")
@api_command
def show_request(api: Api, forget_request_id: str) -> None:
    show(api, api.client.forget_requests.get(forget_request_id))


@requests.command("wait", help="Follow a forget request until it ends.\n\n" + exit_codes.HELP)
@click.argument("forget_request_id")
@click.option("--timeout", type=float, metavar="SECONDS", help="Give up after this long (exit 8).")
@api_command
def wait_request(api: Api, forget_request_id: str, timeout: float | None) -> None:
    finish(api, forget_request_id, timeout)


@requests.command("cancel", help="Cancel the request's queued or running job.")
@click.argument("forget_request_id")
@api_command
def cancel(api: Api, forget_request_id: str) -> None:
    show(api, api.client.forget_requests.cancel(forget_request_id))
