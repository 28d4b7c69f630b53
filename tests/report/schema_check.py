"""report.json against the shipped schema; importable by any test module:

from tests.report.schema_check import assert_valid_report
assert_valid_report(result.report)          # a dict
assert_valid_report(run_dir / "report.json")  # or a file
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import orjson
from jsonschema import Draft202012Validator

from onybench.report.schema import report_schema


@cache
def validator() -> Draft202012Validator:
    schema = report_schema()
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def schema_errors(report: Mapping[str, Any] | Path) -> list[str]:
    """Every schema violation of `report`, as `path: message` lines."""
    document = orjson.loads(report.read_bytes()) if isinstance(report, Path) else report
    return [
        f"{'/'.join(str(p) for p in error.absolute_path) or '(top)'}: {error.message}"
        for error in sorted(validator().iter_errors(document), key=lambda e: list(e.path))
    ]


def assert_valid_report(report: Mapping[str, Any] | Path) -> None:
    errors = schema_errors(report)
    assert not errors, "report.json does not follow report.schema.json:\n" + "\n".join(errors)
