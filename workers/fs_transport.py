"""`localfs://`: the embedded broker. Kombu's filesystem transport, made safe for several
worker processes on one host.

Measured against `sqla+sqlite://` (see README): ~10-20 ms per hop at 1-4 % of a core idle,
where the SQLAlchemy transport polls ~4 statements per queue per tick (40-80 % of a core idle
with 30 queues) and cannot take a polling interval at all (kombu passes it to create_engine).

Two fixes over the stock transport:
- publish: the stock `_put` creates the message file, then writes it; a consumer polling in
  between reads an empty file and the worker dies on the JSON error. Here the payload goes to
  a hidden temporary name, then is renamed into place (atomic on one filesystem).
- consume: the stock `_get` moves the file to the system temp folder, which may be another
  filesystem (a copy, then a delete: two consumers can both get the message). Here it is
  renamed into a folder beside the queue; exactly one consumer's rename succeeds.

Like every server-less transport, a message is gone from disk once fetched, so a worker killed
while holding one loses it: the run store stays the source of truth, and the sweeper re-drives
whatever was in flight.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from queue import Empty
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads

SCHEME = "localfs"


def folder_options(home: Path) -> dict[str, Any]:
    """The transport options that place every folder under `home`."""
    queue, claimed, control = home / "queue", home / "claimed", home / "control"
    for folder in (queue, claimed, control):
        folder.mkdir(parents=True, exist_ok=True)
    return {
        "data_folder_in": str(queue),
        "data_folder_out": str(queue),
        "processed_folder": str(claimed),
        "control_folder": str(control),
    }


class Channel(filesystem.Channel):
    # The kombu stubs give the base and the filesystem channel incompatible `_put` signatures.
    def _put(self, queue: str, message: Any, **kwargs: Any) -> None:  # type: ignore[override]
        # A zero-padded wall-clock prefix: `_get` takes the oldest message by name, and names
        # must keep sorting right across digit changes and reboots (a monotonic clock resets).
        name = f"{time.time_ns() // 1_000_000:015d}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        temporary = os.path.join(self.data_folder_out, f".{name}.tmp")
        try:
            with open(temporary, "wb") as f:
                f.write(str_to_bytes(dumps(message)))
            os.replace(temporary, final)
        except OSError as exc:
            raise ChannelError(f"cannot add {final!r} to the queue folder") from exc

    def _get(self, queue: str, timeout: float | None = None) -> Any:
        wanted = f"{queue}.msg"
        for filename in sorted(os.listdir(self.data_folder_in)):
            if filename.startswith(".") or filename.partition(".")[2] != wanted:
                continue
            claimed = os.path.join(self.processed_folder, f"{os.getpid()}-{filename}")
            try:
                os.rename(os.path.join(self.data_folder_in, filename), claimed)
            except FileNotFoundError:
                continue  # another consumer took it first
            try:
                with open(claimed, "rb") as f:
                    payload = f.read()
                os.remove(claimed)
            except OSError as exc:
                raise ChannelError(f"cannot read {claimed!r}") from exc
            return loads(bytes_to_str(payload))
        raise Empty()


class Transport(filesystem.Transport):
    Channel = Channel
    # No server, so no host: without this, kombu warns "No hostname was supplied" on every
    # connection of every process.
    default_connection_params: dict[str, Any] = {}


TRANSPORT_ALIASES.setdefault(SCHEME, "workers.fs_transport:Transport")
