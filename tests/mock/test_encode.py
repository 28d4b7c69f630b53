from __future__ import annotations

import orjson
import pytest

from onybench.mock import MockConfig
from onybench.mock.encode import ResponseEncoder, error_body, sse
from onybench.mock.plan import CompletionRequest, plan_response

from .conftest import exact_json


def encoder(kind: str = "chat", config: MockConfig | None = None) -> ResponseEncoder:
    request = CompletionRequest(
        kind=kind,  # type: ignore[arg-type]
        model="openai/gpt-4o-mini",
        stream=True,
        max_tokens=None,
        include_usage=False,
        prompt_tokens=12,
    )
    plan = plan_response(config or MockConfig(output_tokens=2), request, 0)
    return ResponseEncoder(request, plan, "req_a1b2c3d4e5f6a1b2c3d4e5f6", 1700000000, "USD")


def test_content_chunks_have_the_exact_onysoft_shape_and_the_last_carries_finish_reason() -> None:
    first, last = encoder().content_chunks(finish=True)
    envelope = (
        b'{"id":"req_a1b2c3d4e5f6a1b2c3d4e5f6","object":"chat.completion.chunk",'
        b'"created":1700000000,"model":"openai/gpt-4o-mini","choices":'
    )
    assert first == envelope + b'[{"index":0,"delta":{"content":"tok0 "},"finish_reason":null}]}'
    assert last == envelope + b'[{"index":0,"delta":{"content":"tok1 "},"finish_reason":"stop"}]}'


def test_without_finish_no_content_chunk_carries_a_finish_reason() -> None:
    chunks = encoder().content_chunks(finish=False)
    assert [orjson.loads(c)["choices"][0]["finish_reason"] for c in chunks] == [None, None]


def test_the_role_chunk_opens_the_assistant_message_with_empty_content() -> None:
    chunk = orjson.loads(encoder().role_chunk())
    assert chunk["choices"] == [
        {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
    ]


def test_the_usage_chunk_has_empty_choices_and_the_cost_as_an_exact_decimal_literal() -> None:
    usage = encoder().usage_chunk()
    assert usage.endswith(
        b'"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":2,"total_tokens":14},'
        b'"cost":{"amount":0.0000032,"currency":"USD"}}'
    )


def test_text_completion_chunks_carry_text_instead_of_a_delta() -> None:
    chunk = orjson.loads(encoder("text").content_chunks(finish=True)[1])
    assert chunk["object"] == "text_completion"
    assert chunk["choices"] == [{"index": 0, "text": "tok1 ", "finish_reason": "stop"}]


def test_the_whole_chat_body_holds_the_message_usage_and_cost() -> None:
    body = exact_json(encoder().body())
    assert body["object"] == "chat.completion"
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "tok0 tok1 "},
            "finish_reason": "stop",
        }
    ]
    assert body["usage"] == {"prompt_tokens": 12, "completion_tokens": 2, "total_tokens": 14}
    assert str(body["cost"]["amount"]) == "0.0000032"


def test_the_malformed_chunk_is_not_json() -> None:
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(encoder().malformed_chunk())


def test_sse_wraps_data_and_splices_the_send_stamp_into_the_object() -> None:
    assert sse(b'{"a":1}') == b'data: {"a":1}\n\n'
    assert sse(b'{"a":1}', 123456789) == b'data: {"a":1,"x_sent_ns":123456789}\n\n'


def test_error_bodies_are_openai_style() -> None:
    assert orjson.loads(error_body("boom", "server_error", 500)) == {
        "error": {"message": "boom", "type": "server_error", "code": 500}
    }
