"""Issue #16: target names resolved in the request editor (offline list first, Sesame only when allowed) and
the altitude preview before submitting."""

from __future__ import annotations

import csv
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import time_machine
from django.urls import reverse

from routine_manager import targets

from .helpers import NOW, make_observatory

SESAME_XML = b"""<?xml version="1.0" encoding="UTF-8"?><Sesame><Target option="SNV"><name>GRB 221009A</name>
<Resolver name="Simbad"><jpos>19:13:03.50 +19:46:24.2</jpos><jradeg>288.2645833</jradeg><jdedeg>+19.7733889</jdedeg>
</Resolver></Target></Sesame>"""


@pytest.fixture
def no_network(monkeypatch, settings):
    settings.PYROS_NAME_RESOLVER_ONLINE = False

    def refuse(*args, **kwargs):
        raise AssertionError("the network was used")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


@pytest.mark.parametrize(("name", "expected"), [
    ("M51", "M51"), ("m 51", "M51"), ("Messier 31", "M31"), ("M031", "M31"), ("NGC 224", "M31"), ("ngc-0224", "M31"),
    ("Andromeda Galaxy", "M31"), ("whirlpool galaxy", "M51"), ("Vega", "Vega"), ("alf Lyr", "Vega"),
    ("Omega Centauri", "NGC 5139"), ("Pleiades", "M45"),
])
def test_offline_names(name, expected, no_network):
    assert targets.resolve_offline(name).name == expected


def test_the_list_is_whole_and_sane():
    with targets.BRIGHT_OBJECTS_CSV.open() as handle:
        rows = list(csv.DictReader(line for line in handle if not line.startswith("#")))
    names = {row["name"] for row in rows}
    assert {f"M{n}" for n in range(1, 111)} <= names
    assert len(rows) > 180
    for row in rows:
        assert 0 <= float(row["ra_deg"]) < 360 and -90 <= float(row["dec_deg"]) <= 90, row
    m51, vega = targets.resolve_offline("M51"), targets.resolve_offline("Vega")
    # SIMBAD: M51 13 29 52.698 +47 11 42.93; Vega 18 36 56.336 +38 47 01.28
    assert m51.ra_deg == pytest.approx(202.46958, abs=1e-3) and m51.dec_deg == pytest.approx(47.19526, abs=1e-3)
    assert vega.ra_deg == pytest.approx(279.23473, abs=1e-3) and vega.dec_deg == pytest.approx(38.78369, abs=1e-3)


def test_sesame_answer_parsed_from_a_local_server(monkeypatch):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(200)
            self.end_headers()
            self.wfile.write(SESAME_XML if "GRB" in self.path else b"<Sesame><Target></Target></Sesame>")

        def log_message(self, *args) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setattr(targets, "SESAME_URL", f"http://127.0.0.1:{server.server_address[1]}/sesame?")
        found = targets.resolve_target("GRB 221009A", online=True)
        assert (found.ra_deg, found.dec_deg, found.source) == (288.2645833, 19.7733889, "Sesame")
        assert targets.resolve_target("nothing known", online=True) is None
        assert targets.resolve_target("GRB 221009A", online=False) is None
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.django_db
def test_resolve_and_preview_in_the_editor(client, no_network):
    with time_machine.travel(NOW, tick=True):
        obs = make_observatory()
        client.force_login(obs.astronomer)
        page = client.get(reverse("routine_manager:request_create")).content.decode()
        assert "resolve-target" in page and "preview-altitude" in page and "target_tools.js" in page

        found = client.get(reverse("routine_manager:target_resolve"), {"name": "whirlpool galaxy"}).json()
        assert found == {"name": "M51", "ra_deg": 202.46958, "dec_deg": 47.19528, "kind": "galaxy",
                         "source": "PyROS list"}
        missing = client.get(reverse("routine_manager:target_resolve"), {"name": "GRB 221009A"})
        assert missing.status_code == 404 and "type its RA and Dec" in missing.json()["detail"]

        preview = client.get(reverse("routine_manager:target_altitude_preview"), {
            "name": "M51", "ra": "13:29:52.7", "dec": "+47:11:43", "start": "2026-12-16T17:00",
            "end": "2026-12-18T06:00", "min_altitude": "30"}).json()
        assert preview["limit_deg"] == 30 and preview["title"] == "M51 from OHP"
        assert 60 < preview["max_altitude_deg"] < 90  # M51 culminates at ~83° from OHP
        assert preview["times"][0].startswith("2026-12-16T17:00") and preview["nights"]
        south = client.get(reverse("routine_manager:target_altitude_preview"), {
            "ra": "83.8", "dec": "-80", "start": "2026-12-16T17:00", "end": "2026-12-17T06:00"}).json()
        assert south["max_altitude_deg"] < 0  # never rises from OHP
        assert client.get(reverse("routine_manager:target_altitude_preview"), {"ra": "x", "dec": "1"}).status_code == 400
