"""report.json's JSON Schema (draft 2020-12), shipped beside this module.

`report.schema.json` is strict: every object lists its fields, which are
required unless documented as optional (a group's `stage`, `merged_from`),
and no other field is allowed. Figures are open maps whose names follow
`FIGURE_NAME` and whose values are numbers. Validating needs a JSON Schema
library (the tests use `jsonschema`); onybench itself only ships the file.
"""

from __future__ import annotations

import json
from importlib.resources import files
from typing import Any

SCHEMA_FILE = "report.schema.json"
FIGURE_NAME = r"^[a-z0-9_]+(\.[a-z0-9_]+)*$"


def report_schema() -> dict[str, Any]:
    """The schema, as a dict."""
    text = files("onybench.report").joinpath(SCHEMA_FILE).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema
