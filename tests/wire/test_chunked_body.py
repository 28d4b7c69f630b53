"""ChunkedBodyDecoder: any cut of a chunked body decodes to the same bytes; bad framing is named."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from onybench.wire.chunked_body import (
    MAX_LINE_BYTES,
    MAX_TRAILER_BYTES,
    ChunkedBodyDecoder,
    ChunkedBodyError,
)


def encode(
    pieces: list[bytes],
    *,
    extensions: list[bytes] | None = None,
    trailers: Sequence[bytes] = (),
    upper: bool = False,
) -> bytes:
    """`pieces` as chunks (each with its extension, if given), the last chunk, trailers."""
    out = []
    for i, piece in enumerate(pieces):
        size = f"{len(piece):X}" if upper else f"{len(piece):x}"
        extension = extensions[i] if extensions else b""
        out.append(size.encode() + extension + b"\r\n" + piece + b"\r\n")
    out.append(b"0\r\n")
    out.extend(field + b"\r\n" for field in trailers)
    out.append(b"\r\n")
    return b"".join(out)


def decode(parts: list[bytes]) -> tuple[bytes, ChunkedBodyDecoder, list[bytes]]:
    """Feed `parts` in order; the body, the decoder, and what each feed returned."""
    decoder = ChunkedBodyDecoder()
    returned = [decoder.feed(part) for part in parts]
    decoder.raise_if_failed()
    return b"".join(returned), decoder, returned


def cut(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def check_every_way(wire: bytes, body: bytes, unused: bytes = b"") -> None:
    """Whole, byte by byte, and with trailing bytes: the same body each time (h11's habit)."""
    for parts in ([wire], [wire[i : i + 1] for i in range(len(wire))]):
        got, decoder, returned = decode(parts)
        assert got == body
        assert decoder.done
        assert all(type(piece) is bytes for piece in returned)
    got, decoder, _ = decode([wire + b"NEXT RESPONSE"])
    assert (got, decoder.unused) == (body, unused + b"NEXT RESPONSE")


SSE = b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n'


def test_one_sse_event_per_chunk_comes_out_of_each_read_whole() -> None:
    wire = encode([SSE, SSE])
    frame = len(wire) // 2 - 2  # each "2f\r\n<event>\r\n" frame, the last chunk aside
    decoder = ChunkedBodyDecoder()
    assert decoder.feed(wire[:frame]) == SSE
    assert decoder.feed(wire[frame : 2 * frame]) == SSE
    assert not decoder.done
    assert decoder.feed(wire[2 * frame :]) == b""
    assert decoder.done


def test_frames_that_arrive_in_one_read_come_out_together() -> None:
    assert decode([encode([SSE, SSE, SSE])])[0] == SSE * 3


def test_a_read_that_brings_only_a_size_line_returns_nothing_yet() -> None:
    decoder = ChunkedBodyDecoder()
    assert decoder.feed(b"5\r\n") == b""
    assert decoder.feed(b"hel") == b"hel"
    assert decoder.feed(b"lo\r") == b"lo"
    assert decoder.feed(b"\n0\r\n\r\n") == b""
    assert decoder.done


def test_upper_and_lower_case_hex_sizes() -> None:
    body = b"x" * 300
    check_every_way(encode([body], upper=True), body)
    check_every_way(encode([body]), body)
    check_every_way(b"00012c\r\n" + body + b"\r\n0\r\n\r\n", body)  # leading zeros


def test_chunk_extensions_are_ignored() -> None:
    extensions = [b";name=value", b' ;quoted="a;b"', b";flag", b"\t;a=1;b=2"]
    pieces = [b"alpha", b"beta", b"gamma", b"delta"]
    check_every_way(encode(pieces, extensions=extensions), b"".join(pieces))


def test_trailer_fields_are_read_and_dropped() -> None:
    wire = encode([SSE], trailers=[b"X-Checksum: abc", b"Server-Timing: total;dur=12"])
    check_every_way(wire, SSE)


def test_the_last_chunk_may_carry_an_extension() -> None:
    check_every_way(b"3\r\nabc\r\n0;done=1\r\n\r\n", b"abc")


def test_an_empty_body_is_just_the_last_chunk() -> None:
    check_every_way(b"0\r\n\r\n", b"")


def test_bytes_after_the_body_are_kept_apart() -> None:
    decoder = ChunkedBodyDecoder()
    assert decoder.feed(b"2\r\nok\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n") == b"ok"
    assert decoder.done
    assert decoder.unused == b"HTTP/1.1 200 OK\r\n"
    assert decoder.feed(b"more") == b""
    assert decoder.unused == b"HTTP/1.1 200 OK\r\nmore"


@given(
    pieces=st.lists(st.binary(min_size=1, max_size=300), max_size=12),
    extension=st.sampled_from([b"", b";a=b", b" ;x"]),
    trailers=st.lists(st.sampled_from([b"A: 1", b"B-Long: " + b"v" * 40]), max_size=3),
    cuts=st.lists(st.integers(min_value=0, max_value=5000), max_size=25),
)
def test_any_cut_of_any_chunked_body_decodes_to_the_same_body(
    pieces: list[bytes], extension: bytes, trailers: list[bytes], cuts: list[int]
) -> None:
    wire = encode(pieces, extensions=[extension] * len(pieces), trailers=trailers)
    body, decoder, returned = decode(cut(wire, cuts))
    assert body == b"".join(pieces)
    assert decoder.done
    assert decoder.unused == b""
    assert all(type(piece) is bytes for piece in returned)


@given(
    pieces=st.lists(st.binary(min_size=1, max_size=64), min_size=1, max_size=8),
    cuts=st.lists(st.integers(min_value=0, max_value=600), max_size=10),
)
def test_until_the_last_chunk_the_decoder_is_not_done(pieces: list[bytes], cuts: list[int]) -> None:
    wire = encode(pieces)
    before_last_chunk = wire[: wire.rindex(b"0\r\n\r\n")]
    body, decoder, _ = decode(cut(before_last_chunk, cuts))
    assert body == b"".join(pieces)
    assert not decoder.done


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (b"zz\r\nhello\r\n", "malformed chunk size line"),
        (b"-5\r\nhello\r\n", "malformed chunk size line"),
        (b"0x5\r\nhello\r\n", "malformed chunk size line"),
        (b"+5\r\nhello\r\n", "malformed chunk size line"),
        (b" 5\r\nhello\r\n", "malformed chunk size line"),
        (b"5 5\r\nhello\r\n", "malformed chunk size line"),
        (b"5_0\r\nhello\r\n", "malformed chunk size line"),
        (b"\r\nhello\r\n", "malformed chunk size line"),
        (b"5\nhello\r\n", "malformed chunk size line"),  # a bare LF ends no line here
        (b"1" * 17 + b"\r\n", "malformed chunk size line"),  # past 16 hex digits
        (b"5\r\nhelloXY", "chunk data not followed by CRLF"),
        (b"3\r\nhello\r\n", "chunk data not followed by CRLF"),
        (b"5\r\nhello\n", "chunk data not followed by CRLF"),
        (b"0\r\nno colon here\r\n\r\n", "malformed trailer field b'no colon here'"),
        (b"0\r\n folded: value\r\n\r\n", "malformed trailer field"),
    ],
)
def test_malformed_framing_raises_an_error_that_says_what(wire: bytes, message: str) -> None:
    for parts in ([wire], [wire[i : i + 1] for i in range(len(wire))]):
        with pytest.raises(ChunkedBodyError, match=message):
            decode(parts)


def test_the_error_shows_the_bytes_that_broke_the_framing() -> None:
    with pytest.raises(ChunkedBodyError) as size:
        decode([b"zz\r\nhello"])
    assert str(size.value) == "malformed chunk size line b'zz\\r'"
    with pytest.raises(ChunkedBodyError) as crlf:
        decode([b"3\r\nhello\r\n"])
    assert str(crlf.value) == "chunk data not followed by CRLF (found b'lo'): wrong chunk size?"


def test_body_bytes_before_bad_framing_come_out_first_and_the_error_next() -> None:
    decoder = ChunkedBodyDecoder()
    assert decoder.feed(b"5\r\nhello\r\nzz\r\n") == b"hello"
    with pytest.raises(ChunkedBodyError, match="malformed chunk size line b'zz"):
        decoder.raise_if_failed()
    with pytest.raises(ChunkedBodyError, match="malformed chunk size line b'zz"):
        decoder.feed(b"5\r\nagain\r\n")


def test_a_size_line_that_never_ends_is_refused_at_the_cap() -> None:
    decoder = ChunkedBodyDecoder()
    decoder.feed(b"5;" + b"x" * (MAX_LINE_BYTES - 10))
    with pytest.raises(ChunkedBodyError, match="chunk size line over 4096 bytes"):
        decoder.feed(b"x" * 20)


def test_a_trailer_section_over_the_cap_is_refused() -> None:
    decoder = ChunkedBodyDecoder()
    decoder.feed(b"0\r\n")
    field = b"X-Pad: " + b"p" * 91 + b"\r\n"
    fields_under_the_cap = MAX_TRAILER_BYTES // len(field)
    for _ in range(fields_under_the_cap):
        decoder.feed(field)
    with pytest.raises(ChunkedBodyError, match=f"trailer section over {MAX_TRAILER_BYTES} bytes"):
        decoder.feed(field)


@given(
    pieces=st.lists(
        st.binary(min_size=1, max_size=300).map(lambda b: b + b"\r\n0\r\n\r\n"[: len(b) % 7]),
        min_size=1,
        max_size=12,
    ),
    upper=st.booleans(),
)
def test_reads_of_exactly_one_whole_chunk_each_come_out_as_their_data(
    pieces: list[bytes], upper: bool
) -> None:
    decoder = ChunkedBodyDecoder()
    for piece in pieces:
        size = b"%X" % len(piece) if upper else b"%x" % len(piece)
        assert decoder.feed(size + b"\r\n" + piece + b"\r\n") == piece
        assert not decoder.done
    assert decoder.feed(b"0\r\n\r\n") == b""
    assert decoder.done
