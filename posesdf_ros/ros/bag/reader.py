"""Reading any rosbag2 (MCAP or sqlite3, compressed or not) through `rosbags`, robustly.

- Topics are listed with their types and counts; messages come back
  deserialised for the topics asked for, in the bag's order.
- Types missing from the Jazzy typestore are registered from the
  definitions the bag carries; a type with neither is skipped with a note.
- A bag that cannot be opened whole (a recording cut short: an MCAP file
  without its summary and footer, a folder without metadata.yaml) is read
  record by record up to the break; any error while reading ends the
  messages there with a note, so what came before is still used.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

MCAP_MAGIC = b"\x89MCAP0\r\n"


@dataclass
class TopicInfo:
    msgtype: str
    count: int | None     # None when the bag's index was unreadable and the topic was found by scanning


class BagReader:
    """One bag: a rosbag2 folder, or a bare .mcap / .db3 file."""

    def __init__(self, path: Path):
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"bag {self.path} does not exist")
        self.notes: list[str] = []
        self.topics: dict[str, TopicInfo] = {}
        self._store = None
        self._decoders: dict[str, bool] = {}
        self._reader = None
        self._mcap: Path | None = None
        self._msgdefs: dict[str, object] = {}
        self._open()

    # -- opening ---------------------------------------------------------------------------------
    def _open(self) -> None:
        from rosbags.rosbag2 import Reader

        try:
            reader = Reader(self.path)
            reader.open()
        except Exception as err:  # noqa: BLE001  (rosbags raises several types for damaged bags)
            self._open_damaged(err)
            return
        self._reader = reader
        for conn in reader.connections:
            info = self.topics.get(conn.topic)
            self.topics[conn.topic] = TopicInfo(conn.msgtype, (info.count if info else 0) + conn.msgcount)
            self._msgdefs.setdefault(conn.msgtype, conn.msgdef)
        self.compression = reader.compression_mode

    def _open_damaged(self, err: Exception) -> None:
        files = ([self.path] if self.path.is_file()
                 else sorted(self.path.glob("*.mcap")) + sorted(self.path.glob("*.db3")))
        if not files:
            raise ValueError(f"cannot read bag {self.path}: {err}")
        if files[0].suffix == ".db3":
            from rosbags.rosbag2 import Reader

            self.notes.append(f"the bag's metadata is unreadable ({err}); reading {files[0].name} directly")
            try:
                reader = Reader(files[0])
                reader.open()
            except Exception as err2:  # noqa: BLE001
                raise ValueError(f"cannot read bag {self.path}: {err2}") from None
            self._reader = reader
            for conn in reader.connections:
                self.topics[conn.topic] = TopicInfo(conn.msgtype, conn.msgcount)
                self._msgdefs.setdefault(conn.msgtype, conn.msgdef)
            self.compression = None
            return
        self._mcap = files[0]
        self.compression = None
        self.notes.append(f"could not open the bag whole ({err}); scanned {files[0].name} record by record")
        for kind, item in _scan_mcap(files[0], self.notes):
            if kind == "channel":
                topic, msgtype, msgdef = item
                self.topics.setdefault(topic, TopicInfo(msgtype, 0))
                self._msgdefs.setdefault(msgtype, msgdef)
            elif kind == "message":
                self.topics[item[0]].count += 1
        if not self.topics:
            raise ValueError(f"cannot read bag {self.path}: {err}")

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def __enter__(self) -> "BagReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- topics ----------------------------------------------------------------------------------
    def require(self, topic: str, msgtypes: tuple[str, ...]) -> None:
        """ValueError naming `topic` unless the bag has it with one of `msgtypes`."""
        if topic not in self.topics:
            candidates = [t for t, i in self.topics.items() if i.msgtype in msgtypes]
            hint = f"; topics of type {' or '.join(msgtypes)}: {', '.join(candidates)}" if candidates else \
                f"; the bag has no {' or '.join(msgtypes)} topic"
            raise ValueError(f"topic {topic} is not in bag {self.path}{hint}")
        if self.topics[topic].msgtype not in msgtypes:
            raise ValueError(f"topic {topic} in bag {self.path} is {self.topics[topic].msgtype}, "
                             f"expected {' or '.join(msgtypes)}")

    def _decodable(self, msgtype: str) -> bool:
        """Whether messages of `msgtype` can be deserialised (registering the bag's definition if needed)."""
        if msgtype in self._decoders:
            return self._decoders[msgtype]
        from rosbags.typesys import Stores, get_types_from_idl, get_types_from_msg, get_typestore

        if self._store is None:
            self._store = get_typestore(Stores.ROS2_JAZZY)   # our own copy: registering must not leak
        ok = msgtype in self._store.fielddefs
        msgdef = self._msgdefs.get(msgtype)
        if not ok and msgdef is not None and getattr(msgdef, "data", ""):
            try:
                text = msgdef.data
                types = get_types_from_idl(text) if "IDL" in str(msgdef.format) else get_types_from_msg(text, msgtype)
                self._store.register(types)
                ok = msgtype in self._store.fielddefs
            except Exception as err:  # noqa: BLE001
                self.notes.append(f"type {msgtype}: the bag's definition does not parse ({err})")
        if not ok:
            topics = ", ".join(t for t, i in self.topics.items() if i.msgtype == msgtype)
            self.notes.append(f"type {msgtype} is unknown (not in the Jazzy typestore, no definition in the bag); "
                              f"its topics are skipped: {topics}")
        self._decoders[msgtype] = ok
        return ok

    # -- messages --------------------------------------------------------------------------------
    def messages(self, topics: Iterable[str]) -> Iterator[tuple[str, int, object]]:
        """(topic, bag time ns, message) of the given topics, deserialised, up to the end or the first break."""
        wanted = [t for t in topics if t in self.topics and self._decodable(self.topics[t].msgtype)]
        for topic, t_ns, raw in self.raw_messages(wanted):
            try:
                msg = self._store.deserialize_cdr(raw, self.topics[topic].msgtype)
            except Exception as err:  # noqa: BLE001  (one bad message is skipped, not fatal)
                self.notes.append(f"{topic}: a message at {t_ns * 1e-9:.3f} s does not deserialise ({err}); skipped")
                continue
            yield topic, t_ns, msg

    def raw_messages(self, topics: Iterable[str]) -> Iterator[tuple[str, int, bytes]]:
        """(topic, bag time ns, CDR bytes) of the given topics, up to the end or the first break (noted)."""
        wanted = {t for t in topics if t in self.topics}
        if not wanted:
            return
        count, last_ns = 0, None
        read = dict.fromkeys(wanted, 0)
        try:
            for topic, t_ns, raw in self._raw(wanted):
                count, last_ns = count + 1, t_ns
                read[topic] += 1
                yield topic, t_ns, raw
        except Exception as err:  # noqa: BLE001  (truncated storage: keep what was read)
            where = f"after {count} messages (last at {last_ns * 1e-9:.3f} s)" if last_ns else "before any message"
            self.notes.append(f"the bag breaks off {where}: {type(err).__name__}: {err}")
            return
        for topic, n in read.items():
            listed = self.topics[topic].count
            if listed is not None and n < listed:
                self.notes.append(f"{topic}: the bag's index lists {listed} messages but only {n} could be read")

    def _raw(self, wanted: set[str]) -> Iterator[tuple[str, int, bytes]]:
        if self._reader is not None:
            conns = [c for c in self._reader.connections if c.topic in wanted]
            for conn, t_ns, raw in self._reader.messages(connections=conns):
                yield conn.topic, t_ns, raw
            return
        for kind, item in _scan_mcap(self._mcap, []):
            if kind == "message" and item[0] in wanted:
                yield item


# --------------------------------------------------------------------------- MCAP record scanner


def _decompress(data: bytes, compression: str, size: int) -> bytes:
    if compression == "":
        return data
    if compression == "zstd":
        try:
            from compression import zstd
        except ImportError:
            from backports import zstd
        return zstd.decompress(data)
    if compression == "lz4":
        import lz4.frame

        return lz4.frame.decompress(data)
    raise ValueError(f"MCAP chunk compression {compression!r} is not supported")


def _string(buf: bytes, at: int) -> tuple[str, int]:
    (n,) = struct.unpack_from("<I", buf, at)
    return buf[at + 4:at + 4 + n].decode(), at + 4 + n


def _records(buf: bytes, at: int, end: int) -> Iterator[tuple[int, bytes]]:
    """(opcode, content) of the records in buf[at:end]; stops silently at an incomplete record."""
    while at + 9 <= end:
        op, n = struct.unpack_from("<BQ", buf, at)
        if at + 9 + n > end:
            raise EOFError(f"record 0x{op:02x} of {n} bytes runs past the end of the data")
        yield op, buf[at + 9:at + 9 + n]
        at += 9 + n


def _scan_mcap(path: Path, notes: list[str]) -> Iterator[tuple[str, tuple]]:
    """("channel", (topic, type, msgdef)) and ("message", (topic, log time ns, cdr bytes)) up to the break.

    The MCAP records (spec: mcap.dev/spec) are read in file order, chunks
    decompressed; a record cut short ends the scan with a note.
    """
    from rosbags.interfaces import MessageDefinition, MessageDefinitionFormat

    data = Path(path).read_bytes()
    if not data.startswith(MCAP_MAGIC):
        raise ValueError(f"{path} is not an MCAP file")
    schemas: dict[int, tuple[str, MessageDefinition]] = {}
    channels: dict[int, str] = {}

    def handle(op: int, rec: bytes) -> Iterator[tuple[str, tuple]]:
        if op == 0x03:                                   # Schema
            (sid,) = struct.unpack_from("<H", rec, 0)
            name, at = _string(rec, 2)
            encoding, at = _string(rec, at)
            (n,) = struct.unpack_from("<I", rec, at)
            fmt = MessageDefinitionFormat.IDL if encoding == "ros2idl" else MessageDefinitionFormat.MSG
            schemas[sid] = (name, MessageDefinition(fmt, rec[at + 4:at + 4 + n].decode()))
        elif op == 0x04:                                 # Channel
            cid, sid = struct.unpack_from("<HH", rec, 0)
            topic, _ = _string(rec, 4)
            if cid not in channels:
                channels[cid] = topic
                name, msgdef = schemas.get(sid, ("", None))
                yield "channel", (topic, name, msgdef)
        elif op == 0x05:                                 # Message
            cid, _, log_time, _ = struct.unpack_from("<HIQQ", rec, 0)
            if cid in channels:
                yield "message", (channels[cid], log_time, rec[22:])
        elif op == 0x06:                                 # Chunk
            _, _, size, _ = struct.unpack_from("<QQQI", rec, 0)
            compression, at = _string(rec, 28)
            (n,) = struct.unpack_from("<Q", rec, at)
            inner = _decompress(rec[at + 8:at + 8 + n], compression, size)
            for op2, rec2 in _records(inner, 0, len(inner)):
                yield from handle(op2, rec2)

    try:
        for op, rec in _records(data, len(MCAP_MAGIC), len(data)):
            if op == 0x02:                               # Footer: the end
                return
            yield from handle(op, rec)
    except Exception as err:  # noqa: BLE001
        notes.append(f"the MCAP file {Path(path).name} breaks off: {err}")
