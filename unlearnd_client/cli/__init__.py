"""The client commands of ``unlearnd`` (datasets, models, forget, requests, download, audit,
certificate): they talk to a running service over HTTP and import nothing of the server."""

from __future__ import annotations

import click

from unlearnd_client.cli.audit import audit
from unlearnd_client.cli.certificate import certificate
from unlearnd_client.cli.datasets import datasets
from unlearnd_client.cli.download import download
from unlearnd_client.cli.forget import forget, requests
from unlearnd_client.cli.models import models

CLIENT_COMMANDS = (datasets, models, forget, requests, download, audit, certificate)


def add_client_commands(group: click.Group) -> None:
    for command in CLIENT_COMMANDS:
        group.add_command(command)
