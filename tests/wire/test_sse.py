"""Tests for onybench.wire.sse: the WHATWG event-stream decoder.

Every stream goes through `check_decoding`, which feeds it whole, byte by byte and split in
two at every position (h11's tests/test_io.py habit), so each rule is also checked against
every chunk boundary; hypothesis adds random chunkings of generated streams.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from onybench.errors import ProtocolViolation
from onybench.wire.sse import SseDecoder, SseEvent, SseLineTooLong

BOM = b"\xef\xbb\xbf"


def decode(chunks: Iterable[bytes], max_line_bytes: int = 1 << 20) -> tuple[list[SseEvent], bool]:
    """Feed `chunks` then end of stream; return every event and the `truncated` flag."""
    decoder = SseDecoder(max_line_bytes)
    events: list[SseEvent] = []
    for chunk in chunks:
        if chunk:  # an empty feed would mean end of stream
            events += decoder.feed(chunk)
    assert not decoder.ended
    events += decoder.feed(b"")
    assert decoder.ended
    return events, decoder.truncated


def check_decoding(
    stream: bytes,
    expected: list[SseEvent],
    *,
    truncated: bool = False,
    max_line_bytes: int = 1 << 20,
) -> None:
    """`stream` decodes to `expected` however it is cut into feeds.

    Fed whole, byte by byte, and in two pieces split at every position. A stream that ends
    cleanly is also fed with the start of another line behind it: that must not change the
    events already complete, only mark the stream truncated.
    """
    chunkings = [[stream], [stream[i : i + 1] for i in range(len(stream))]]
    chunkings += [[stream[:i], stream[i:]] for i in range(1, len(stream))]
    for chunks in chunkings:
        assert decode(chunks, max_line_bytes) == (expected, truncated), chunks
    if not truncated:
        assert decode([stream, b"data: more"], max_line_bytes) == (expected, True)


# Line ends


@pytest.mark.parametrize("line_end", [b"\n", b"\r\n", b"\r"])
def test_lf_crlf_and_cr_each_end_a_line(line_end: bytes) -> None:
    stream = b"data: a" + line_end + b"data: b" + line_end + line_end
    check_decoding(stream, [SseEvent("a\nb")])


def test_line_ends_may_be_mixed_within_one_stream() -> None:
    check_decoding(b"data: a\r\ndata: b\rdata: c\n\r\n", [SseEvent("a\nb\nc")])


def test_crlf_split_between_cr_and_lf_is_one_line_end() -> None:
    decoder = SseDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"\ndata: b\n") == []  # the LF completes the CRLF: not a blank line
    assert decoder.feed(b"\n") == [SseEvent("a\nb")]
    check_decoding(b"data: a\r\n\r\n", [SseEvent("a")])


def test_cr_then_cr_across_feeds_is_two_line_ends() -> None:
    decoder = SseDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"\r") == [SseEvent("a")]


def test_cr_at_end_of_feed_dispatches_without_waiting_for_the_next_feed() -> None:
    decoder = SseDecoder()
    assert decoder.feed(b"data: a\r\r") == [SseEvent("a")]
    assert decoder.feed(b"\n") == []  # completes the CRLF begun by the last CR
    assert decoder.feed(b"") == []
    assert decoder.truncated is False


def test_event_is_returned_by_the_feed_that_brings_its_blank_line() -> None:
    decoder = SseDecoder()
    assert decoder.feed(b"data: a\n") == []
    events = decoder.feed(b"\ndata: b\n\ndata: c\n\n")
    assert events == [SseEvent("a"), SseEvent("b"), SseEvent("c")]
    assert decoder.feed(b"") == []


# Encoding


def test_multibyte_character_split_across_feeds() -> None:
    text = "é€😀"  # 2-, 3- and 4-byte UTF-8 sequences
    check_decoding(f"data: {text}\n\n".encode(), [SseEvent(text)])


def test_invalid_utf8_is_decoded_with_replacement_characters() -> None:
    # \xff can never start a sequence; \xe2\x82 is a 3-byte sequence cut short by the LF.
    check_decoding(b"data: a\xffb\xe2\x82\n\n", [SseEvent("a\ufffdb\ufffd")])


def test_bom_is_stripped_only_at_stream_start() -> None:
    # The second BOM stays in the line, making "\ufeffdata" an unknown field name.
    check_decoding(BOM + b"data: a\n\n" + BOM + b"data: b\n\n", [SseEvent("a")])


def test_incomplete_bom_at_stream_start_is_not_stripped() -> None:
    check_decoding(b"\xef\xbbdata: a\n\n", [])


def test_stream_of_only_part_of_a_bom_is_truncated() -> None:
    check_decoding(b"\xef\xbb", [], truncated=True)


def test_stream_of_only_a_bom_is_empty_and_not_truncated() -> None:
    check_decoding(BOM, [])


# Fields


def test_comment_lines_are_ignored() -> None:
    stream = b": keep-alive\ndata: a\n: ping\n:\n:data: b\ndata: c\n\n: ping\n\n"
    check_decoding(stream, [SseEvent("a\nc")])


@pytest.mark.parametrize(
    ("line", "data"),
    [
        (b"data:a", "a"),
        (b"data: a", "a"),
        (b"data:  a", " a"),
        (b"data: a ", "a "),
        (b"data:", ""),
        (b"data: ", ""),
        (b"data: a: b", "a: b"),
    ],
)
def test_exactly_one_space_after_the_colon_is_removed(line: bytes, data: str) -> None:
    check_decoding(line + b"\n\n", [SseEvent(data)])


def test_line_without_colon_is_a_field_name_with_empty_value() -> None:
    check_decoding(b"data\n\n", [SseEvent("")])
    check_decoding(b"data\ndata\nevent\n\n", [SseEvent("\n", event="message")])


def test_data_lines_are_joined_with_newline_and_the_last_newline_is_removed() -> None:
    check_decoding(b"data: a\ndata:\ndata: b\n\n", [SseEvent("a\n\nb")])


def test_event_field_sets_the_type_of_the_next_event_only() -> None:
    check_decoding(
        b"event: delta\ndata: a\n\ndata: b\n\n",
        [SseEvent("a", event="delta"), SseEvent("b", event="message")],
    )


def test_empty_event_field_means_message() -> None:
    check_decoding(b"event: delta\nevent:\ndata: a\n\n", [SseEvent("a", event="message")])


def test_blank_line_with_empty_data_buffer_dispatches_nothing_and_resets_event_type() -> None:
    check_decoding(b"event: delta\n\n\n\ndata: a\n\n", [SseEvent("a", event="message")])


def test_id_stays_in_force_for_later_events_until_changed() -> None:
    check_decoding(
        b"id: 1\ndata: a\n\ndata: b\n\nid: 2\ndata: c\n\n",
        [SseEvent("a", id="1"), SseEvent("b", id="1"), SseEvent("c", id="2")],
    )


def test_id_set_by_an_event_without_data_applies_to_later_events() -> None:
    check_decoding(b"id: 7\n\ndata: a\n\n", [SseEvent("a", id="7")])


def test_empty_id_field_resets_the_last_event_id_to_none() -> None:
    check_decoding(
        b"id: 1\ndata: a\n\nid\ndata: b\n\n", [SseEvent("a", id="1"), SseEvent("b", id=None)]
    )


def test_id_containing_nul_is_ignored() -> None:
    check_decoding(b"id: 1\nid: 2\x003\ndata: a\n\n", [SseEvent("a", id="1")])


def test_retry_of_ascii_digits_sets_the_reconnection_time_for_later_events_too() -> None:
    check_decoding(
        b"retry: 2500\ndata: a\n\ndata: b\n\nretry:0\ndata: c\n\n",
        [SseEvent("a", retry_ms=2500), SseEvent("b", retry_ms=2500), SseEvent("c", retry_ms=0)],
    )


@pytest.mark.parametrize(
    "value",
    [b"", b"1a", b"-1", b"+1", b"1.5", b" 100", b"100 ", b"1_000", "\u00b2".encode(), b"\xff"],
)
def test_retry_that_is_not_only_ascii_digits_is_ignored(value: bytes) -> None:
    check_decoding(b"retry: 7\nretry: " + value + b"\ndata: a\n\n", [SseEvent("a", retry_ms=7)])


def test_retry_with_leading_zeros_is_read_in_base_ten() -> None:
    check_decoding(b"retry: " + b"0" * 40 + b"0815\ndata: a\n\n", [SseEvent("a", retry_ms=815)])


def test_retry_too_large_to_fit_64_bits_is_ignored() -> None:
    # Also keeps int() away from a hostile 5,000-digit value, which it would refuse to parse.
    check_decoding(
        b"retry: 7\nretry: 10000000000000000000\nretry: " + b"9" * 5000 + b"\ndata: a\n\n",
        [SseEvent("a", retry_ms=7)],
    )


def test_unknown_fields_are_ignored_and_field_names_are_case_sensitive() -> None:
    check_decoding(b"Data: x\nfoo: bar\nevent : x\ndata: a\n\n", [SseEvent("a")])


# End of stream


@pytest.mark.parametrize(
    ("stream", "events"),
    [
        (b"data: a\n", []),
        (b"data: a", []),
        (b"data: a\n\ndata: b\n", [SseEvent("a")]),
        (b"data: a\n\ndata: b", [SseEvent("a")]),
        (b"data: a\n\nid: 1", [SseEvent("a")]),
        (b"data: a\n\n: ping", [SseEvent("a")]),
    ],
)
def test_unterminated_last_event_is_not_dispatched_and_marks_truncated(
    stream: bytes, events: list[SseEvent]
) -> None:
    check_decoding(stream, events, truncated=True)


@pytest.mark.parametrize(
    ("stream", "events"),
    [
        (b"", []),
        (b"data: a\n\n", [SseEvent("a")]),
        (b"data: a\r\r", [SseEvent("a")]),
        (b"data: a\n\n: ping\n", [SseEvent("a")]),
        (b"event: x\nid: 1\n", []),
    ],
)
def test_stream_ending_at_a_line_end_with_no_data_buffered_is_not_truncated(
    stream: bytes, events: list[SseEvent]
) -> None:
    check_decoding(stream, events, truncated=False)


def test_decoder_is_not_ended_or_truncated_before_end_of_stream() -> None:
    decoder = SseDecoder()
    decoder.feed(b"data: a")
    assert (decoder.ended, decoder.truncated) == (False, False)


def test_feeding_after_end_of_stream_raises_value_error() -> None:
    decoder = SseDecoder()
    decoder.feed(b"data: a\n\n")
    decoder.feed(b"")
    with pytest.raises(ValueError, match="after the decoder ended"):
        decoder.feed(b"data: b\n\n")
    with pytest.raises(ValueError, match="after the decoder ended"):
        decoder.feed(b"")


# Line length cap


@pytest.mark.parametrize(
    "chunks",
    [
        [b"x" * 17],
        [b"x" * 10, b"x" * 7],
        [b"x" * 17 + b"\n"],
        [b"data: a\n\n" + b"x" * 17 + b"\r\n\n"],
        [b"data: a\r", b"x" * 17],
    ],
)
def test_line_longer_than_cap_raises(chunks: list[bytes]) -> None:
    decoder = SseDecoder(max_line_bytes=16)
    for chunk in chunks[:-1]:
        assert decoder.feed(chunk) == []
    with pytest.raises(SseLineTooLong, match="max_line_bytes=16"):
        decoder.feed(chunks[-1])
    assert (decoder.ended, decoder.truncated) == (True, True)
    with pytest.raises(ValueError, match="SseLineTooLong was raised"):
        decoder.feed(b"\n")


def test_line_too_long_raises_as_soon_as_the_cap_is_passed_without_waiting_for_its_end() -> None:
    decoder = SseDecoder(max_line_bytes=16)
    for _ in range(16):
        assert decoder.feed(b"x") == []
    with pytest.raises(SseLineTooLong):
        decoder.feed(b"x")


def test_line_too_long_is_a_protocol_violation() -> None:
    assert issubclass(SseLineTooLong, ProtocolViolation)


def test_line_of_exactly_cap_bytes_is_accepted_and_neither_bom_nor_line_ends_count() -> None:
    check_decoding(BOM + b"data: 0123456789\r\n\r\n", [SseEvent("0123456789")], max_line_bytes=16)


def test_cap_applies_to_each_line_not_to_a_feed() -> None:
    decoder = SseDecoder(max_line_bytes=16)
    assert decoder.feed(b"data: a\n\n" * 100) == [SseEvent("a")] * 100


def test_cap_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_line_bytes must be at least 1"):
        SseDecoder(max_line_bytes=0)


# Properties

field_text = st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=12)


@dataclass(frozen=True)
class GeneratedEvent:
    """What the generator put in one event; None fields are left out of the stream."""

    data_lines: list[str]
    event: str | None
    id: str | None
    retry_ms: int | None


generated_events = st.builds(
    GeneratedEvent,
    data_lines=st.lists(field_text, min_size=1, max_size=3),
    event=st.none() | field_text,
    id=st.none() | field_text.filter(lambda text: "\0" not in text),
    retry_ms=st.none() | st.integers(0, 10**12),
)


def field_line(draw: st.DrawFn, name: str, value: str) -> str:
    """`name` and `value` as a field line, with the separator forms the format allows."""
    separators = [": "] if value.startswith(" ") else [":", ": "]
    if not value:
        separators.append("")  # a bare field name
    return name + draw(st.sampled_from(separators)) + value


@st.composite
def serialised_streams(draw: st.DrawFn) -> tuple[bytes, list[SseEvent]]:
    """A stream of generated events, and the events it must decode to."""
    lines: list[str] = []
    expected: list[SseEvent] = []
    last_event_id: str | None = None
    retry_ms: int | None = None
    for generated in draw(st.lists(generated_events, max_size=5)):
        block = [field_line(draw, "data", value) for value in generated.data_lines]
        for name, value in [
            ("event", generated.event),
            ("id", generated.id),
            ("retry", None if generated.retry_ms is None else str(generated.retry_ms)),
        ]:
            if value is not None:  # anywhere among the data lines, which keep their order
                block.insert(draw(st.integers(0, len(block))), field_line(draw, name, value))
        lines += [*block, ""] + [""] * draw(st.integers(0, 2))
        if generated.id is not None:
            last_event_id = generated.id or None
        if generated.retry_ms is not None:
            retry_ms = generated.retry_ms
        data = "\n".join(generated.data_lines)
        expected.append(SseEvent(data, generated.event or "message", last_event_id, retry_ms))
    for _ in range(draw(st.integers(0, 4))):
        lines.insert(draw(st.integers(0, len(lines))), ":" + draw(field_text))
    text = "\ufeff" if draw(st.booleans()) else ""
    line_end = ""
    for line in lines:
        # A CR then a blank line ended by LF would read as one CRLF: the generator avoids it.
        line_ends = ["\r\n", "\r"] if line_end == "\r" and not line else ["\n", "\r\n", "\r"]
        line_end = draw(st.sampled_from(line_ends))
        text += line + line_end
    return text.encode(), expected


def cut(data: st.DataObject, stream: bytes) -> list[bytes]:
    """`stream` cut at random positions into pieces of random sizes."""
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    return [stream[start:end] for start, end in pairwise([0, *cuts, len(stream)])]


@given(generated=serialised_streams(), data=st.data())
def test_generated_events_decode_back_exactly_however_the_stream_is_cut(
    generated: tuple[bytes, list[SseEvent]], data: st.DataObject
) -> None:
    stream, expected = generated
    assert decode(cut(data, stream)) == (expected, False)


# Bytes that are mostly not an event stream, yet often look like one: field names, line
# ends (a third of the pieces, so lines of all lengths meet the cap), BOM and UTF-8 pieces.
noisy_streams = st.lists(
    st.sampled_from([b"data:", b"data: ", b"data", b"event:", b"id:", b"retry:", b":", b" "])
    | st.sampled_from([b"\n", b"\r", b"\r\n"])
    | st.sampled_from([BOM, b"\xef", b"\xbb", b"\x00", b"12", b"x", "é€😀".encode()])
    | st.binary(max_size=6),
    max_size=40,
).map(b"".join)


def outcome(chunks: list[bytes], max_line_bytes: int) -> tuple[list[SseEvent], bool] | str:
    """What `decode` gives, or "SseLineTooLong" if it raised that (and only that)."""
    try:
        return decode(chunks, max_line_bytes)
    except SseLineTooLong:
        return "SseLineTooLong"


@given(stream=noisy_streams, data=st.data())
def test_any_bytes_cut_anywhere_decode_as_when_fed_whole_and_raise_only_for_a_line_over_the_cap(
    stream: bytes, data: st.DataObject
) -> None:
    longest_line = max(map(len, re.split(rb"\r\n|\r|\n", stream.removeprefix(BOM))))
    # The cap where it matters: the longest line just fits, or is one byte over it.
    max_line_bytes = max(1, longest_line - data.draw(st.integers(0, 1)))
    whole = outcome([stream], max_line_bytes)
    assert (whole == "SseLineTooLong") is (longest_line > max_line_bytes)
    assert outcome(cut(data, stream), max_line_bytes) == whole
    assert outcome([stream[i : i + 1] for i in range(len(stream))], max_line_bytes) == whole


@given(
    fields=st.lists(
        st.sampled_from([b"event: ping\n", b"id: 7\n", b"retry: 300\n", b": keep-alive\n"]),
        max_size=3,
    ),
    texts=st.lists(st.text(max_size=20).map(str.encode), min_size=1, max_size=6),
)
def test_reads_of_one_data_event_each_decode_as_the_stream_fed_whole(
    fields: list[bytes], texts: list[bytes]
) -> None:
    # One event per read is the common case, with a fast path of its own: fields set by
    # earlier reads (event type, id, retry) must apply to it exactly as on the generic path.
    events = [b"data: " + text.replace(b"\r", b"").replace(b"\n", b"") + b"\n\n" for text in texts]
    reads = [b"data: first\n\n", *fields, *events]
    assert decode(reads) == decode([b"".join(reads)])


@given(
    preamble=st.sampled_from([b"", b"event: delta\n", b"id: 7\nretry: 50\n", b": hi\n\n"]),
    values=st.lists(
        st.text(
            alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)),
            max_size=40,
        ),
        min_size=1,
        max_size=6,
    ),
)
def test_whole_data_events_in_one_read_decode_as_line_by_line(
    preamble: bytes, values: list[str]
) -> None:
    # One read of k whole "data: ..." events takes the decoder's fast path; fed a
    # byte at a time, the same bytes go through the line interpreter.
    body = b"".join(b"data: " + value.encode() + b"\n\n" for value in values)
    fast = SseDecoder()
    slow = SseDecoder()
    assert fast.feed(b"\xef\xbb\xbf" + preamble) == slow.feed(b"\xef\xbb\xbf" + preamble)
    fast_events = fast.feed(body)
    slow_events = [event for byte in body for event in slow.feed(bytes([byte]))]
    assert fast_events == slow_events
    assert [event.data for event in fast_events] == values
