"""Read an offline WandB run's .wandb file (wandb 0.31 ships no reader for it). Test helper.

Format: a 7-byte header (b":W&B", a 2-byte magic, a 1-byte version), then the LevelDB log
format: 32768-byte blocks of records, each record a 7-byte header <crc32 uint32, length
uint16, type uint8> and its data; FULL=1 is a whole record, FIRST=2 / MIDDLE=3 / LAST=4 are the
fragments of one split across blocks; a block's last < 7 bytes are zero padding. Each
reassembled payload is a serialized `wandb.proto.wandb_internal_pb2.Record`.

    records = read_records(path)
    run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    run.display_name, run.config.update[i].key / .value_json
    config_from_records(records)      # the final config as a dict (JSON-decoded values)
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

HEADER = 7
BLOCK = 32768
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def read_payloads(path) -> list[bytes]:
    """The records' bytes, fragments joined."""
    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a .wandb file (header {data[:4]!r})")
    payloads: list[bytes] = []
    pending: bytes | None = None
    offset = HEADER
    while offset + HEADER <= len(data):
        left_in_block = BLOCK - offset % BLOCK
        if left_in_block < HEADER:  # the block's trailer
            offset += left_in_block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[offset : offset + HEADER])
        if offset + HEADER + length > len(data):  # a record still being written
            break
        body = data[offset + HEADER : offset + HEADER + length]
        offset += HEADER + length
        if kind == FULL:
            payloads.append(body)
        elif kind == FIRST:
            pending = body
        elif kind == MIDDLE and pending is not None:
            pending += body
        elif kind == LAST and pending is not None:
            payloads.append(pending + body)
            pending = None
        # kind 0 with length 0: zero padding (a preallocated tail); skipped
    return payloads


def read_records(path) -> list:
    """Every record of the file as a wandb_internal_pb2.Record."""
    from wandb.proto import wandb_internal_pb2

    records = []
    for payload in read_payloads(path):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        records.append(record)
    return records


def config_from_records(records) -> dict:
    """The run's config after every update: the run record's config, then config records in order."""
    config: dict = {}
    for record in records:
        kind = record.WhichOneof("record_type")
        items = record.run.config.update if kind == "run" else record.config.update if kind == "config" else ()
        for item in items:
            key = item.key if item.key else "/".join(item.nested_key)
            config[key] = json.loads(item.value_json)
    return config
