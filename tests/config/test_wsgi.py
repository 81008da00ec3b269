import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def test_loading_the_app_freezes_what_it_made_out_of_the_garbage_collector():
    # In a process of its own: freezing this one would keep the suite's objects from collection.
    frozen = subprocess.run(
        [sys.executable, "-c", "import gc, config.wsgi; print(gc.get_freeze_count())"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    assert int(frozen) > 10_000
