"""The cache is one for every process of the app: a mark the web process sets, a worker clears."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.cache import cache

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.sqlite  # the embedded default's cache too


def test_a_mark_set_by_one_process_is_seen_and_cleared_by_another():
    cache.set("consent:test-shared", "set by the test", 60)

    another = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "shell",
            "--no-imports",
            "-c",
            "from django.core.cache import cache; "
            "print(cache.get('consent:test-shared')); cache.delete('consent:test-shared')",
        ],
        cwd=ROOT,
        env=os.environ,
        capture_output=True,
        text=True,
        check=True,
    )

    assert another.stdout.strip() == "set by the test"
    assert cache.get("consent:test-shared") is None
