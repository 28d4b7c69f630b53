"""`onybench probe`'s findings for a terminal, from `ProbeResult.to_json()`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from onybench.report.server_profile import profile_rows


def render_probe(result: Mapping[str, Any]) -> str:
    """The probe's findings for a terminal (from `ProbeResult.to_json()`)."""
    options = result["options"]
    unasked = options["usage_without_asking"]
    rows: list[tuple[str, str]] = [
        ("requests", f"{result['succeeded']}/{result['requests']} succeeded"),
        *(
            (name, f"{value:,.1f} ms")
            for name, value in (
                ("TTFT p50", result["figures"].get("ttft.p50_ms")),
                ("ITL p50", result["figures"].get("itl.p50_ms")),
                ("connect p50", result["figures"].get("connect.p50_ms")),
            )
            if value is not None
        ),
        ("stream_options.include_usage", options["stream_options.include_usage"]),
        ("usage without asking", "unknown" if unasked is None else "yes" if unasked else "no"),
        ("continuous_usage_stats", options["stream_options.continuous_usage_stats"]),
        ("ignore_eos", options["ignore_eos"]),
        *profile_rows(result["server_profile"]),
    ]
    width = max(len(label) for label, _ in rows)
    lines = [f"onybench probe {result['base_url']}  model {result['model']}", ""]
    lines += [f"  {label.ljust(width)}  {value}" for label, value in rows]
    if result["first_error"]:
        lines += ["", f"first error (option probes included): {result['first_error']}"]
    warnings = result["server_profile"]["warnings"]
    if warnings:
        lines += ["", *(f"note: {warning}" for warning in warnings)]
    if result["suggestions"]:
        lines += ["", "suggested scenario settings:", *(f"  {s}" for s in result["suggestions"])]
    return "\n".join(lines)
