"""Commands the docs give an operator to run print what they say, and nothing else."""

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from consent.notes import Signer

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def documented_shell_commands() -> list[str]:
    """Return every `manage.py shell` command line the docs show."""
    return [
        line.strip()
        for page in PAGES
        for line in page.read_text().splitlines()
        if line.startswith("uv run python manage.py shell")
    ]


@pytest.mark.slow
def test_the_documented_verifier_key_command_prints_only_the_key(tmp_path):
    key = Signer.generate("consent.example.com/audit")
    (command,) = documented_shell_commands()
    argv = [sys.executable, *shlex.split(command.removeprefix("uv run python"))]

    result = subprocess.run(
        argv,
        cwd=ROOT,
        env=os.environ | {"AUDIT_SIGNING_KEY": str(key), "DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        check=True,
    )

    assert result.stdout == f"{key.verifier}\n"  # what $(...) captures is the key alone
