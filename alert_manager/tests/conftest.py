from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

# Repository root is parents[2] of this file; the shared corpus sits next to the repository.
CORPUS_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "voevents"


def corpus_entries() -> list[dict[str, Any]]:
    index = CORPUS_DIR / "index.json"
    if not index.exists():
        return []
    return json.loads(index.read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def corpus() -> list[dict[str, Any]]:
    entries = corpus_entries()
    if not entries:
        pytest.skip(f"VOEvent corpus absent: {CORPUS_DIR} (shared data not checked out)")
    return entries


@pytest.fixture(scope="session")
def corpus_bytes(corpus: list[dict[str, Any]]) -> dict[str, bytes]:
    return {entry["file"]: (CORPUS_DIR / entry["file"]).read_bytes() for entry in corpus}
