"""Messages whose AMQP properties pika cannot decode.

pika decodes a message's properties while it reads frames from the socket; a value it
cannot turn into Python (a header timestamp past the year 9999, a NaN in a header's
double) raises there, the connection drops and the message goes back to the head of the
queue, so every consumer stalls on it. A consumer connection reads frames through
``TolerantConnection`` instead: a content header pika cannot decode is decoded here, field
by field, skipping a headers table that does not decode (its length says where the next
field starts), and the properties carry ``carrot_defect``, the reason, so the worker
dead-letters that one message and records why.
"""

from __future__ import annotations

import struct
from typing import Any

import pika
from pika import data, frame, spec


class Properties(spec.BasicProperties):
    """Basic properties decoded here, with what could not be decoded."""

    carrot_defect: str | None = None


Props = spec.BasicProperties
_FIELDS = (  # the AMQP basic property list, in order
    ("content_type", Props.FLAG_CONTENT_TYPE, "shortstr"),
    ("content_encoding", Props.FLAG_CONTENT_ENCODING, "shortstr"),
    ("headers", Props.FLAG_HEADERS, "table"),
    ("delivery_mode", Props.FLAG_DELIVERY_MODE, "octet"),
    ("priority", Props.FLAG_PRIORITY, "octet"),
    ("correlation_id", Props.FLAG_CORRELATION_ID, "shortstr"),
    ("reply_to", Props.FLAG_REPLY_TO, "shortstr"),
    ("expiration", Props.FLAG_EXPIRATION, "shortstr"),
    ("message_id", Props.FLAG_MESSAGE_ID, "shortstr"),
    ("timestamp", Props.FLAG_TIMESTAMP, "uint64"),
    ("type", Props.FLAG_TYPE, "shortstr"),
    ("user_id", Props.FLAG_USER_ID, "shortstr"),
    ("app_id", Props.FLAG_APP_ID, "shortstr"),
    ("cluster_id", Props.FLAG_CLUSTER_ID, "shortstr"),
)


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def decode_properties(encoded: bytes) -> tuple[Properties, str | None]:
    """Decode basic properties field by field; return them and what could not be decoded.

    A headers table that does not decode is left empty and reported; anything else that
    does not decode (a truncated property list) raises.
    """
    props = Properties()
    (flags,) = struct.unpack_from(">H", encoded, 0)
    offset, defect = 2, None
    for name, flag, kind in _FIELDS:
        value: Any = None
        if flags & flag:
            if kind == "shortstr":
                value, offset = data.decode_short_string(encoded, offset)
            elif kind == "octet":
                value, offset = encoded[offset], offset + 1
            elif kind == "uint64":
                (value,), offset = struct.unpack_from(">Q", encoded, offset), offset + 8
            else:
                (length,) = struct.unpack_from(">I", encoded, offset)
                try:
                    value, _ = data.decode_table(encoded, offset)
                except Exception as exc:  # any value pika cannot turn into Python
                    value, defect = {}, f"its headers cannot be decoded ({_why(exc)})"
                offset += 4 + length
        setattr(props, name, value)
    return props, defect


def undecodable_header(buffer: bytes, error: BaseException) -> tuple[int, Any] | None:
    """Return (bytes used, header frame) for a content header frame pika could not decode,
    or None when the frame at the head of ``buffer`` is something else."""
    try:
        frame_type, channel, size = struct.unpack_from(">BHL", buffer, 0)
    except struct.error:
        return None
    end = spec.FRAME_HEADER_SIZE + size + spec.FRAME_END_SIZE
    if frame_type != spec.FRAME_HEADER or len(buffer) < end:
        return None
    payload = buffer[spec.FRAME_HEADER_SIZE : end - 1]
    _class_id, _weight, body_size = struct.unpack_from(">HHQ", payload)
    try:
        props, defect = decode_properties(payload[12:])
    except Exception as exc:  # not even the fields around the headers decode
        props, defect = Properties(), f"its properties cannot be decoded ({_why(exc)})"
    props.carrot_defect = defect or f"its properties cannot be decoded ({_why(error)})"
    return end, frame.Header(channel, body_size, props)


class TolerantConnection(pika.SelectConnection):
    """A connection whose undecodable content headers become defective deliveries."""

    def _read_frame(self) -> Any:
        try:
            return super()._read_frame()
        except Exception as exc:  # decoding a frame from the broker failed
            recovered = undecodable_header(self._frame_buffer, exc)
            if recovered is None:
                raise
            return recovered
