"""The API leaves its audit events to the workers' periodic chaining unless told to chain them itself
(UNLEARND_API_CHAINS_AUDIT=true)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.processes import ROOT

PROBE = """
import threading
from app.audit import sequencer
from app.main import create_app
create_app()
sequencer.wake()  # what a commit that wrote events does
print(any(t.name == "audit-sequencer" for t in threading.enumerate()))
"""


@pytest.mark.parametrize(("setting", "chains"), [(None, "False"), ("true", "True")])
def test_an_api_process_starts_a_sequencer_thread_only_when_told_to(tmp_path, setting, chains):
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNLEARND_")}
    env["UNLEARND_DATABASE_URL"] = f"sqlite:///{tmp_path / 'probe.db'}"  # the thread waits before it connects
    if setting:
        env["UNLEARND_API_CHAINS_AUDIT"] = setting
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == chains
