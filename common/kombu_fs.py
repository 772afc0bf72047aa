"""kombu's file-system transport, made safe for several processes (the embedded broker).

kombu 5.7 writes a message file in place while a consumer may already move and read it: the
consumer then reads an empty or partial file and the worker dies on a JSON error (seen with
`make run`: beat writing while a worker polled). Here a message is written to a hidden temporary
name and renamed into the queue folder, which is atomic on POSIX, so a consumer only ever sees
whole messages. A file that still cannot be decoded is set aside with a log line instead of
killing the worker.
"""

from __future__ import annotations

import logging
import os
import uuid
from time import monotonic

from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

log = logging.getLogger("pyros.broker")


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        # A leading dot and no ".msg" suffix: consumers ignore it until the rename.
        temporary = os.path.join(self.data_folder_out, f".{uuid.uuid4().hex}.part")
        try:
            with open(temporary, "wb") as f:
                f.write(str_to_bytes(dumps(payload)))
            os.replace(temporary, final)
        except OSError as exc:
            raise filesystem.ChannelError(f"Cannot add file {final!r} to directory") from exc

    def _get(self, queue):
        while True:
            try:
                return super()._get(queue)
            except ValueError as exc:  # an undecodable message: skip it, keep consuming
                log.error("dropped an unreadable message on queue %s: %s", queue, exc)


class Transport(filesystem.Transport):
    Channel = Channel
