"""Error answers that are not the OpenAI shape: each recorded with its own message."""

from __future__ import annotations

import httpx
import pytest

from onybench.client import RequestSpec, StreamingClient, Target
from onybench.metrics.record import RequestRecord

SPEC = RequestSpec(model="m", messages=({"role": "user", "content": "hi"},))


async def answer(response: httpx.Response) -> RequestRecord:
    transport = httpx.MockTransport(lambda request: response)
    records: list[RequestRecord] = []
    async with StreamingClient(Target("http://127.0.0.1:9/v1"), transport=transport) as client:
        await client.run_request(SPEC, records.append)
    (record,) = records
    return record


@pytest.mark.parametrize(
    ("response", "error_class", "message"),
    [
        # A proxy in front of the API that answers a bad key with a plain-text 500.
        (httpx.Response(500, text="Internal Server Error\n"), "http_500", "Internal Server Error"),
        # LiteLLM without a database answers a bad key with 400, not 401.
        (
            httpx.Response(400, json={"error": {"message": "No connected db.", "code": "400"}}),
            "http_400",
            "No connected db.",
        ),
        (httpx.Response(503, content=b""), "http_503", "(empty body)"),
        (
            httpx.Response(429, json={"error": "slow down"}, headers={"Retry-After": "2.5"}),
            "http_429",
            "slow down (Retry-After: 2.5 s)",
        ),
    ],
)
async def test_error_answers_are_classified_with_their_message(
    response: httpx.Response, error_class: str, message: str
) -> None:
    record = await answer(response)
    assert (record.error_class, record.error_message) == (error_class, message)
    assert record.retries == 0
