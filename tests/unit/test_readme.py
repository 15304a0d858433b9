"""The README's configuration table lists exactly the settings the code reads, and its two commands
are the Makefile's."""

from __future__ import annotations

import re
from pathlib import Path

from app.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_configuration_table_matches_settings():
    readme = (ROOT / "README.md").read_text()
    table = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`(UNLEARND_[A-Z_]+)`", table))
    assert documented == {f"UNLEARND_{name.upper()}" for name in Settings.model_fields}


def test_the_two_commands_exist():
    readme = (ROOT / "README.md").read_text()
    makefile = (ROOT / "Makefile").read_text()
    for target in ("run", "test"):
        assert f"make {target}" in readme
        assert re.search(rf"^{target}: ", makefile, re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_results_section_is_generated_from_the_committed_benchmark_files():
    from benchmarks import readme

    assert readme.main(["--check"]) == 0, "run: python -m benchmarks.readme"
