"""Arrival schedules: when each request of an open-loop run is due.

A schedule is an iterator of send-time offsets in seconds from the run's start,
ascending, the way guidellm and vLLM's benchmark describe one. It is pure: no
clock, no trio, no locks. The runner waits for ``t0 + offset`` (an absolute
time, so waits never drift), and tests read a schedule as a plain list.

Every schedule sends its first request at offset 0, then one request per gap:

- ``constant(r)``: gaps of exactly ``1/r``; offset k is ``k / r``.
- ``poisson(r, seed)``: exponential gaps with mean ``1/r`` (variance ``1/r²``).
- ``gamma(r, B, seed)``: gaps ~ Gamma(shape=B, scale=1/(r·B)), mean ``1/r``
  and squared coefficient of variation ``1/B``: B < 1 is burstier than Poisson,
  B > 1 smoother, B = 1 *is* Poisson (vLLM's ``--burstiness``).

Ramps follow k6's ramping executors: a list of `Stage`s, each moving the target
linearly from the previous stage's target (or the start value) to its own over
its duration. `staged_arrivals` turns rate stages into a finite schedule by
time rescaling: it draws gaps of a unit-rate process and maps each cumulative
sum Λ to the time t where ∫₀ᵗ r = Λ. The inverse is solved exactly per linear
piece, so constant-rate stages send at exactly the expected times and a stage
sends, on average, exactly the integral of its rate. `concurrency_at` reads
concurrency stages at a point in time.

`shard` splits one schedule among worker processes: the union of all shards is
the schedule, each arrival in exactly one shard.

Seeded randomness comes from ``random.Random(seed)``: the same seed gives the
same schedule on every machine and Python version that keeps the Mersenne
Twister and its ``expovariate`` / ``gammavariate`` (CPython has for decades).
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from onybench.errors import ScenarioError

ArrivalKind = Literal["constant", "poisson", "gamma"]
ARRIVAL_KINDS: tuple[ArrivalKind, ...] = get_args(ArrivalKind)


@dataclass(frozen=True, slots=True)
class Stage:
    """One piece of a ramp (k6's ``stages``): move linearly from the previous
    target to `target` over `duration_s` seconds.

    `target` is in requests/s for rate stages and in requests in flight for
    concurrency stages. A stage of duration 0 jumps to its target at once.
    """

    duration_s: float
    target: float


def constant(rate_per_s: float) -> Iterator[float]:
    """Offsets 0, 1/r, 2/r, …: computed as ``k / r``, so they do not accumulate
    rounding error (offset k is the float nearest k/r)."""
    _check_rate(rate_per_s)
    return (k / rate_per_s for k in itertools.count())


def poisson(rate_per_s: float, seed: int) -> Iterator[float]:
    """A Poisson process of `rate_per_s`: exponential gaps with mean ``1/r``."""
    _check_rate(rate_per_s)
    rng = random.Random(seed)
    return _cumulative(lambda: rng.expovariate(rate_per_s))


def gamma(rate_per_s: float, burstiness: float, seed: int) -> Iterator[float]:
    """Gaps ~ Gamma(shape=B, scale=1/(r·B)): mean ``1/r``, variance ``1/(r²·B)``.

    B = `burstiness`; B = 1 is a Poisson process (vLLM's definition).
    """
    _check_rate(rate_per_s)
    _check_burstiness(burstiness)
    rng = random.Random(seed)
    scale = 1.0 / (rate_per_s * burstiness)
    return _cumulative(lambda: rng.gammavariate(burstiness, scale))


def arrivals(
    kind: ArrivalKind, rate_per_s: float, *, burstiness: float = 1.0, seed: int = 0
) -> Iterator[float]:
    """The endless schedule of `kind` at `rate_per_s` (`burstiness` is for gamma only)."""
    _check_kind(kind)
    if kind == "constant":
        return constant(rate_per_s)
    if kind == "poisson":
        return poisson(rate_per_s, seed)
    return gamma(rate_per_s, burstiness, seed)


def staged_arrivals(
    stages: Sequence[Stage],
    kind: ArrivalKind = "poisson",
    *,
    start_rate_per_s: float = 0.0,
    burstiness: float = 1.0,
    seed: int = 0,
) -> Iterator[float]:
    """The schedule of a rate r(t) that is piecewise linear through `stages`,
    starting from `start_rate_per_s`; it ends with the last stage.

    Unit-rate gaps (constant: exactly 1; poisson: Exp(1); gamma: Gamma(B, 1/B))
    are summed into Λ = 0, g₁, g₁+g₂, … and each Λ is sent at the time t with
    ∫₀ᵗ r = Λ; a Λ at or past the whole integral ends the schedule. So with
    `constant`, a stage holding r requests/s for d seconds sends exactly r·d
    requests at offsets spaced 1/r, and a ramp sends ⌈∫r⌉ in all. Stretches of
    rate 0 send nothing; the next arrival waits for the rate to rise.
    """
    _check_kind(kind)
    _check_stages(stages)
    if not (math.isfinite(start_rate_per_s) and start_rate_per_s >= 0):
        raise ScenarioError(
            f"must be a number of requests/s of at least 0, got {start_rate_per_s!r}",
            "load.start_rate",
        )
    if kind == "gamma":
        _check_burstiness(burstiness)
    pieces = _rate_pieces(stages, start_rate_per_s)
    if pieces[-1].area_end <= 0:
        raise ScenarioError(
            "every stage has a target of 0 requests/s, so nothing would be sent; "
            "give at least one stage a positive target",
            "load.stages",
        )
    rng = random.Random(seed)

    def unit_gap() -> float:
        if kind == "poisson":
            return rng.expovariate(1.0)
        return rng.gammavariate(burstiness, 1.0 / burstiness)

    return _rescaled(pieces, unit_gap, integer_steps=kind == "constant")


def concurrency_at(stages: Sequence[Stage], t_s: float, *, start: float = 0.0) -> int:
    """The target number of requests in flight `t_s` seconds into a ramp.

    Linear from `start` through the stages, rounded down (a worker joins when
    the line reaches its number, as k6's ramping-vus adds VUs); before 0 it is
    `start`, at and after the end the last stage's target, held (the runner
    decides when to stop). A stage of duration 0 jumps at its start.
    """
    _check_stages(stages)
    level = start
    elapsed = 0.0
    for stage in stages:
        end = elapsed + stage.duration_s
        if t_s < end:
            if t_s <= elapsed:
                break
            fraction = (t_s - elapsed) / stage.duration_s
            level = level + (stage.target - level) * fraction
            break
        level = stage.target
        elapsed = end
    # A hair of tolerance: 0.1 + 0.2 style float error must not lose a worker.
    return max(0, math.floor(level + 1e-9))


def stages_duration_s(stages: Sequence[Stage]) -> float:
    """The ramp's total length in seconds."""
    return math.fsum(stage.duration_s for stage in stages)


def shard(offsets: Iterable[float], index: int, count: int) -> Iterator[float]:
    """Every `count`-th arrival starting at `index` (0 ≤ index < count).

    The `count` shards of one schedule partition it: together they are exactly
    the schedule, and each keeps its absolute offsets. Raises ValueError for an
    impossible split (a programming error, not a scenario one).
    """
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"shard {index} of {count}: need count ≥ 1 and 0 ≤ index < count")
    return itertools.islice(offsets, index, None, count)


def label(kind: ArrivalKind, rate_per_s: float, burstiness: float = 1.0) -> str:
    """A short name in guidellm's style: ``poisson@5.00``, ``gamma(B=0.5)@5.00``."""
    if kind == "gamma":
        return f"gamma(B={burstiness:g})@{rate_per_s:.2f}"
    return f"{kind}@{rate_per_s:.2f}"


# --- internals ---------------------------------------------------------------


def _cumulative(gap: Callable[[], float]) -> Iterator[float]:
    offset = 0.0
    while True:
        yield offset
        offset += gap()


@dataclass(frozen=True, slots=True)
class _RatePiece:
    """One stage as a linear rate: r(τ) = r0 + slope·τ for τ in [0, duration]."""

    start_s: float
    duration_s: float
    rate_start: float
    slope: float  # requests/s per second
    area_start: float  # ∫ r up to this piece's start: requests expected so far
    area_end: float


def _rate_pieces(stages: Sequence[Stage], start_rate: float) -> list[_RatePiece]:
    pieces = []
    start_s = 0.0
    area = 0.0
    rate = start_rate
    for stage in stages:
        duration = stage.duration_s
        slope = (stage.target - rate) / duration if duration > 0 else 0.0
        area_end = area + (rate + stage.target) / 2 * duration
        pieces.append(_RatePiece(start_s, duration, rate, slope, area, area_end))
        start_s += duration
        area = area_end
        rate = stage.target
    return pieces


def _time_of(piece: _RatePiece, area: float) -> float:
    """The τ in `piece` where ∫ r has grown by `area` (0 ≤ area ≤ the piece's)."""
    a, k = piece.rate_start, piece.slope
    if k == 0:
        return area / a
    # a·τ + k·τ²/2 = area, in the form that stays accurate when a or k is tiny:
    # τ = 2·area / (a + √(a² + 2·k·area)).
    root = math.sqrt(max(0.0, a * a + 2 * k * area))
    denominator = a + root
    if denominator <= 0:
        return 0.0
    return min(piece.duration_s, 2 * area / denominator)


def _rescaled(
    pieces: list[_RatePiece], unit_gap: Callable[[], float], *, integer_steps: bool
) -> Iterator[float]:
    total = pieces[-1].area_end
    number = 0
    area = 0.0
    index = 0
    while True:
        # Constant: Λ = k exactly (no accumulated float error in the count).
        target = float(number) if integer_steps else area
        if target >= total:
            return
        while pieces[index].area_end <= target:
            index += 1  # pieces with no area (rate 0 or duration 0) are skipped here
        piece = pieces[index]
        yield piece.start_s + _time_of(piece, target - piece.area_start)
        number += 1
        if not integer_steps:
            area += unit_gap()


def _check_kind(kind: str) -> None:
    if kind not in ARRIVAL_KINDS:
        raise ScenarioError(
            f"{kind!r} is not an arrival process; use one of {', '.join(ARRIVAL_KINDS)}",
            "load.arrival",
        )


def _check_rate(rate_per_s: float) -> None:
    if not (math.isfinite(rate_per_s) and rate_per_s > 0):
        raise ScenarioError(
            f"must be a positive number of requests/s, got {rate_per_s!r}", "load.rate"
        )


def _check_burstiness(burstiness: float) -> None:
    if not (math.isfinite(burstiness) and burstiness > 0):
        raise ScenarioError(
            f"must be a positive number (1 is Poisson, below 1 burstier), got {burstiness!r}",
            "load.burstiness",
        )


def _check_stages(stages: Sequence[Stage]) -> None:
    if not stages:
        raise ScenarioError(
            'give at least one stage, e.g. [{ duration = "30s", target = 10 }]', "load.stages"
        )
    for number, stage in enumerate(stages):
        where = f"load.stages[{number}]"
        if not (math.isfinite(stage.duration_s) and stage.duration_s >= 0):
            raise ScenarioError(
                f"must be a duration of at least 0 s, got {stage.duration_s!r}",
                f"{where}.duration",
            )
        if not (math.isfinite(stage.target) and stage.target >= 0):
            raise ScenarioError(f"must be at least 0, got {stage.target!r}", f"{where}.target")
    if not any(stage.duration_s > 0 for stage in stages):
        raise ScenarioError(
            "every stage lasts 0 s; give at least one stage a positive duration",
            "load.stages",
        )
