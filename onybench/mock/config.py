"""How the mock server behaves: latency, output size, usage and cost, faults.

`MockConfig` is validated on construction (a bad value raises `ScenarioError`
whose key path is ``mock.<field>``) and round-trips through a plain JSON-safe
dict so it can be handed to a child process on its command line.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from decimal import Decimal, InvalidOperation
from typing import Any, Final, Literal, get_args

from onybench.errors import ScenarioError
from onybench.mock.dialects import DIALECTS, Dialect

Timing = Literal["fixed", "uniform", "normal", "exponential"]
Engine = Literal["hypercorn", "lean"]

# Fault names, in the order their shares are laid out on [0, 1) when a
# request's fault is drawn; the send log and tests use these names.
FAULTS: Final = (
    "http_429",
    "http_500",
    "malformed_chunk",
    "stream_error",
    "cut",
    "no_done",
    "no_finish",
)

_COST_FIELDS: Final = ("cost_per_prompt_token", "cost_per_output_token")
# The faults whose handling lives in the hypercorn app only (see `lean_conflicts`).
_APP_ONLY_FAULTS: Final = ("http_429", "http_500", "malformed_chunk", "stream_error", "cut")


@dataclass(frozen=True, slots=True)
class MockConfig:
    """The mock's behaviour; every field has a default, so ``MockConfig()`` works.

    Latency: the first content chunk is due `ttft_ms` after the request was
    received, each further content chunk `itl_ms` after the previous one (the
    gap is between chunks, whatever `tokens_per_chunk` is). `timing` draws
    every gap (the TTFT included) from a distribution around that value:
    ``fixed`` (exact), ``uniform`` (± `jitter_ms`), ``normal`` (standard
    deviation `jitter_ms`) or ``exponential`` (mean = the value, `jitter_ms`
    ignored); a negative draw counts as 0.

    Server model (off by default; see `onybench.mock.slots`): with
    ``batch_slots = S > 0`` at most S requests are generated at once, the rest
    wait first-come first-served, and their TTFT is the wait plus ``ttft_ms``.
    With ``itl_load_factor = k > 0`` each gap after the first content chunk is
    ``drawn_gap * (1 + k * (active - 1))``, where ``active`` counts the
    requests being generated (holding a slot) when the gap starts, this one
    included. Both apply per mock process.

    Faults: each ``*_rate`` is the share of completion requests that get that
    fault; at most one fault per request, so the shares must sum to at most 1.
    The draw uses a RNG seeded from `seed` and the request's arrival number,
    so a rate of 1.0 (or 0.0) is fully deterministic. The stream faults
    (`malformed_chunk_rate` … `no_finish_rate`) only apply to ``stream: true``
    requests; a non-streaming request that draws one is answered normally.
    """

    ttft_ms: float = 100.0
    itl_ms: float = 10.0
    timing: Timing = "fixed"
    jitter_ms: float = 0.0
    # Per-model slowdown: the TTFT and every gap of these models are multiplied
    # by the factor (e.g. {"acme/big": 2.0} answers twice as slowly).
    latency_factors: dict[str, float] = field(default_factory=dict)
    # The server model (see `slots`): requests beyond `batch_slots` being
    # generated wait in a FIFO queue (0 = no limit), and every gap after the
    # first token is the drawn gap times 1 + itl_load_factor * (active - 1),
    # active = requests holding a slot when the gap starts. Per mock process.
    batch_slots: int = 0
    itl_load_factor: float = 0.0
    output_tokens: int = 128
    tokens_per_chunk: int = 1
    # Which server's streaming to imitate (see `dialects`): where usage and cost
    # go, how the stream ends, the opening chunk, chunking, the connection's life.
    dialect: str = "onysoft"
    # A first chat chunk with ``delta: {"role": "assistant", "content": ""}``
    # (``null`` in some dialects), sent on receipt like OpenAI and vLLM do; it
    # carries no token. (Text completions have no role, so no such chunk.)
    role_chunk: bool = True
    # Send the dialect's cost (Onysoft's cost object, LiteLLM's usage.cost), if it has one.
    emit_cost: bool = True
    cost_per_prompt_token: Decimal = Decimal("0.0000001")
    cost_per_output_token: Decimal = Decimal("0.000001")
    currency: str = "USD"
    # True: usage in every stream; False: only when the request asks with
    # ``stream_options.include_usage`` (OpenAI's way); None: as the dialect does.
    always_usage: bool | None = None
    # The context window in tokens: a request whose prompt plus max_tokens exceeds
    # it is refused the dialect's way (a 400, or llama-cpp-python's empty 200).
    context_tokens: int | None = None
    # A prompt seen before is reported as served from cache
    # (usage.prompt_tokens_details.cached_tokens = its prompt tokens; 0 when new).
    prompt_cache: bool = False
    # An SSE comment line (``: ping``) before every n-th content chunk; 0 = none.
    ping_every: int = 0
    # The HTTP faults answer at once with an OpenAI-style JSON error body.
    http_429_rate: float = 0.0
    http_500_rate: float = 0.0
    # An extra event whose data is not valid JSON, halfway through the content.
    malformed_chunk_rate: float = 0.0
    # An error event halfway through the content, then the response ends
    # cleanly without finish_reason, usage or [DONE].
    stream_error_rate: float = 0.0
    # The connection is closed after `cut_after_chunks` content chunks without
    # ending the chunked body: the response is incomplete at the HTTP level.
    cut_rate: float = 0.0
    cut_after_chunks: int = 3
    # finish_reason and usage are sent, then the response ends cleanly without
    # ``data: [DONE]``: a complete stream for servers that never send it.
    no_done_rate: float = 0.0
    # All content chunks (none with a finish_reason), then a clean end with no
    # usage and no [DONE]: a truncated stream.
    no_finish_rate: float = 0.0
    # When set, requests need ``Authorization: Bearer <require_api_key>`` or get 401.
    require_api_key: str | None = None
    seed: int = 0
    # A file the server appends one JSON line to per request (see `sendlog`).
    send_log: str | None = None
    # Adds ``"x_sent_ns": time.perf_counter_ns()`` to every chunk, read just
    # before the chunk is handed to the HTTP layer.
    stamp_chunks: bool = False
    # Who serves: "hypercorn" (everything above; about 0.25 ms of CPU per
    # chunk) or "lean" (`onybench.mock.lean`: one epoll loop, a few times
    # cheaper, chunks stamped at the write itself; for benchmarking clients at
    # high event rates; only in a child process or `onybench mock`; refuses the
    # settings listed by `lean_conflicts`).
    engine: Engine = "hypercorn"

    def __post_init__(self) -> None:
        for name in ("ttft_ms", "itl_ms", "jitter_ms"):
            _check_duration(name, getattr(self, name))
        if self.timing not in get_args(Timing):
            raise ScenarioError(
                f"must be one of {', '.join(get_args(Timing))}, not {self.timing!r}",
                "mock.timing",
            )
        if not isinstance(self.latency_factors, dict) or not all(
            isinstance(model, str)
            and isinstance(factor, int | float)
            and not isinstance(factor, bool)
            and factor > 0
            for model, factor in self.latency_factors.items()
        ):
            raise ScenarioError(
                'must map model names to positive factors, e.g. { "acme/big" = 2.0 }',
                "mock.latency_factors",
            )
        _check_int("batch_slots", self.batch_slots, minimum=0)
        _check_factor("itl_load_factor", self.itl_load_factor)
        _check_int("output_tokens", self.output_tokens, minimum=1)
        _check_int("tokens_per_chunk", self.tokens_per_chunk, minimum=1)
        _check_int("cut_after_chunks", self.cut_after_chunks, minimum=0)
        _check_int("seed", self.seed, minimum=None)
        for name in ("role_chunk", "emit_cost", "prompt_cache", "stamp_chunks"):
            if not isinstance(getattr(self, name), bool):
                raise ScenarioError("must be true or false", f"mock.{name}")
        if self.always_usage is not None and not isinstance(self.always_usage, bool):
            raise ScenarioError("must be true, false or absent", "mock.always_usage")
        if self.dialect not in DIALECTS:
            raise ScenarioError(
                f"must be one of {', '.join(DIALECTS)}, not {self.dialect!r}", "mock.dialect"
            )
        if self.context_tokens is not None:
            _check_int("context_tokens", self.context_tokens, minimum=1)
        _check_int("ping_every", self.ping_every, minimum=0)
        for name in _COST_FIELDS:
            value = getattr(self, name)
            # Floats are refused: 0.1 is not a decimal price, and the mock's
            # whole point is an exact cost.
            if not isinstance(value, Decimal) or not value.is_finite() or value < 0:
                raise ScenarioError(f"must be a finite Decimal >= 0, not {value!r}", f"mock.{name}")
        if not isinstance(self.currency, str) or not self.currency:
            raise ScenarioError("must be a non-empty string", "mock.currency")
        total = 0.0
        for fault in FAULTS:
            rate = getattr(self, f"{fault}_rate")
            if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
                raise ScenarioError(
                    f"must be a share in [0, 1], not {rate!r}", f"mock.{fault}_rate"
                )
            total += rate
        # A little slack so that e.g. 0.7 + 0.2 + 0.1 (= 1.0000000000000002) passes.
        if total > 1 + 1e-9:
            raise ScenarioError(
                f"the fault rates sum to {total:g}; at most one fault per request, so at most 1",
                "mock",
            )
        for name in ("require_api_key", "send_log"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise ScenarioError("must be a non-empty string or absent", f"mock.{name}")
        if self.engine not in get_args(Engine):
            raise ScenarioError(
                f"must be one of {', '.join(get_args(Engine))}, not {self.engine!r}",
                "mock.engine",
            )
        conflicts = self.lean_conflicts() if self.engine == "lean" else []
        if conflicts:
            raise ScenarioError(
                f"the lean engine cannot serve {', '.join(conflicts)}: unset "
                f'{"it" if len(conflicts) == 1 else "them"} or use engine = "hypercorn"',
                "mock.engine",
            )

    def lean_conflicts(self) -> list[str]:
        """The settings in use that only the hypercorn engine serves: the faults that
        answer with an error or break the stream, the server model, pings, the prompt
        cache, the context window and closing after each response."""
        conflicts = [f"{fault}_rate" for fault in _APP_ONLY_FAULTS if self.fault_rate(fault)]
        conflicts += [
            name
            for name in (
                "batch_slots",
                "itl_load_factor",
                "ping_every",
                "prompt_cache",
                "context_tokens",
            )
            if getattr(self, name) not in (0, False, None)
        ]
        if self.profile.close_after_response:
            conflicts.append(f"dialect {self.dialect!r} (it closes after each response)")
        return conflicts

    @property
    def profile(self) -> Dialect:
        """The dialect's behaviour."""
        return DIALECTS[self.dialect]

    def fault_rate(self, fault: str) -> float:
        """The share of requests that get `fault` (one of `FAULTS`)."""
        rate: float = getattr(self, f"{fault}_rate")
        return rate

    def to_json(self) -> dict[str, Any]:
        """Every field as a JSON-safe value; Decimals become exact strings without exponent."""
        data = asdict(self)
        for name in _COST_FIELDS:
            data[name] = format(data[name], "f")
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MockConfig:
        """The inverse of `to_json`; missing fields take their defaults.

        Raises `ScenarioError` for an unknown field or a bad value.
        """
        known = {f.name for f in fields(cls)}
        for name in data:
            if name not in known:
                raise ScenarioError("unknown setting", f"mock.{name}")
        values = dict(data)
        for name in _COST_FIELDS:
            if name in values and isinstance(values[name], str | int):
                try:
                    values[name] = Decimal(values[name])
                except InvalidOperation:
                    raise ScenarioError(
                        f"not a decimal number: {values[name]!r}", f"mock.{name}"
                    ) from None
        return cls(**values)


def _check_duration(name: str, value: object) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        raise ScenarioError(
            f"must be a finite number of milliseconds >= 0, not {value!r}", f"mock.{name}"
        )


def _check_factor(name: str, value: object) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        raise ScenarioError(f"must be a finite number >= 0, not {value!r}", f"mock.{name}")


def _check_int(name: str, value: object, *, minimum: int | None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ScenarioError(f"must be an integer, not {value!r}", f"mock.{name}")
    if minimum is not None and value < minimum:
        raise ScenarioError(f"must be >= {minimum}, not {value}", f"mock.{name}")
