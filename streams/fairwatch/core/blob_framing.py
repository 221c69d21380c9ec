"""The framing of the worker's binary state blobs: a magic prefix, then length-prefixed parts."""

from __future__ import annotations

import struct


def pack(magic: bytes, parts: list[bytes]) -> bytes:
    return magic + b"".join(struct.pack("<I", len(part)) + part for part in parts)


def unpack(blob: bytes, magic: bytes, expected_parts: int, what: str) -> list[bytes]:
    """The parts of a :func:`pack` blob; ValueError naming ``what`` when it is not one or is cut short."""
    if not blob.startswith(magic):
        raise ValueError(f"not a {what} blob (wrong magic)")
    parts, pos = [], len(magic)
    while pos < len(blob):
        if pos + 4 > len(blob):
            raise ValueError(f"{what} blob is cut short inside a part's length")
        (size,) = struct.unpack_from("<I", blob, pos)
        parts.append(blob[pos + 4 : pos + 4 + size])
        pos += 4 + size
    if len(parts) != expected_parts:
        raise ValueError(f"{what} blob has {len(parts)} parts, expected {expected_parts}")
    return parts
