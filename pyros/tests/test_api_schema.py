"""The OpenAPI schema holds (issue #16): a bounded schemathesis run (CLI, at most a few minutes) against
the live API finds no server error and no answer the schema does not describe (status code, content
type, body, headers). The report is kept in test-artifacts/schemathesis.txt.

It runs as the demo astronomer, with a draft request of theirs so ids resolve; the observatory
controls answer 403 (documented) to an astronomer: they are not fuzzed as an operator, since they would
command the observatory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from pyros.demo import seed_demo
from pyrosapp.models import ScientificProgram, User

REPO = Path(__file__).resolve().parents[2]
CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,"
          "response_headers_conformance")


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_schemathesis_bounded_run_is_clean(live_server, tmp_path, settings):
    # A fuzzer is meant to go fast: the throttles (tested in common/tests/test_api_guards.py) stay out of it.
    settings.PYROS_API_THROTTLE_RATES = {"user": "100000/min", "anon": "100000/min"}
    seed = seed_demo()
    astronomer = User.objects.get(email="astronomer@pyros.local")
    token = Token.objects.create(user=astronomer)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    program = ScientificProgram.objects.filter(members=astronomer).first() or seed.program
    draft = client.post("/api/requests/", {
        "name": "Fuzz target", "program": program.pk, "draft": True, "sequences": [{
            "target": {"name": "M51", "ra_deg": 202.4696, "dec_deg": 47.1952},
            "window": {"start": "2026-12-16T17:00:00Z", "end": "2026-12-20T06:00:00Z"},
            "albums": [{"detector": seed.detector.name, "plans": [{"filter": "R", "exposure_s": 60, "count": 2}]}],
        }]}, format="json")
    assert draft.status_code == 201, draft.content

    command = [str(Path(sys.executable).parent / "st"), "run", f"{live_server.url}/api/schema/",
               "-H", f"Authorization: Token {token.key}", "--checks", CHECKS,
               "--max-examples", "12", "--workers", "2", "--seed", "16", "--generation-database", "none",
               "--no-color", "--suppress-health-check", "all", "--request-timeout", "20"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=180)
    (REPO / "test-artifacts").mkdir(exist_ok=True)
    (REPO / "test-artifacts" / "schemathesis.txt").write_text(done.stdout + done.stderr)
    assert done.returncode == 0, done.stdout[-8000:]
    assert "generated" in done.stdout and " failures" not in done.stdout.split("SUMMARY")[-1]
