"""report.json's `server_profile` as labelled rows, for the console, summary.md and report.html."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_COST_LABELS = {
    "server": "the API's cost object",
    "usage_cost": "the proxy's usage.cost",
    "pricing": "the scenario's price table (estimated)",
    "none": "none",
}


def profile_rows(profile: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, value) rows describing what the server did; empty without streams."""
    streams = profile["streams"]
    complete = profile["complete_streams"]
    if not streams:
        return []
    usage = profile["usage"]
    per_chunk = profile["tokens_per_chunk"]["mean"]
    ends = profile["stream_end"]
    connections = profile["connections"]
    cache = profile["prompt_cache"]
    rows = [
        (
            "usage",
            f"{usage['reported']}/{complete} complete streams"
            + (f" ({usage['continuous']} with a running usage)" if usage["continuous"] else "")
            + f"; token counts: {usage['token_counts'].replace('_', ' ')}",
        ),
        (
            "cost from",
            ", ".join(
                f"{_COST_LABELS[source]} ({count})"
                for source, count in profile["cost_source"].items()
                if count
            ),
        ),
        (
            "tokens per chunk",
            f"{per_chunk:.2f} on average" if per_chunk is not None else "unknown (no usage)",
        ),
        (
            "stream end",
            f"[DONE] {ends['done']}/{complete}"
            + (
                f", finish_reason then close {ends['finish_then_close']}"
                if ends["finish_then_close"]
                else ""
            ),
        ),
        ("role-only first chunk", f"{profile['role_first_chunk']}/{streams}"),
        (
            "connections",
            f"{connections['opened']} opened, {connections['reused']} reused"
            + (
                f", {connections['closed_by_server']} closed by the server before answering"
                if connections["closed_by_server"]
                else ""
            ),
        ),
    ]
    if cache["reported"]:
        share = cache["hit_share"]
        rows.append(
            (
                "prompt cache",
                f"{cache['hit_requests']} hits, "
                + (f"{share:.0%} of prompt tokens" if share is not None else "no prompt tokens"),
            )
        )
    if profile["reasoning_tokens"]:
        rows.append(("reasoning tokens", f"{profile['reasoning_tokens']:,}"))
    if profile["server_timings"]:
        rows.append(("server timings", f"in {profile['server_timings']} streams"))
    retries = profile["retries"]
    if retries["retries"] or retries["retry_after_requests"]:
        rows.append(
            (
                "retries",
                f"{retries['retries']} retries; Retry-After asked {retries['retry_after_requests']}"
                " times",
            )
        )
    return rows
