import random
from dataclasses import replace

import pytest

from onybench.metrics.health import ClientHealth
from onybench.metrics.record import RequestRecord

MS = 1_000_000


def record(*token_times_ms: float) -> RequestRecord:
    times = tuple(round(t * MS) for t in token_times_ms)
    return RequestRecord(0, "m", 0, times[-1] if times else 0, token_times_ns=times)


def quiet_health(samples: int = 100) -> ClientHealth:
    health = ClientHealth()
    for k in range(samples):
        health.add_sample(woke_ns=k * 10 * MS, lag_ns=100_000, cpu_share=0.2)
    return health


def test_a_quiet_client_is_not_flagged() -> None:
    health = quiet_health()
    health.add_record(record(100, 110, 120, 130))
    verdict = health.verdict()
    assert not verdict.client_limited
    assert verdict.reasons == ()


def test_loop_lag_above_a_millisecond_at_the_median_flags_the_run() -> None:
    health = ClientHealth()
    for k in range(100):
        health.add_sample(woke_ns=k * 10 * MS, lag_ns=3 * MS, cpu_share=1.0)
    verdict = health.verdict()
    assert verdict.client_limited
    assert verdict.reasons[0].startswith("event-loop lag p50 3.0 ms")
    assert any("CPU saturated in 100% of samples" in r for r in verdict.reasons)


def test_a_lag_tail_alone_earns_a_note_on_the_tails_not_the_flag() -> None:
    health = quiet_health(80)
    for k in range(80, 100):
        health.add_sample(woke_ns=k * 10 * MS, lag_ns=20 * MS, cpu_share=0.5)
    verdict = health.verdict()
    assert not verdict.client_limited
    assert verdict.reasons == ()
    assert verdict.notes == (
        "event-loop lag p90 20.0 ms: TTFT and ITL tails (p90 and above) may be overstated "
        "by up to about that",
    )
    assert quiet_health().verdict().notes == ()


def test_coalesced_arrivals_while_the_loop_lagged_are_blamed_on_the_client() -> None:
    health = quiet_health()
    health.add_sample(woke_ns=1000 * MS, lag_ns=8 * MS, cpu_share=1.0)
    # Two tokens stamped in the same read at 995 ms, right before the lagging wake-up.
    health.add_record(record(980, 995, 995))
    assert (health.coalesced_by_client, health.coalesced_by_server) == (1, 0)


def test_coalesced_arrivals_from_a_healthy_client_are_the_servers_bursts() -> None:
    health = quiet_health()
    health.add_record(record(100, 150, 150, 150, 200))
    assert (health.coalesced_by_client, health.coalesced_by_server) == (0, 2)
    assert not health.verdict().client_limited


def test_many_client_coalesced_arrivals_flag_distorted_itl() -> None:
    health = ClientHealth()
    for k in range(100):
        # Mostly quiet, but busy (CPU-saturated) intervals where the reads land.
        health.add_sample(
            woke_ns=k * 10 * MS, lag_ns=200_000, cpu_share=1.0 if k % 10 == 5 else 0.1
        )
    health.add_record(record(*[50 + 100 * i for i in range(9)], 950, 950, 950))
    verdict = health.verdict()
    assert health.coalesced_by_client == 2
    assert verdict.client_limited
    assert "ITL is distorted" in verdict.reasons[0]


def test_merge_and_json_round_trip_keep_the_evidence() -> None:
    a, b = quiet_health(10), ClientHealth()
    b.add_sample(woke_ns=5 * MS, lag_ns=9 * MS, cpu_share=1.0)
    b.add_record(record(1, 2, 2))
    a.merge(ClientHealth.from_json(b.to_json()))
    assert (a.samples, a.busy_samples, a.token_arrivals) == (11, 1, 3)
    assert a.loop_lag.count == 11
    assert a.figures()["loop_lag.max_ms"] == pytest.approx(9.0, rel=1e-3)


def test_an_open_loop_that_falls_behind_its_schedule_is_flagged() -> None:
    health = quiet_health()
    for k in range(100):
        start_ms = k * 10 + (30 if k % 10 == 0 else 0.1)
        late = RequestRecord(0, "m", round(start_ms * MS), round((start_ms + 5) * MS))
        health.add_record(replace(late, intended_start_ns=k * 10 * MS))
    verdict = health.verdict()
    assert verdict.client_limited
    assert verdict.reasons[0].startswith("schedule lag p99 30.0 ms")
    assert ClientHealth.from_json(health.to_json()).schedule_lag == health.schedule_lag


def test_first_tokens_read_during_a_burst_flag_the_run_though_the_run_wide_lag_is_low() -> None:
    # A quiet 10 s run but for one 300 ms stall at its start (many streams opening):
    # its one late wake-up barely moves the loop-lag percentiles ...
    health = ClientHealth()
    health.add_sample(woke_ns=0, lag_ns=100_000, cpu_share=0.2)
    health.add_sample(woke_ns=310 * MS, lag_ns=300 * MS, cpu_share=1.0)
    for k in range(1, 1000):
        health.add_sample(woke_ns=(310 + 10 * k) * MS, lag_ns=100_000, cpu_share=0.2)
    assert health.loop_lag.stats()["p90"] < 1.0
    # ... but the first token of every stream was read in it, 190-289 ms after the
    # stalled wake-up was due (at 10 ms).
    for k in range(100):
        health.add_record(record(200 + k, 400, 500))
    verdict = health.verdict()
    assert verdict.client_limited
    p50 = health.figures()["first_token_lag.p50_ms"]
    assert p50 == pytest.approx(239.0, rel=2e-3)
    assert verdict.reasons == (
        f"first tokens were read {p50:.1f} ms (p50) after they arrived: "
        "TTFT is overstated by about that",
    )


def test_a_loop_with_long_rounds_now_and_then_does_not_flag_first_tokens_read_between() -> None:
    # Wake-ups every 20 ms, alternately 1 and 7 ms late: the loop-lag p90 earns a note,
    # and a first token read at a random moment was mostly not held by a stall at all.
    health = ClientHealth()
    for k in range(500):
        health.add_sample(
            woke_ns=(20 * k + (7 if k % 2 else 1)) * MS,
            lag_ns=(7 if k % 2 else 1) * MS,
            cpu_share=0.5,
        )
    rng = random.Random(3)
    for _ in range(1000):
        health.add_record(record(rng.uniform(20, 9_900), 9_990))
    verdict = health.verdict()
    assert health.figures()["first_token_lag.p50_ms"] < 1.0
    assert not verdict.client_limited
    assert verdict.notes


def test_warm_up_requests_are_left_out_of_the_first_token_lag() -> None:
    health = quiet_health()
    health.add_sample(woke_ns=1000 * MS, lag_ns=200 * MS, cpu_share=1.0)
    health.add_record(replace(record(990, 995), stage="warmup"))
    health.add_record(record(500, 510))
    assert health.first_token_lag.count == 1
    assert not health.verdict().client_limited


def test_first_tokens_read_by_a_lively_loop_do_not_flag_the_run() -> None:
    health = quiet_health()
    # A few first tokens near one late wake-up, most read by a lively loop.
    health.add_sample(woke_ns=1000 * MS, lag_ns=30 * MS, cpu_share=0.5)
    for k in range(10):
        health.add_record(record(100 + 10 * k, 200))
    health.add_record(record(995, 1005))
    assert health.figures()["first_token_lag.p50_ms"] == pytest.approx(0.1, rel=1e-2)
    assert "first tokens" not in " ".join(health.verdict().reasons)


def test_first_token_lag_survives_merge_and_json_and_older_reports_lack_it() -> None:
    health = quiet_health(10)
    health.add_record(record(5, 6))
    data = health.to_json()
    assert ClientHealth.from_json(data).first_token_lag == health.first_token_lag
    del data["first_token_lag"]
    assert ClientHealth.from_json(data).first_token_lag.count == 0
    merged = ClientHealth()
    merged.merge(health)
    assert merged.first_token_lag.count == 1


def test_the_kernel_measured_first_token_wait_is_taken_over_the_loop_lag_estimate() -> None:
    # The loop looked healthy (no lag at all), but the kernel says every first token
    # had waited 8 ms in the socket before it was read: that is what TTFT is off by.
    health = quiet_health()
    for k in range(100):
        health.add_record(replace(record(200 + k, 400), first_token_wait_ns=8 * MS))
    verdict = health.verdict()
    assert verdict.client_limited
    assert health.figures()["first_token_lag.p50_ms"] == pytest.approx(8.0, rel=2e-3)
    # And a measured short wait overrules the loop-lag estimate: the burst of the test
    # above, with the kernel saying the first tokens were read at once.
    burst = ClientHealth()
    burst.add_sample(woke_ns=0, lag_ns=100_000, cpu_share=0.2)
    burst.add_sample(woke_ns=310 * MS, lag_ns=300 * MS, cpu_share=1.0)
    for k in range(1, 1000):
        burst.add_sample(woke_ns=(310 + 10 * k) * MS, lag_ns=100_000, cpu_share=0.2)
    for k in range(100):
        burst.add_record(replace(record(200 + k, 400), first_token_wait_ns=50_000))
    assert not burst.verdict().client_limited
    assert burst.figures()["first_token_lag.p50_ms"] == pytest.approx(0.05, rel=2e-2)
