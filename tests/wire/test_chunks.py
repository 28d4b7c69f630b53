from decimal import Decimal

import pytest

from onybench.wire.chunks import (
    ContentDelta,
    Cost,
    Done,
    FinishReason,
    Malformed,
    ReasoningDelta,
    ServerTimings,
    StreamError,
    ToolCallDelta,
    Usage,
    interpret,
    response_id,
)

ONYSOFT_CONTENT = (
    '{"id":"req_a1","object":"chat.completion.chunk","choices":[{"delta":{"content":"Merhaba"}}]}'
)
ONYSOFT_USAGE = (
    '{"id":"req_a1","object":"chat.completion.chunk","choices":[],'
    '"usage":{"prompt_tokens":12,"completion_tokens":8,"total_tokens":20},'
    '"cost":{"amount":0.000008,"currency":"USD"}}'
)


def test_onysoft_content_chunk_is_a_content_delta() -> None:
    assert interpret(ONYSOFT_CONTENT) == (ContentDelta("Merhaba"),)


def test_onysoft_usage_chunk_with_empty_choices_gives_usage_and_exact_cost() -> None:
    assert interpret(ONYSOFT_USAGE) == (Usage(12, 8), Cost(Decimal("0.000008"), "USD"))


def test_done_sentinel() -> None:
    assert interpret("[DONE]") == (Done(),)


@pytest.mark.parametrize(
    "delta",
    ['{"role":"assistant"}', '{"role":"assistant","content":""}', '{"content":null}', "{}"],
)
def test_role_only_or_empty_delta_carries_no_token(delta: str) -> None:
    assert interpret(f'{{"object":"chat.completion.chunk","choices":[{{"delta":{delta}}}]}}') == ()


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_reasoning_deltas_are_kept_apart_from_content(field: str) -> None:
    data = f'{{"choices":[{{"delta":{{"{field}":"think"}}}}]}}'
    assert interpret(data) == (ReasoningDelta("think"),)


def test_tool_call_delta_counts_as_a_token() -> None:
    data = '{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{"}}]}}]}'
    assert interpret(data) == (ToolCallDelta(1),)


def test_finish_reason_and_usage_in_the_same_chunk() -> None:
    data = (
        '{"choices":[{"delta":{"content":"."},"finish_reason":"stop"}],'
        '"usage":{"prompt_tokens":3,"completion_tokens":5}}'
    )
    assert interpret(data) == (ContentDelta("."), FinishReason("stop"), Usage(3, 5))


def test_text_completion_chunk_reads_choice_text() -> None:
    data = '{"object":"text_completion","choices":[{"text":"Hi","finish_reason":"length"}]}'
    assert interpret(data) == (ContentDelta("Hi"), FinishReason("length"))


def test_an_object_field_that_is_no_string_gets_the_chat_reader_not_a_crash() -> None:
    data = '{"object":[],"choices":[{"delta":{"content":"a"}}]}'
    assert interpret(data) == (ContentDelta("a"),)


def test_in_stream_error_object() -> None:
    data = '{"error":{"message":"upstream failed","type":"server_error","code":502}}'
    assert interpret(data) == (StreamError("upstream failed type=server_error code=502"),)


@pytest.mark.parametrize("data", ['{"choices":[', "[1,2]", "nonsense"])
def test_malformed_payload_is_reported_not_raised(data: str) -> None:
    (event,) = interpret(data)
    assert isinstance(event, Malformed)


def test_cost_amount_given_as_string_is_exact() -> None:
    data = '{"choices":[],"cost":{"amount":"0.10000000000000000001","currency":"EUR"}}'
    assert interpret(data) == (Cost(Decimal("0.10000000000000000001"), "EUR"),)


def test_response_id_is_read_from_the_chunk() -> None:
    assert response_id(ONYSOFT_CONTENT) == "req_a1"
    assert response_id("[DONE]") is None


def test_litellm_usage_cost_is_a_usd_cost_from_the_proxy() -> None:
    data = (
        '{"choices":[{"index":0,"delta":{}}],'
        '"usage":{"prompt_tokens":3,"completion_tokens":5,"cost":1.03e-05}}'
    )
    assert interpret(data) == (Usage(3, 5), Cost(Decimal("0.0000103"), "USD", "usage_cost"))


def test_cached_and_reasoning_token_details_are_read() -> None:
    data = (
        '{"choices":[],"usage":{"prompt_tokens":10,"completion_tokens":7,'
        '"prompt_tokens_details":{"cached_tokens":8},'
        '"completion_tokens_details":{"reasoning_tokens":4}}}'
    )
    assert interpret(data) == (Usage(10, 7, cached_tokens=8, reasoning_tokens=4),)


def test_a_server_timings_object_is_noted() -> None:
    data = '{"choices":[],"timings":{"prompt_n":3,"predicted_ms":12.5}}'
    assert interpret(data) == (ServerTimings(),)
