from decimal import Decimal
from itertools import accumulate
from typing import Any
from unittest import mock

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from onybench.wire import stream
from onybench.wire.chunks import ContentDelta, ContentTemplate, Cost, interpret, plain_content
from onybench.wire.stream import assemble


def chat(content: str | None = None, finish: str | None = None, **delta: str) -> str:
    d: dict[str, object] = dict(delta)
    if content is not None:
        d["content"] = content
    return orjson.dumps(
        {"id": "req_x", "choices": [{"delta": d, "finish_reason": finish}]}
    ).decode()


USAGE = (
    '{"choices":[],"usage":{"prompt_tokens":4,"completion_tokens":2},'
    '"cost":{"amount":0.5,"currency":"USD"}}'
)


def test_role_only_first_chunk_does_not_stop_the_ttft_clock() -> None:
    summary = assemble(
        [
            (10, chat("", role="assistant")),
            (20, chat("a")),
            (30, chat("b", "stop")),
            (31, USAGE),
            (32, "[DONE]"),
        ],
        closed_cleanly=True,
    )
    assert summary.token_times_ns == (20, 30)
    assert summary.first_content_ns == 20
    assert summary.text == "ab"
    assert (summary.prompt_tokens, summary.output_tokens) == (4, 2)
    assert summary.cost == Cost(Decimal("0.5"), "USD")
    assert summary.finish_reason == "stop"
    assert summary.response_id == "req_x"
    assert summary.error_class is None


def test_reasoning_first_makes_first_token_earlier_than_first_content() -> None:
    summary = assemble(
        [(5, chat(reasoning_content="hmm")), (9, chat("x", "stop")), (10, "[DONE]")],
        closed_cleanly=True,
    )
    assert summary.token_times_ns == (5, 9)
    assert summary.first_content_ns == 9


def test_finish_reason_then_clean_close_without_done_is_complete() -> None:
    summary = assemble([(1, chat("a")), (2, chat("b", "stop"))], closed_cleanly=True)
    assert summary.error_class is None


def test_finish_reason_then_dropped_connection_is_truncated() -> None:
    summary = assemble([(1, chat("a")), (2, chat("b", "stop"))], closed_cleanly=False)
    assert summary.error_class == "truncated"


def test_stream_without_done_or_finish_reason_is_truncated_but_keeps_its_tokens() -> None:
    summary = assemble([(1, chat("a")), (2, chat("b"))], closed_cleanly=True)
    assert summary.error_class == "truncated"
    assert summary.error_message == "stream ended with neither [DONE] nor a finish_reason"
    assert summary.token_times_ns == (1, 2)


def test_in_stream_error_wins_over_everything_else() -> None:
    summary = assemble(
        [(1, chat("a")), (2, '{"error":{"message":"boom"}}'), (3, "[DONE]")], closed_cleanly=True
    )
    assert summary.error_class == "stream_error"
    assert summary.error_message == "boom"


def test_malformed_chunk_marks_the_request_invalid_json() -> None:
    summary = assemble([(1, chat("a")), (2, "{not json"), (3, "[DONE]")], closed_cleanly=True)
    assert summary.error_class == "invalid_json"
    assert summary.token_times_ns == (1,)


def test_events_after_done_are_ignored() -> None:
    summary = assemble([(1, chat("a")), (2, "[DONE]"), (3, chat("late"))], closed_cleanly=True)
    assert summary.text == "a"
    assert summary.token_times_ns == (1,)


def test_a_clean_end_without_any_event_is_an_empty_response() -> None:
    summary = assemble([], closed_cleanly=True)
    assert summary.error_class == "empty_response"
    assert assemble([], closed_cleanly=False).error_class == "truncated"


def test_what_the_server_did_is_summarised_for_the_profile() -> None:
    summary = assemble(
        [
            (10, chat("", role="assistant")),
            (20, chat("a")),
            (30, chat("b", "stop")),
            (31, USAGE),
            (32, "[DONE]"),
        ],
        closed_cleanly=True,
    )
    assert (summary.events, summary.done, summary.role_first) == (5, True, True)
    assert summary.chunk_tokens == ()  # no running usage in the token chunks
    no_done = assemble([(1, chat("a")), (2, chat("b", "stop"))], closed_cleanly=True)
    assert (no_done.done, no_done.role_first) == (False, False)


def running_usage(content: str, completion: int, finish: str | None = None) -> str:
    return orjson.dumps(
        {
            "choices": [{"delta": {"content": content}, "finish_reason": finish}],
            "usage": {"prompt_tokens": 4, "completion_tokens": completion},
        }
    ).decode()


def test_a_running_usage_in_every_chunk_gives_each_chunks_tokens() -> None:
    summary = assemble(
        [
            (1, running_usage("a b c", 3)),
            (2, running_usage("d e", 5)),
            (3, running_usage("f", 6, "stop")),
            (4, '{"choices":[],"usage":{"prompt_tokens":4,"completion_tokens":6}}'),
            (5, "[DONE]"),
        ],
        closed_cleanly=True,
    )
    assert summary.chunk_tokens == (3, 2, 1)
    assert summary.output_tokens == 6


def test_the_apis_own_cost_outranks_a_proxys_estimate() -> None:
    proxy = '{"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1,"cost":0.25}}'
    api = '{"choices":[],"cost":{"amount":"0.5","currency":"EUR"}}'
    for order in ((proxy, api), (api, proxy)):
        timed = [(1, chat("a", "stop")), *((2, data) for data in order), (3, "[DONE]")]
        assert assemble(timed, closed_cleanly=True).cost == Cost(Decimal("0.5"), "EUR")


# Chunks of every shape a server sends, and a few no server should: the fast path for
# plain content chunks must not change what `assemble` makes of any mix of them.
_TEXT = st.sampled_from(["", "a", " word", "é"])
_MAYBE = st.sampled_from([None, "", "stop", "length"])
_DELTA: st.SearchStrategy[dict[str, Any]] = st.fixed_dictionaries(
    {},
    optional={
        "role": st.just("assistant"),
        "content": st.one_of(st.none(), _TEXT, st.just(3)),
        "reasoning_content": st.one_of(st.none(), _TEXT),
        "reasoning": st.one_of(st.none(), _TEXT),
        "tool_calls": st.sampled_from([None, [], [{"index": 0}], [{}, {}]]),
    },
)
_CHOICE = st.fixed_dictionaries(
    {},
    optional={
        "index": st.just(0),
        "delta": st.one_of(_DELTA, st.none(), st.just("x")),
        "text": st.one_of(st.none(), _TEXT),
        "finish_reason": st.one_of(_MAYBE, st.just(1)),
    },
)
_USAGE = st.fixed_dictionaries(
    {"prompt_tokens": st.integers(0, 9), "completion_tokens": st.integers(0, 9)},
    optional={
        "cost": st.sampled_from([0.25, "0.1", None, True]),
        "prompt_tokens_details": st.just({"cached_tokens": 2}),
        "completion_tokens_details": st.just({"reasoning_tokens": 1}),
    },
)
_ENVELOPE = {
    "id": st.sampled_from(["req_1", 7]),
    "object": st.sampled_from(["chat.completion.chunk", "text_completion", None, "other", []]),
    "usage": st.one_of(st.none(), _USAGE),
    "cost": st.sampled_from([None, {"amount": 0.5, "currency": "EUR"}, {"amount": "x"}]),
    "timings": st.sampled_from([None, {}, 1]),
}
_CHUNK = st.fixed_dictionaries(
    {},
    optional={
        "choices": st.one_of(st.lists(st.one_of(_CHOICE, st.just(5)), max_size=2), st.none()),
        **_ENVELOPE,
    },
)
# The common chunk, alone or with what may come beside it (a role, an explicit null
# finish_reason or usage, a `text_completion` object): most streams are mostly these.
_PLAIN = st.builds(
    lambda delta, choice, envelope: {**envelope, "choices": [{**choice, "delta": delta}]},
    st.fixed_dictionaries({"content": _TEXT}, optional={"role": st.just("assistant")}),
    st.fixed_dictionaries({}, optional={"index": st.just(0), "finish_reason": _MAYBE}),
    st.fixed_dictionaries({}, optional=_ENVELOPE),
)
_ERROR = st.sampled_from([{"message": "boom", "code": 500}, "bad", None]).map(
    lambda error: {"error": error, "choices": [{"delta": {"content": "a"}}]}
)
# Role-only, reasoning, tool-call and finish chunks as servers send them.
_OTHER = st.sampled_from(
    [
        {"choices": [{"delta": {"role": "assistant", "content": ""}}]},
        {"choices": [{"delta": {"reasoning_content": "hm", "content": None}}]},
        {"choices": [{"delta": {"tool_calls": [{"index": 0}]}, "finish_reason": None}]},
        {"choices": [{"delta": {}, "finish_reason": "stop"}]},
    ]
)
_PAYLOAD = st.one_of(
    st.one_of(_PLAIN, _PLAIN, _OTHER, _CHUNK, _ERROR).map(
        lambda chunk: orjson.dumps(chunk).decode()
    ),
    st.sampled_from(["[DONE]", "{not json", "[1, 2]", '"text"', " {}"]),
)


@given(_PAYLOAD)
def test_a_payload_takes_the_fast_path_only_when_interpret_sees_one_content_token(
    data: str,
) -> None:
    content = plain_content(data)
    if content is not None:
        assert interpret(data) == (ContentDelta(content),)


def test_the_common_chunk_takes_the_fast_path_and_others_do_not() -> None:
    assert plain_content(chat("tok")) == "tok"
    assert plain_content(running_usage("tok", 1)) is None  # usage: an event more
    for data in (chat("", role="assistant"), chat("tok", "stop"), USAGE, "[DONE]"):
        assert plain_content(data) is None


def _general_path_only(data: str) -> str | None:
    return None


@settings(max_examples=300)
@given(
    st.lists(st.tuples(st.integers(0, 5), _PAYLOAD), max_size=20),
    st.booleans(),
)
def test_the_fast_path_summarises_any_stream_exactly_as_the_general_path(
    steps: list[tuple[int, str]], closed_cleanly: bool
) -> None:
    times = accumulate(gap for gap, _ in steps)
    timed = [(at, data) for at, (_, data) in zip(times, steps, strict=True)]
    fast = assemble(timed, closed_cleanly=closed_cleanly)
    with mock.patch.object(stream, "plain_content", _general_path_only):
        general = assemble(timed, closed_cleanly=closed_cleanly)
    assert fast == general


def _with_text(chunk: dict[str, Any], text: str) -> str:
    """`chunk` as JSON, its first choice's content replaced by `text`."""
    choice = chunk["choices"][0]
    return orjson.dumps(
        {**chunk, "choices": [{**choice, "delta": {**choice["delta"], "content": text}}]}
    ).decode()


# Texts a template may meet: plain ones, and ones JSON escapes (quotes, backslashes,
# control characters, unicode beyond the BMP, the probe itself).
_ANY_TEXT = st.one_of(
    _TEXT,
    st.text(max_size=8),
    st.sampled_from(['a"b', "a\\b", "\n", "tab\t", "é😀", "onybench template probe 7f3a", ""]),
)


@settings(max_examples=300)
@given(_PLAIN, _ANY_TEXT, st.text(max_size=8))
def test_a_template_reads_any_chunk_exactly_as_plain_content(
    base: dict[str, Any], text: str, raw: str
) -> None:
    data = orjson.dumps(base).decode()
    content = plain_content(data)
    template = ContentTemplate.learn(data, content) if content is not None else None
    if template is None:
        return
    # A chunk of the same shape with another text, as a server writes it...
    same_shape = _with_text(base, text)
    got = template.content(same_shape)
    assert got is None or got == plain_content(same_shape)
    if text and '"' not in text and "\\" not in text and text.isprintable():
        assert got == text
    # ...and the template's ends around any characters at all, JSON or not.
    prefix, suffix = template._prefix, template._suffix
    spliced = prefix + raw + suffix
    got = template.content(spliced)
    assert got is None or got == plain_content(spliced)


def test_a_template_is_learnt_only_where_its_cut_proves_out() -> None:
    tok = chat("tok")
    template = ContentTemplate.learn(tok, "tok")
    assert template is not None
    assert template.content(chat("next")) == "next"
    # The last "x" in the chunk is the model's, not the content's: no template.
    misleading = '{"choices":[{"delta":{"content":"x"}}],"model":"x"}'
    assert plain_content(misleading) == "x"
    assert ContentTemplate.learn(misleading, "x") is None
    # The probe's own text proves no cut (here the text the content path spells with an
    # escape stands raw in a later field, where the cut would go).
    probe = "onybench template probe 7f3a"
    echoed = (
        '{"choices":[{"delta":{"content":"onybench template probe 7f3\\u0061"}}],'
        f'"echo":"{probe}"}}'
    )
    assert plain_content(echoed) == probe
    assert ContentTemplate.learn(echoed, probe) is None
    # Escaped in the JSON: cannot be found as it is.
    assert ContentTemplate.learn(chat('say "hi"'), 'say "hi"') is None
    # Chunks of another shape or text JSON would escape go back to plain_content.
    assert template.content(chat("tok", "stop")) is None
    assert template.content(chat("a\nb")) is None
    assert template.content(chat("")) is None


@settings(max_examples=300)
@given(
    _PLAIN,
    st.lists(st.tuples(st.integers(0, 5), st.one_of(_ANY_TEXT, _PAYLOAD)), max_size=30),
    st.booleans(),
)
def test_a_stream_read_through_templates_summarises_as_the_general_path(
    base: dict[str, Any], steps: list[tuple[int, str]], closed_cleanly: bool
) -> None:
    # Most of the stream shares one shape (texts), with other payloads among them.
    payloads = [
        text if text.startswith(("{", "[", '"', " ")) else _with_text(base, text)
        for _, text in steps
    ]
    times = accumulate(gap for gap, _ in steps)
    timed = list(zip(times, payloads, strict=True))
    fast = assemble(timed, closed_cleanly=closed_cleanly)
    with mock.patch.object(stream, "plain_content", _general_path_only):
        general = assemble(timed, closed_cleanly=closed_cleanly)
    assert fast == general
