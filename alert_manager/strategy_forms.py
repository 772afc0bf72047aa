"""The strategy template as a form: sequences (name, window after the burst) and their exposure rows (detector,
filter, exposure, count, binning), instead of raw JSON.

Field names: ``s<S>-name``, ``s<S>-from_s``, ``s<S>-to_s`` for sequence S, and ``s<S>-p<P>-detector``,
``-filter``, ``-exposure_s``, ``-count``, ``-binning`` for its exposure row P. S and P only need to be unique
(rows added in the page take fresh numbers); the page order is the template's order. Within a sequence,
the rows of one detector make one album (in the order the detectors first appear), so the JSON saved is the
one :mod:`alert_manager.strategies` reads. What the telescope lacks (a filter "Z", a detector, a binning) is
refused by :func:`alert_manager.strategies.template_equipment_problems`, the check the backoffice uses,
and shown on the row and field concerned.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from django import forms
from django.http import QueryDict

from alert_manager.strategies import EquipmentProblem

_SEQUENCE_KEY = re.compile(r"^s(\d{1,6})-(?:name|from_s|to_s)$")
_PLAN_KEY = re.compile(r"^s(\d{1,6})-p(\d{1,6})-(?:detector|filter|exposure_s|count|binning)$")
MAX_SEQUENCES = 20
MAX_ROWS_PER_SEQUENCE = 50


class SequenceRowForm(forms.Form):
    name = forms.CharField(max_length=100, error_messages={"required": "Give the sequence a name."})
    from_s = forms.IntegerField(label="From (s after the burst)", min_value=0, max_value=30 * 86400)
    to_s = forms.IntegerField(label="To (s after the burst)", min_value=1, max_value=30 * 86400)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        start, end = cleaned.get("from_s"), cleaned.get("to_s")
        if start is not None and end is not None and end <= start:
            self.add_error("to_s", f"Must be after “From” ({start} s).")
        return cleaned


class PlanRowForm(forms.Form):
    # Text, not a closed choice: what the telescope lacks is refused by the equipment check, with its words.
    detector = forms.CharField(max_length=100, required=False)
    filter = forms.CharField(max_length=50, error_messages={"required": "Choose a filter."})
    exposure_s = forms.FloatField(label="Exposure (s)")
    count = forms.IntegerField(min_value=1, max_value=10_000)
    binning = forms.IntegerField(min_value=1, max_value=16, initial=1)

    FIELDS = ("detector", "filter", "exposure_s", "count", "binning")

    def clean_exposure_s(self) -> float:
        value = self.cleaned_data["exposure_s"]
        if not value > 0:
            raise forms.ValidationError("Must be more than 0 s.")
        return value

    def is_blank(self) -> bool:
        """A row left without exposure and count: ignored, as a way to drop a row without scripts."""
        return not any((self.data.get(self.add_prefix(name)) or "").strip() for name in ("exposure_s", "count"))


@dataclass
class PlanRow:
    index: int
    form: PlanRowForm


@dataclass
class SequenceBlock:
    index: int
    form: SequenceRowForm
    rows: list[PlanRow] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class StrategyTemplateForm:
    """Sequence blocks with their exposure rows; ``template()`` once ``is_valid()``."""

    def __init__(self, *, data: QueryDict | None = None, template: dict[str, Any] | None = None) -> None:
        self.bound = data is not None
        self.errors: list[str] = []
        self.blocks: list[SequenceBlock] = self._from_data(data) if data is not None else \
            self._from_template(template or {})
        self._where: dict[tuple[int, int, int], PlanRow] = {}
        self._albums: dict[tuple[int, int], list[PlanRow]] = {}

    # -- building ---------------------------------------------------------------------------
    @staticmethod
    def _from_template(template: dict[str, Any]) -> list[SequenceBlock]:
        blocks = []
        sequences = template.get("sequences") if isinstance(template, dict) else None
        for s, seq in enumerate(sequences if isinstance(sequences, list) else []):
            if not isinstance(seq, dict):
                continue  # an old template the checks would refuse: the page shows what can be shown
            window = seq.get("after_burst_s")
            if not isinstance(window, list | tuple) or len(window) != 2:
                window = [0, 3600]
            block = SequenceBlock(s, SequenceRowForm(prefix=f"s{s}", initial={
                "name": seq.get("name", ""), "from_s": window[0], "to_s": window[1]}))
            for album in (a for a in seq.get("albums") or [] if isinstance(a, dict)):
                for plan in (p for p in album.get("plans") or [] if isinstance(p, dict)):
                    p = len(block.rows)
                    block.rows.append(PlanRow(p, PlanRowForm(prefix=f"s{s}-p{p}", initial={
                        "detector": album.get("detector") or "", "filter": plan.get("filter", ""),
                        "exposure_s": plan.get("exposure_s"), "count": plan.get("count"),
                        "binning": plan.get("binning", 1)})))
            blocks.append(block)
        return blocks

    def _from_data(self, data: QueryDict) -> list[SequenceBlock]:
        order: list[int] = []
        rows: dict[int, list[int]] = {}
        for key in data:
            if match := _SEQUENCE_KEY.match(key):
                s = int(match.group(1))
                if s not in rows:
                    order.append(s)
                    rows[s] = []
            elif match := _PLAN_KEY.match(key):
                s, p = int(match.group(1)), int(match.group(2))
                if s not in rows:
                    order.append(s)
                    rows[s] = []
                if p not in rows[s]:
                    rows[s].append(p)
        if len(order) > MAX_SEQUENCES:
            self.errors.append(f"At most {MAX_SEQUENCES} sequences.")
            order = order[:MAX_SEQUENCES]
        blocks = []
        for s in order:
            block = SequenceBlock(s, SequenceRowForm(data, prefix=f"s{s}"))
            if len(rows[s]) > MAX_ROWS_PER_SEQUENCE:
                block.errors.append(f"At most {MAX_ROWS_PER_SEQUENCE} exposure rows per sequence.")
            block.rows = [PlanRow(p, PlanRowForm(data, prefix=f"s{s}-p{p}")) for p in rows[s][:MAX_ROWS_PER_SEQUENCE]]
            blocks.append(block)
        return blocks

    # -- validation -------------------------------------------------------------------------
    def is_valid(self) -> bool:
        if not self.bound:
            return False
        valid = not self.errors
        if not self.blocks:
            self.errors.append("Add at least one sequence: a strategy without one observes nothing.")
            valid = False
        for block in self.blocks:
            valid = block.form.is_valid() and valid
            block.rows = [row for row in block.rows if not row.form.is_blank()]
            if not block.rows:
                block.errors.append("Add at least one exposure row to this sequence.")
                valid = False
            valid = all([row.form.is_valid() for row in block.rows]) and valid and not block.errors
        return valid

    def template(self) -> dict[str, Any]:
        """The JSON the follow-up reads (call after ``is_valid()``); remembers which row each plan came from."""
        self._where, self._albums = {}, {}
        sequences = []
        for i, block in enumerate(self.blocks, start=1):
            albums: dict[str, list[PlanRow]] = {}
            for row in block.rows:
                albums.setdefault(row.form.cleaned_data["detector"].strip(), []).append(row)
            album_list = []
            for j, (detector, rows) in enumerate(albums.items(), start=1):
                self._albums[(i, j)] = rows
                plans = []
                for k, row in enumerate(rows, start=1):
                    self._where[(i, j, k)] = row
                    data = row.form.cleaned_data
                    exposure = data["exposure_s"]
                    plan = {"filter": data["filter"].strip(),
                            "exposure_s": int(exposure) if float(exposure).is_integer() else exposure,
                            "count": data["count"]}
                    if (data.get("binning") or 1) != 1:
                        plan["binning"] = data["binning"]
                    plans.append(plan)
                album_list.append({"detector": detector, "plans": plans} if detector else {"plans": plans})
            seq = block.form.cleaned_data
            sequences.append({"name": seq["name"].strip(), "after_burst_s": [seq["from_s"], seq["to_s"]],
                              "albums": album_list})
        return {"sequences": sequences}

    def add_problems(self, problems: list[EquipmentProblem], errors: list[str]) -> None:
        """Put each refusal on the row and field it is about (the others above the form)."""
        placed = False
        for problem in problems:
            rows = ([self._where[(problem.sequence, problem.album, problem.plan)]]
                    if problem.plan is not None and (problem.sequence, problem.album, problem.plan) in self._where
                    else self._albums.get((problem.sequence, problem.album), []))
            for row in rows:
                row.form.add_error(problem.field if problem.field in PlanRowForm.FIELDS else None, problem.message)
                placed = True
        if not placed:
            self.errors.extend(errors)


def filter_choices(equipment: dict[str, list[str]], detector: str, current: str) -> list[tuple[str, str]]:
    """The filter options of a row: its detector's filters, and the current value flagged when it has none."""
    names = equipment.get(detector, [])
    choices = [(name, name) for name in names]
    if current and current not in names:
        choices.append((current, f"{current} (not on this detector)"))
    return choices


def blank_row() -> PlanRow:
    """The exposure row the page adds (its numbers are placeholders the script replaces)."""
    return PlanRow("__P__", PlanRowForm(prefix="s__S__-p__P__", initial={"detector": "", "binning": 1}))


def blank_block() -> SequenceBlock:
    """The sequence the page adds: one hour from the burst, one exposure row."""
    return SequenceBlock("__S__", SequenceRowForm(prefix="s__S__", initial={"from_s": 0, "to_s": 3600}),
                         rows=[blank_row()])
