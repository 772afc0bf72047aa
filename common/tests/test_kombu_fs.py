"""The embedded broker never hands a consumer a half-written message (kombu's own file-system
transport does, under load from other processes: the worker then dies on a JSON error)."""

from __future__ import annotations

import multiprocessing

from kombu import Connection

N_PRODUCERS, PER_PRODUCER = 3, 60
PAD = "x" * 400_000  # big messages widen the window in which a file is being written


def _produce(folder: str, k: int, transport: str) -> None:
    from kombu.transport import TRANSPORT_ALIASES

    TRANSPORT_ALIASES["filesystem"] = transport
    opts = {"data_folder_in": folder, "data_folder_out": folder, "control_folder": folder + "/control"}
    with Connection("filesystem://", transport_options=opts) as conn:
        queue = conn.SimpleQueue("q")
        for i in range(PER_PRODUCER):
            queue.put({"k": k, "i": i, "pad": PAD})
        queue.close()


def consume_all(folder, transport: str) -> set:
    from kombu.transport import TRANSPORT_ALIASES

    TRANSPORT_ALIASES["filesystem"] = transport
    opts = {"data_folder_in": str(folder), "data_folder_out": str(folder), "control_folder": str(folder / "control"),
            "polling_interval": 0.0}
    received = set()
    ctx = multiprocessing.get_context("spawn")
    with Connection("filesystem://", transport_options=opts) as conn:
        queue = conn.SimpleQueue("q")
        producers = [ctx.Process(target=_produce, args=(str(folder), k, transport)) for k in range(N_PRODUCERS)]
        for p in producers:
            p.start()
        try:
            while len(received) < N_PRODUCERS * PER_PRODUCER:
                message = queue.get(timeout=20)
                received.add((message.payload["k"], message.payload["i"]))
                message.ack()
        finally:
            for p in producers:
                p.join(timeout=30)
            queue.close()
    return received


def test_many_producer_processes_and_a_consumer_lose_nothing(tmp_path):
    import pyros.celery  # noqa: F401 - installs the safe transport

    assert len(consume_all(tmp_path, "common.kombu_fs:Transport")) == N_PRODUCERS * PER_PRODUCER
