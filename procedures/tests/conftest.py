import shutil
from pathlib import Path

import pytest

LIBRARY = Path(__file__).resolve().parent.parent / "library"

GOOD = '''
from typing import Annotated, Literal
from procedures.sdk import Param, procedure

@procedure(timeout_s=30, sky="none")
def count_up(ctx, *, n: Annotated[int, Param(minimum=1, maximum=1000)] = 3, pause_s: float = 0.05,
             mode: Literal["fast", "slow"] = "fast"):
    """Count to n.

    Parameters:
        n: how far
        pause_s (s): pause between counts
    """
    for i in range(1, n + 1):
        ctx.check()
        ctx.log.info("count %d", i)
        ctx.set_progress(i, n, f"at {i}")
        ctx.sleep(pause_s)
    ctx.publish(counted=n)
    return {"n": n}
'''


@pytest.fixture
def procedures_dir(tmp_path, settings):
    """A procedures folder with the shipped library and a small test module."""
    folder = tmp_path / "procedures"
    shutil.copytree(LIBRARY, folder)
    (folder / "testing.py").write_text(GOOD)
    settings.PYROS_PROCEDURES_DIR = folder
    return folder
