"""Comet's duplicate database on SQLite (alert_manager/comet_plugins/anydbm.py) instead of dbm.dumb."""

from __future__ import annotations

import dbm.dumb
import hashlib
import json
import subprocess
import sys
import time

import pytest

from alert_manager.comet_process import PLUGIN_DIR, comet_environment

sys.path.insert(0, str(PLUGIN_DIR))
try:
    import anydbm  # the module Comet imports (on its PYTHONPATH only)
finally:
    sys.path.remove(str(PLUGIN_DIR))


@pytest.fixture(autouse=True)
def _forget_connections():
    yield
    for conn, _lock in anydbm._connections.values():
        conn.close()
    anydbm._connections.clear()


def test_dbm_operations_comet_uses(tmp_path):
    path = str(tmp_path / "nasa.gsfc.gcn_SWIFT")
    db = anydbm.open(path, "c")
    assert "abc" not in db
    db["abc"] = str(1700000000.5)
    assert "abc" in db and b"abc" in db
    assert float(db["abc"]) == 1700000000.5  # Comet's prune does float(db[key])
    assert db.keys() == [b"abc"]
    del db["abc"]
    assert "abc" not in db and len(db) == 0
    with pytest.raises(KeyError):
        del db["abc"]
    db["kept"] = "1"
    db.close()
    anydbm._connections.pop(path + anydbm.SUFFIX)[0].close()  # as a new process would see it
    assert "kept" in anydbm.open(path, "r")


def test_read_only_open_of_a_missing_database_fails(tmp_path):
    with pytest.raises(anydbm.error):
        anydbm.open(str(tmp_path / "missing"), "r")


def test_entries_of_an_earlier_dumb_database_are_kept(tmp_path):
    path = str(tmp_path / "nasa.gsfc.gcn_SWIFT")
    old = dbm.dumb.open(path, "c")
    old["seen-before"] = "1700000000.0"
    old.close()
    db = anydbm.open(path, "c")
    assert "seen-before" in db
    assert float(db["seen-before"]) == 1700000000.0


_COMET_SCRIPT = r"""
import json, sys, time
from hashlib import sha1
from types import SimpleNamespace
from lxml import etree
from comet.utility import event_db

root = sys.argv[1]
db = event_db.Event_DB(root)
def event(i):
    raw = b'<voe:VOEvent xmlns:voe="http://www.ivoa.net/xml/VOEvent/v2.0" ivorn="ivo://nasa.gsfc.gcn/SWIFT#p%d" role="test" version="2.0"/>' % i
    return SimpleNamespace(element=etree.fromstring(raw), raw_bytes=raw)
firsts = [db.check_event(event(i)) for i in range(2000)]
started = time.perf_counter()
last = [db.check_event(event(i)) for i in range(2000, 2100)]
per_packet_ms = (time.perf_counter() - started) * 10.0
repeats = [db.check_event(event(i)) for i in (0, 1999, 2050)]
print(json.dumps({"module": event_db.anydbm.__file__, "firsts": all(firsts), "last": all(last),
                  "repeats": repeats, "per_packet_ms": per_packet_ms}))
"""


def test_comet_uses_it_and_its_cost_does_not_grow_with_the_events_seen(tmp_path):
    """In Comet's environment, its Event_DB takes this module; after 2000 packets a check still costs
    well under a millisecond (dbm.dumb: ~20 ms at that size, growing with every packet)."""
    out = subprocess.run([sys.executable, "-c", _COMET_SCRIPT, str(tmp_path / "eventdb")], env=comet_environment(),
                         capture_output=True, text=True, timeout=120, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["module"] == str(PLUGIN_DIR / "anydbm.py")
    assert result["firsts"] and result["last"]
    assert result["repeats"] == [False, False, False]  # duplicates are still recognised
    assert result["per_packet_ms"] < 2.0, result
    assert list((tmp_path / "eventdb").glob("*.sqlite3")), "one SQLite file per authority"
    assert not list((tmp_path / "eventdb").glob("*.dir")), "no dbm.dumb file"


def test_prune_forgets_old_entries(tmp_path):
    path = str(tmp_path / "auth")
    db = anydbm.open(path, "c")
    key = hashlib.sha1(b"x").hexdigest()
    db[key] = str(time.time() - 40 * 86400)
    db["fresh"] = str(time.time())
    # What Comet's Event_DB.prune does with a dbm (keys, float(value), del).
    for k in db.keys():
        if int(time.time() - float(db[k])) >= 30 * 86400:
            del db[k]
    assert db.keys() == [b"fresh"]
