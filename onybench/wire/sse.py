"""Incremental, sans-I/O decoder for the WHATWG event stream (Server-Sent Events).

Built like h11: `SseDecoder` owns no socket and knows nothing of trio or httpx. The client
feeds it the bytes of each network read and gets back the events those bytes complete;
`feed(b"")` says the stream has ended, as `h11.Connection.receive_data(b"")` does.

It follows "event stream interpretation" in the WHATWG HTML standard
(https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation).
A feed may end anywhere: mid-line, between the CR and LF of one CRLF, or inside a multi-byte
UTF-8 character; the events never depend on where. Splitting lines on bytes and decoding
each complete line is the same as decoding the stream first, because CR and LF can never be
part of a UTF-8 sequence, valid or not.

It runs for every read of every stream, so the common case (LF-terminated `data:` lines)
costs a handful of C-level bytes operations per feed and one UTF-8 decode per line, with no
Python loop over bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

from onybench.errors import ProtocolViolation

_BOM = b"\xef\xbb\xbf"
_COLON = ord(":")
_CR = ord("\r")
_LF = ord("\n")
# Browsers ignore a `retry` value that overflows 64 bits. 19 significant digits
# (under 10**19 ms, some 300 million years) always fit, and the bound keeps int() from
# parsing a megabyte of digits from a hostile server (beyond 4,300 digits it would raise).
_RETRY_MAX_DIGITS = 19


@dataclass(frozen=True, slots=True)
class SseEvent:
    """One dispatched event.

    `data` is the event's `data` lines joined with "\\n"; `event` its type ("message" when
    the stream gave none). `id` is the last event ID in force at dispatch: it persists
    across events until a later `id` field changes it, and None means there is none (never
    set, or reset by an empty `id` field; the standard's empty string). `retry_ms` is the
    reconnection time in milliseconds last set by a valid `retry` field, None if none was.
    """

    data: str
    event: str = "message"
    id: str | None = None
    retry_ms: int | None = None


class SseLineTooLong(ProtocolViolation):
    """The server sent a line longer than the decoder's `max_line_bytes`.

    Raised as soon as the limit is passed, without waiting for the line to end, so a server
    that never ends a line cannot make the decoder buffer without bound.
    """


class SseDecoder:
    """Turns the bytes of one event stream, fed in any pieces, into `SseEvent`s.

    `max_line_bytes` caps one line (its line end excluded, buffered across feeds); a longer
    line raises `SseLineTooLong`, whatever the chunking. After `feed(b"")`, or after
    `SseLineTooLong`, the decoder has ended and any further `feed` raises `ValueError`:
    that is a bug in the caller, not a fault of the server.
    """

    __slots__ = (
        "_after_cr",
        "_at_stream_start",
        "_data_lines",
        "_ended",
        "_event_type",
        "_last_event_id",
        "_max_line_bytes",
        "_partial_line",
        "_retry_ms",
        "_truncated",
    )

    def __init__(self, max_line_bytes: int = 1 << 20) -> None:
        if max_line_bytes < 1:
            raise ValueError(f"max_line_bytes must be at least 1, got {max_line_bytes}")
        self._max_line_bytes = max_line_bytes
        # The current line's bytes whose line end has not arrived yet. At stream start it
        # holds the first one or two bytes while they could still be the start of a BOM.
        self._partial_line = bytearray()
        self._at_stream_start = True
        # The last feed ended with CR; a LF opening the next feed completes that CRLF and
        # is not a line end of its own. The CR already ended its line, so nothing waits.
        self._after_cr = False
        self._data_lines: list[str] = []
        self._event_type = ""
        self._last_event_id: str | None = None
        self._retry_ms: int | None = None
        self._ended = False
        self._truncated = False

    @property
    def ended(self) -> bool:
        """True once end of stream was fed (or `SseLineTooLong` was raised)."""
        return self._ended

    @property
    def truncated(self) -> bool:
        """True after end of stream if an unterminated event was thrown away.

        That is: `data` lines not yet dispatched by a blank line, or a partial last line
        with no line end. Always False before the end of stream.
        """
        return self._truncated

    def feed(self, data: bytes) -> list[SseEvent]:
        """Take the next bytes of the stream and return the events they complete, in order.

        An event is returned by the feed that brings its dispatching blank line, never
        later. `feed(b"")` means end of stream: it returns no event (an event still open is
        discarded, per the standard, and sets `truncated`).
        """
        if self._ended:
            raise ValueError(
                "SseDecoder.feed() called after the decoder ended "
                '(end of stream was fed with feed(b""), or SseLineTooLong was raised)'
            )
        if not data:
            self._ended = True
            self._truncated = bool(self._partial_line or self._data_lines)
            self._partial_line.clear()
            self._data_lines.clear()
            return []
        partial = self._partial_line
        if (
            # The common case: the read brought whole one-line "data: ..." events and
            # nothing is pending. Taken whole, they skip the line-by-line interpretation
            # (~3 of ~6 µs per event).
            data.endswith(b"\n\n")
            and data.startswith(b"data: ")
            and not (partial or self._data_lines or self._after_cr or self._at_stream_start)
            and _CR not in data
            and len(data) <= self._max_line_bytes
        ):
            if data.find(b"\n") == len(data) - 2:  # one event
                event_type, self._event_type = self._event_type, ""
                return [
                    SseEvent(
                        data[6:-2].decode("utf-8", "replace"),
                        event_type or "message",
                        self._last_event_id,
                        self._retry_ms,
                    )
                ]
            events = data[:-2].split(b"\n\n")
            if all(e.startswith(b"data: ") and _LF not in e for e in events):
                # Each one ends its event: the event type applies to the first only.
                event_type, self._event_type = self._event_type, ""
                last_id, retry_ms = self._last_event_id, self._retry_ms
                first = SseEvent(
                    events[0][6:].decode("utf-8", "replace"),
                    event_type or "message",
                    last_id,
                    retry_ms,
                )
                return [
                    first,
                    *(
                        SseEvent(e[6:].decode("utf-8", "replace"), "message", last_id, retry_ms)
                        for e in events[1:]
                    ),
                ]
        if self._at_stream_start:
            data = bytes(partial) + data
            if len(data) < len(_BOM) and _BOM.startswith(data):
                partial[:] = data
                return []
            self._at_stream_start = False
            partial.clear()
            if data.startswith(_BOM):
                data = data[len(_BOM) :]
        elif self._after_cr:
            self._after_cr = False
            if data.startswith(b"\n"):
                data = data[1:]
        if _CR in data:  # an int: a bare memchr, several times cheaper than b"\r" here
            # Only the last CR can pair with a LF still to come; all others are settled here.
            self._after_cr = data.endswith(b"\r")
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = data.split(b"\n")
        if len(partial) + len(data) > self._max_line_bytes:
            # Only now can a line be over the cap, so only now is each one measured.
            longest = max(len(partial) + len(lines[0]), *map(len, lines))
            if longest > self._max_line_bytes:
                self._ended = self._truncated = True
                raise SseLineTooLong(
                    f"event-stream line longer than max_line_bytes={self._max_line_bytes} "
                    f"({longest} bytes so far)"
                )
        if len(lines) == 1:
            partial += data
            return []
        if partial:
            lines[0] = bytes(partial) + lines[0]
            partial.clear()
        partial += lines.pop()
        return self._interpret(lines)

    def _interpret(self, lines: list[bytes]) -> list[SseEvent]:
        """Apply complete lines (line ends removed) to the event buffers, in order."""
        events: list[SseEvent] = []
        data_lines = self._data_lines
        event_type = self._event_type
        for line in lines:
            if not line:
                if data_lines:
                    events.append(
                        SseEvent(
                            "\n".join(data_lines),
                            event_type or "message",
                            self._last_event_id,
                            self._retry_ms,
                        )
                    )
                    data_lines.clear()
                event_type = ""
            elif line.startswith(b"data: "):  # the common case, kept off the generic path
                data_lines.append(line[6:].decode("utf-8", "replace"))
            elif line[0] != _COLON:  # a comment (": keep-alive") is skipped undecoded
                name, _, text = line.decode("utf-8", "replace").partition(":")
                if text.startswith(" "):
                    text = text[1:]
                if name == "data":  # "data" with no colon: an empty data line
                    data_lines.append(text)
                elif name == "event":
                    event_type = text
                elif name == "id":
                    if "\0" not in text:
                        self._last_event_id = text or None
                elif name == "retry":
                    retry_ms = _parse_retry_ms(text)
                    if retry_ms is not None:
                        self._retry_ms = retry_ms
        self._event_type = event_type
        return events


def _parse_retry_ms(text: str) -> int | None:
    """The reconnection time in ms a `retry` field sets, or None if it must be ignored."""
    if not (text.isascii() and text.isdigit()):
        return None
    significant = text.lstrip("0")
    if len(significant) > _RETRY_MAX_DIGITS:
        return None
    return int(significant or "0")
