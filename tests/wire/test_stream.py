from decimal import Decimal

import orjson

from onybench.wire.chunks import Cost
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
