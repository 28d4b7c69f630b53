"""The mock's server model: batch slots, the FIFO queue, ITL that grows with load."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import httpx
import pytest
import trio
import trio.testing

from onybench.config import scenario_from_dict
from onybench.errors import ScenarioError
from onybench.mock import MockConfig, running_mock
from onybench.mock.slots import BatchSlots

from .conftest import chat_body, read_send_log

OFFSETS_NS = (100_000_000, 110_000_000, 120_000_000, 130_000_000)  # TTFT 100 ms, ITL 10 ms


async def test_requests_beyond_the_slots_wait_first_come_first_served(
    autojump_clock: trio.testing.MockClock,
) -> None:
    slots = BatchSlots(2, 0.0)
    first_due: dict[int, float] = {}

    async def request(number: int) -> None:
        await trio.sleep(number * 0.001)  # arrivals 1 ms apart
        async with slots.serve(trio.current_time(), OFFSETS_NS) as schedule:
            first_due[number] = schedule.due(0)
            await trio.sleep(1.0)  # the response takes a second

    async with trio.open_nursery() as nursery:
        for number in range(5):
            nursery.start_soon(request, number)
    # Two start at once; the third waits for the first slot, the fourth for the second...
    slot_taken = {number: due - 0.1 for number, due in first_due.items()}
    assert slot_taken == pytest.approx({0: 0.0, 1: 0.001, 2: 1.0, 3: 1.001, 4: 2.0})
    assert slots.active == 0


async def test_each_gap_is_stretched_by_the_streams_active_when_it_starts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    slots = BatchSlots(0, 0.5)
    schedules = []
    async with slots.serve(0.0, OFFSETS_NS) as alone:
        assert [alone.due(0), alone.due(1)] == pytest.approx([0.1, 0.11])  # 1 active: x1
        async with slots.serve(0.0, OFFSETS_NS), slots.serve(0.0, OFFSETS_NS):
            schedules.append(alone.due(2))  # 3 active: 1 + 0.5 * 2 = x2
        schedules.append(alone.due(3))  # alone again
    assert schedules == pytest.approx([0.11 + 0.02, 0.13 + 0.01])
    assert slots.itl_multiplier() == 1


async def test_with_the_model_off_chunks_are_due_exactly_at_received_plus_offset() -> None:
    slots = BatchSlots(0, 0.0)
    async with slots.serve(5.0, OFFSETS_NS) as schedule:
        assert [schedule.due(j) for j in range(4)] == [5.0 + o / 1e9 for o in OFFSETS_NS]
        assert schedule.last_due() == 5.0 + OFFSETS_NS[-1] / 1e9


async def test_a_queued_request_waits_for_the_whole_response_ahead_of_it(send_log: Path) -> None:
    # One slot: the second of two simultaneous requests gets its first token
    # only after the first response has ended (the send log says when).
    config = MockConfig(
        ttft_ms=20.0, itl_ms=10.0, output_tokens=5, batch_slots=1, send_log=str(send_log)
    )
    async with (
        running_mock(config) as endpoint,
        httpx.AsyncClient(base_url=endpoint.base_url, verify=False) as client,
        trio.open_nursery() as nursery,
    ):
        for _ in range(2):
            nursery.start_soon(partial(client.post, "/chat/completions", json=chat_body()))
    first, second = sorted(await read_send_log(send_log), key=lambda r: r["end_ns"])
    assert second["token_sent_ns"][0] >= first["end_ns"]
    # Its TTFT (from receipt) is the queue wait plus its own ttft_ms: over two TTFTs + 4 ITLs.
    assert second["token_send_start_ns"][0] - second["received_ns"] >= (2 * 20 + 4 * 10) * 1e6
    assert first["client_port"] != second["client_port"]


@pytest.mark.parametrize(
    ("field", "value"),
    [("batch_slots", -1), ("batch_slots", 1.5), ("batch_slots", True), ("itl_load_factor", -0.1)],
)
def test_a_bad_server_model_setting_names_its_key(field: str, value: object) -> None:
    with pytest.raises(ScenarioError) as caught:
        MockConfig(**{field: value})  # type: ignore[arg-type]
    assert caught.value.key_path == f"mock.{field}"


def test_the_mock_section_of_a_scenario_sets_the_server_model() -> None:
    scenario = scenario_from_dict({"mock": {"batch_slots": 32, "itl_load_factor": 0.05}})
    assert (scenario.mock.batch_slots, scenario.mock.itl_load_factor) == (32, 0.05)
    assert MockConfig.from_json(scenario.mock.to_json()) == scenario.mock
