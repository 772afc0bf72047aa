"""Simulated filter wheel: FILTER_SLOT (1-based) and FILTER_NAME, a move time per slot."""

from __future__ import annotations

import asyncio

from indipydriver import Device, IPyDriver

from devices.simulators.base import (
    SharedState,
    connection_vector,
    handle_connection_switch,
    number_vector,
    publish,
    refuse_if_disconnected,
    spawn,
    text_vector,
)
from devices.sky import FILTERS


class FilterWheelDriver(IPyDriver):
    def __init__(self, shared: SharedState, name: str, filters: tuple[str, ...] = FILTERS) -> None:
        self.shared = shared
        self.cfg = shared.config
        self.slot_count = len(filters)
        self.slot = filters.index("V") + 1 if "V" in filters else 1
        self.slot_vector = number_vector(
            "FILTER_SLOT",
            "Filter Slot",
            "Filter Wheel",
            "rw",
            [("FILTER_SLOT_VALUE", "Filter", "%3.0f", 1, self.slot_count, 1, self.slot)],
            state="Ok",
        )
        self.names = text_vector(
            "FILTER_NAME",
            "Filter",
            "Filter Wheel",
            "rw",
            [(f"FILTER_SLOT_NAME_{i + 1}", f"Filter#{i + 1}", f) for i, f in enumerate(filters)],
            state="Ok",
        )
        self.connection = connection_vector()
        super().__init__(Device(name, [self.connection, self.slot_vector, self.names]))
        self.tasks: set = set()
        self.move: asyncio.Task | None = None
        self.shared.filter_name = filters[self.slot - 1]

    def _name_of(self, slot: int) -> str:
        return self.names[f"FILTER_SLOT_NAME_{slot}"]

    async def _move_to(self, slot: int) -> None:
        distance = min(abs(slot - self.slot), self.slot_count - abs(slot - self.slot))
        await asyncio.sleep(self.cfg.scaled(self.cfg.filter_move_s_per_slot * max(distance, 1)))
        self.slot = slot
        self.shared.filter_name = self._name_of(slot)
        self.slot_vector["FILTER_SLOT_VALUE"] = slot
        await publish(self.slot_vector, "Ok", f"Filter {self._name_of(slot)} in place")

    async def rxevent(self, event) -> None:
        name = event.vectorname
        if await handle_connection_switch(self.connection, event) or \
                await refuse_if_disconnected(self.connection, event):
            return
        if name == "FILTER_SLOT":
            try:
                value = event.getfloatvalue("FILTER_SLOT_VALUE")
            except (KeyError, TypeError, ValueError):
                await publish(self.slot_vector, "Alert", "Invalid filter slot")
                return
            slot = int(round(value))
            if not 1 <= slot <= self.slot_count or abs(value - slot) > 1e-6:
                await publish(self.slot_vector, "Alert", f"No filter slot {value:g} (1-{self.slot_count})")
                return
            if self.move is not None and not self.move.done():
                self.move.cancel()
            await publish(self.slot_vector, "Busy", f"Moving to filter {self._name_of(slot)}")
            self.move = spawn(self.tasks, self._move_to(slot), "filter move")
        elif name == "FILTER_NAME":
            for member, value in event.items():
                self.names[member] = value
            self.shared.filter_name = self._name_of(self.slot)
            await publish(self.names, "Ok")
