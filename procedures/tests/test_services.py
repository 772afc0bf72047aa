"""Loading, schemas and the queue commands (no devices, no processes)."""

from __future__ import annotations

import pytest

from majordome import state_machine as sm
from procedures import selectors, services
from procedures.models import Procedure, QueueItem
from procedures.schema import validate_params
from procedures.services import QueueError

pytestmark = pytest.mark.django_db


@pytest.fixture
def loaded(procedures_dir):
    services.procedures_reload(directory=procedures_dir)
    return procedures_dir


def test_shipped_procedures_publish_their_parameters(loaded):
    names = set(Procedure.objects.values_list("name", flat=True))
    assert {"focus_sweep", "sky_flats", "pointing_grid", "standard_stars", "filter_wheel_check",
            "dome_check", "calibration_set", "count_up"} <= names
    schema = Procedure.objects.get(name="focus_sweep").schema
    prop = schema["properties"]["exposure_s"]
    assert prop == {"type": "number", "title": "exposure s", "description": "exposure at each position",
                    "x-unit": "s", "minimum": 0.01, "maximum": 120, "default": 2.0}
    assert schema["additionalProperties"] is False
    assert Procedure.objects.get(name="count_up").schema["properties"]["mode"]["enum"] == ["fast", "slow"]
    assert Procedure.objects.get(name="sky_flats").sky == "twilight"


def test_strings_are_converted_by_type_never_evaluated(loaded):
    schema = Procedure.objects.get(name="pointing_grid").schema
    clean, errors = validate_params(schema, {"hour_angles_h": "-1, 1", "exposure_s": "2.5"})
    assert errors == [] and clean["hour_angles_h"] == [-1.0, 1.0] and clean["exposure_s"] == 2.5
    _, errors = validate_params(schema, {"exposure_s": "__import__('os').system('true')"})
    assert errors and "exposure_s" in errors[0]


def test_a_grid_without_points_or_off_the_sky_is_refused_before_it_is_queued(loaded):
    """`pyros queue add pointing_grid hour_angles_h=[]` was queued, started, then failed ('the grid is empty');
    declinations_deg=[120] went through too. A list's bounds apply to its values; min_items to its length."""
    schema = Procedure.objects.get(name="pointing_grid").schema
    assert schema["properties"]["declinations_deg"]["items"] == {"type": "number", "minimum": -90, "maximum": 90}
    _, errors = validate_params(schema, {"hour_angles_h": []})
    assert errors == ["hour_angles_h: [] should be non-empty"]
    _, errors = validate_params(schema, {"declinations_deg": [30, 120]})
    assert errors == ["declinations_deg.1: 120 is greater than the maximum of 90"]
    with pytest.raises(QueueError, match="should be non-empty"):
        services.queue_item_add(procedure="pointing_grid", params={"hour_angles_h": []}, by="test")
    assert not QueueItem.objects.exists()


def test_no_shipped_procedure_takes_an_empty_list(loaded):
    """An empty list of azimuths, exposures, filters or fields would be queued, then do nothing or fail."""
    lists = 0
    optional = {("disk_check", "paths")}  # folders checked besides the data folder: none is a valid answer
    for proc in Procedure.objects.all():
        for name, prop in proc.schema["properties"].items():
            if prop.get("type") == "array" and (proc.name, name) not in optional:
                lists += 1
                _, errors = validate_params(proc.schema, {name: []})
                assert errors == [f"{name}: [] should be non-empty"], (proc.name, name, errors)
    assert lists >= 7  # dome_check, calibration_set, sky_flats, standard_stars (2), pointing_grid (2)
    _, errors = validate_params(Procedure.objects.get(name="dome_check").schema, {"azimuths_deg": [90, 400]})
    assert errors == ["azimuths_deg.1: 400 is greater than the maximum of 360"]


def test_a_broken_module_is_shown_with_its_traceback_and_breaks_no_other(loaded):
    (loaded / "broken.py").write_text("from procedures.sdk import procedure\nimport does_not_exist\n")
    (loaded / "syntax.py").write_text("def oops(:\n")
    changes = services.procedures_detect_changes(directory=loaded)
    assert changes["added"] == ["broken", "syntax"] and changes["modified"] == []
    result = services.procedures_reload(directory=loaded)
    assert "ModuleNotFoundError" in result["errors"]["broken"] and "does_not_exist" in result["errors"]["broken"]
    assert "SyntaxError" in result["errors"]["syntax"]
    assert Procedure.objects.filter(name="count_up").exists()
    modules = {m["name"]: m for m in selectors.procedure_list()["modules"]}
    assert modules["broken"]["error"] and modules["focus"]["error"] is None


def test_detect_changes_then_reload_picks_up_an_edited_module(loaded):
    (loaded / "testing.py").write_text((loaded / "testing.py").read_text().replace("n: Annotated", "steps: Annotated")
                                       .replace("range(1, n + 1)", "range(1, steps + 1)").replace("n)", "steps)")
                                       .replace("i, n,", "i, steps,").replace("counted=n", "counted=steps")
                                       .replace('{"n": n}', '{"n": steps}'))
    assert services.procedures_detect_changes(directory=loaded)["modified"] == ["testing"]
    services.procedures_reload(directory=loaded)
    assert "steps" in Procedure.objects.get(name="count_up").schema["properties"]
    assert services.procedures_detect_changes(directory=loaded)["modified"] == []


def test_add_validates_and_refuses_with_a_message(loaded):
    with pytest.raises(QueueError, match="unknown procedure 'nope'"):
        services.queue_item_add(procedure="nope", params={})
    with pytest.raises(QueueError, match="n: 0 is less than the minimum of 1"):
        services.queue_item_add(procedure="count_up", params={"n": 0})
    with pytest.raises(QueueError, match="Additional properties"):
        services.queue_item_add(procedure="count_up", params={"bogus": 1})
    assert not QueueItem.objects.exists()
    item = services.queue_item_add(procedure="count_up", params={"n": "5"}, by="op@x")
    assert item.params == {"n": 5, "pause_s": 0.05, "mode": "fast"} and item.timeout_s == 30


def test_batch_is_all_or_nothing(loaded):
    with pytest.raises(QueueError) as err:
        services.queue_batch_add(items=[{"procedure": "count_up", "params": {"n": 2}},
                                        {"procedure": "count_up", "params": {"n": -1}},
                                        {"procedure": "focus_sweep"}])
    assert "item 2" in err.value.message and not QueueItem.objects.exists()
    items = services.queue_batch_add(items=[{"procedure": "count_up"}, {"procedure": "focus_sweep"}])
    assert [i.procedure for i in QueueItem.objects.all()] == ["count_up", "focus_sweep"] and len(items) == 2


def test_move_remove_clear_edit_requeue(loaded):
    a, b, c = (services.queue_item_add(procedure="count_up", params={"n": n}) for n in (1, 2, 3))

    def order():
        return [i["params"]["n"] for i in selectors.queue_status()["items"]]

    services.queue_item_move(uid=c.uid, pos="front")
    assert order() == [3, 1, 2]
    services.queue_item_move(uid=c.uid, after_uid=b.uid)
    assert order() == [1, 2, 3]
    services.queue_item_move(uid=a.uid, before_uid=c.uid)
    assert order() == [2, 1, 3]
    services.queue_item_move(uid=a.uid, pos=0)
    assert order() == [1, 2, 3]
    services.queue_item_edit(uid=b.uid, params={"n": 7})
    assert order() == [1, 7, 3]
    with pytest.raises(QueueError):
        services.queue_item_edit(uid=b.uid, params={"n": "x"})
    services.queue_item_remove(uid=a.uid)
    assert order() == [7, 3]
    QueueItem.objects.filter(pk=b.pk).update(status="failed")
    with pytest.raises(QueueError, match="not waiting"):
        services.queue_item_edit(uid=b.uid, params={"n": 1})
    again = services.history_requeue(uid=b.uid)
    assert again.requeued_from_id == b.pk and order() == [3, 7]
    assert services.queue_clear() == 2 and order() == []


def test_majordome_rules_for_procedures():
    base = dict(phase=sm.NIGHT, mode=sm.MANUAL, safety=sm.SAFE, executor_busy=False, has_preempt=False,
                sky=sm.SKY_DARK, in_block=False)
    assert sm.may_run_procedure(sm.ProcedureInputs(**base))[0]
    assert not sm.may_run_procedure(sm.ProcedureInputs(**{**base, "safety": sm.UNSAFE}))[0]
    assert not sm.may_run_procedure(sm.ProcedureInputs(**{**base, "mode": sm.AUTOMATIC}))[0]
    assert sm.may_run_procedure(sm.ProcedureInputs(**{**base, "mode": sm.AUTOMATIC, "in_block": True}))[0]
    assert not sm.may_run_procedure(sm.ProcedureInputs(**{**base, "phase": sm.DAY}))[0]
    assert sm.may_run_procedure(sm.ProcedureInputs(**{**base, "phase": sm.DAY, "sky": sm.SKY_NONE}))[0]
    assert not sm.may_run_procedure(sm.ProcedureInputs(**{**base, "phase": sm.NIGHT, "sky": sm.SKY_TWILIGHT}))[0]
    assert not sm.may_run_procedure(sm.ProcedureInputs(**{**base, "executor_busy": True}))[0]
    assert not sm.may_run_procedure(sm.ProcedureInputs(**{**base, "has_preempt": True}))[0]
    assert not sm.may_run_procedure(sm.ProcedureInputs(**{**base, "mode": sm.PAUSED}))[0]
