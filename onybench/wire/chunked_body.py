"""Incremental decoder of an HTTP/1.1 chunked response body (RFC 9112 §7.1): sans-I/O.

The transport reads the response head with h11 and hands the body's bytes here: h11's
general-purpose body reader costs ~20 µs per SSE event, this one a few. Feed it whatever
each socket read returned; it gives back the body bytes those reads completed, so the
caller can stamp them on arrival:

    decoder = ChunkedBodyDecoder()
    body = decoder.feed(data)  # b"" until a chunk's data starts arriving
    if decoder.done:           # the last chunk and the trailer section have been read
        ...                    # decoder.unused: bytes that came after the body

Chunk extensions are ignored, trailer fields are checked for shape and dropped (as h11
does for what a client has no use for). A malformed body raises `ChunkedBodyError`.
"""

from __future__ import annotations

import re

__all__ = ["ChunkedBodyDecoder", "ChunkedBodyError"]

# chunk-size [ chunk-ext ] CRLF; up to 16 hex digits (an exabyte) so int() stays small.
# Whitespace before the extension is tolerated, as h11 and most servers' parsers do.
_SIZE_LINE = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;[^\r\n]*)?\r\n")
# A size line (with extensions) or one trailer field longer than this is not HTTP.
MAX_LINE_BYTES = 4096
MAX_TRAILER_BYTES = 64 * 1024

# Where the decoder is: which bytes it expects next.
_SIZE, _DATA, _DATA_END, _TRAILER, _DONE = range(5)

_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")
_HEX_DIGIT_BYTES = b"0123456789abcdefABCDEF"


class ChunkedBodyError(ValueError):
    """The body does not follow the chunked transfer coding; the message says where."""


class ChunkedBodyDecoder:
    """A state machine fed bytes, returning the decoded body bytes they complete."""

    __slots__ = ("_buffer", "_error", "_remaining", "_state", "_trailer_bytes", "unused")

    def __init__(self) -> None:
        self._state = _SIZE
        self._buffer = b""  # the start of a line (size, CRLF, trailer) not yet complete
        self._remaining = 0  # bytes of the current chunk's data still to come
        self._trailer_bytes = 0
        self._error: ChunkedBodyError | None = None
        self.unused = b""  # bytes received after the end of the body

    @property
    def done(self) -> bool:
        """Whether the last chunk and the trailer section have been read."""
        return self._state == _DONE

    def feed(self, data: bytes) -> bytes:
        """Decode `data`, the next bytes of the body; return the body bytes it completes.

        Bad framing raises `ChunkedBodyError`; when body bytes came before it in the
        same `data`, they are returned first and the error is raised by the next call
        (`raise_if_failed` raises it without more data).
        """
        self.raise_if_failed()
        if self._buffer:
            data = self._buffer + data
            self._buffer = b""
        elif self._state == _SIZE:
            # The common read: exactly one whole chunk, "<hex size>\r\n<data>\r\n" (one
            # SSE event as the server wrote it). Taken without the state machine, it
            # costs a third as much; anything else (extensions included) goes below.
            line_end = data.find(b"\r\n", 0, 18)
            if line_end > 0:
                digits = data[:line_end]
                if not digits.strip(_HEX_DIGIT_BYTES):
                    size = int(digits, 16)
                    if size and len(data) == line_end + size + 4 and data.endswith(b"\r\n"):
                        return data[line_end + 2 : -2]
        pieces: list[bytes] = []
        try:
            self._decode(data, pieces)
        except ChunkedBodyError as exc:
            if not pieces:
                raise
            self._error = exc
        if len(pieces) == 1:
            return pieces[0]
        return b"".join(pieces)

    def raise_if_failed(self) -> None:
        """Raise the error found after the body bytes the last `feed` returned, if any."""
        if self._error is not None:
            raise self._error

    def _decode(self, data: bytes, pieces: list[bytes]) -> None:
        pos = 0
        end = len(data)
        while pos < end:
            state = self._state
            if state == _DATA:
                take = min(self._remaining, end - pos)
                pieces.append(data[pos : pos + take])
                pos += take
                self._remaining -= take
                if not self._remaining:
                    self._state = _DATA_END
            elif state == _SIZE:
                match = _SIZE_LINE.match(data, pos)
                if match is None:
                    self._keep_line_start(data, pos, MAX_LINE_BYTES, "chunk size line")
                    break
                pos = match.end()
                size = int(match[1], 16)
                if size:
                    self._remaining = size
                    self._state = _DATA
                else:
                    self._state = _TRAILER
            elif state == _DATA_END:
                if end - pos < 2:
                    if data[pos] != 0x0D:  # b"\r"
                        raise ChunkedBodyError(_after_data_error(data[pos:]))
                    self._buffer = data[pos:]
                    break
                if data[pos] != 0x0D or data[pos + 1] != 0x0A:
                    raise ChunkedBodyError(_after_data_error(data[pos : pos + 2]))
                pos += 2
                self._state = _SIZE
            elif state == _TRAILER:
                line_end = data.find(b"\r\n", pos)
                if line_end < 0:
                    self._keep_line_start(data, pos, MAX_TRAILER_BYTES, "trailer section")
                    break
                if line_end == pos:
                    pos += 2
                    self._state = _DONE
                    continue
                self._trailer_bytes += line_end + 2 - pos
                if self._trailer_bytes > MAX_TRAILER_BYTES:
                    raise ChunkedBodyError(f"trailer section over {MAX_TRAILER_BYTES} bytes")
                field = data[pos:line_end]
                if b":" not in field or field[:1] in (b" ", b"\t", b":"):
                    raise ChunkedBodyError(f"malformed trailer field {_show(field)}")
                pos = line_end + 2
            else:
                self.unused += data[pos:]
                break

    def _keep_line_start(self, data: bytes, pos: int, limit: int, what: str) -> None:
        """Keep an incomplete line for the next feed; raise if it cannot become valid."""
        rest = data[pos:]
        if self._state == _SIZE and (b"\n" in rest or rest[0] not in _HEX_DIGITS):
            line = rest.split(b"\n", 1)[0]
            raise ChunkedBodyError(f"malformed chunk size line {_show(line)}")
        if len(rest) > limit:
            raise ChunkedBodyError(f"{what} over {limit} bytes without a line end")
        self._buffer = rest


def _after_data_error(found: bytes) -> str:
    return f"chunk data not followed by CRLF (found {_show(found)}): wrong chunk size?"


def _show(data: bytes) -> str:
    return repr(data[:60]) + ("…" if len(data) > 60 else "")
