"""rosbag2 writing through `rosbags`: MCAP or sqlite3, optionally zstd-compressed, typed or raw CDR messages."""
from __future__ import annotations

import shutil
from pathlib import Path

from .layout import TF_STATIC_TOPIC
from .messages import typestore

STORAGES = ("mcap", "sqlite3")
#: rosbag2 compression modes (zstd): none, per message, or the whole storage file.
COMPRESSIONS = ("none", "message", "file")
#: rosbag2 metadata version: 8 is what Jazzy's rosbag2 writes.
BAG_VERSION = 8


def _latched_qos():
    """Reliable, transient-local, depth 1: how tf2's static broadcaster offers /tf_static."""
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    never = QosTime(sec=0, nsec=0)
    return Qos(QosHistory.KEEP_LAST, 1, QosReliability.RELIABLE, QosDurability.TRANSIENT_LOCAL, never, never,
               QosLiveliness.AUTOMATIC, never, False)


class BagWriter:
    """A rosbag2 folder (overwritten if it exists). Use as a context manager.

    `write` serialises a typestore message, `write_raw` takes CDR bytes as
    rclpy serialises them; the topic's connection is made on first use.
    """

    def __init__(self, path: Path, storage: str = "mcap", compression: str = "none"):
        from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer

        if storage not in STORAGES:
            raise ValueError(f"unknown storage {storage!r}; expected one of {STORAGES}")
        if compression not in COMPRESSIONS:
            raise ValueError(f"unknown compression {compression!r}; expected one of {COMPRESSIONS}")
        self.path = Path(path)
        if self.path.exists():
            shutil.rmtree(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        self.writer = Writer(self.path, version=BAG_VERSION, storage_plugin=plugin)
        if compression != "none":
            self.writer.set_compression(getattr(CompressionMode, compression.upper()), CompressionFormat.ZSTD)
        self.connections: dict[str, object] = {}

    def __enter__(self) -> "BagWriter":
        self.writer.open()
        return self

    def __exit__(self, *exc) -> None:
        self.writer.close()

    def _connection(self, topic: str, msgtype: str):
        if topic not in self.connections:
            qos = [_latched_qos()] if topic == TF_STATIC_TOPIC else []
            self.connections[topic] = self.writer.add_connection(topic, msgtype, typestore=typestore(),
                                                                 offered_qos_profiles=qos)
        return self.connections[topic]

    def write(self, topic: str, msgtype: str, t_ns: int, msg) -> None:
        self.write_raw(topic, msgtype, t_ns, typestore().serialize_cdr(msg, msgtype))

    def write_raw(self, topic: str, msgtype: str, t_ns: int, raw: bytes) -> None:
        self.writer.write(self._connection(topic, msgtype), t_ns, raw)


def write_raw_bag(path: Path, messages: list[tuple[str, int, bytes]], types: dict[str, str],
                  storage: str = "mcap") -> None:
    """A bag of raw CDR messages (topic, receive time ns, bytes), in time order; `types`: topic -> type."""
    with BagWriter(path, storage) as bag:
        for topic, t_ns, raw in sorted(messages, key=lambda m: m[1]):
            bag.write_raw(topic, types[topic], t_ns, raw)
