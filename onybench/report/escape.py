"""Untrusted text made inert for each output format.

Model names, stage labels, error messages and bodies, header values and model
output come from the scenario or from the target: any of them may hold markup.
Every renderer passes such text through one of these functions, never around
them.
"""

from __future__ import annotations

import html
import re
from typing import Any

import orjson

# Markdown punctuation that can start emphasis, code, links, strike-through or
# end a table cell, wherever it stands; escaped with a backslash.
_MARKDOWN_PUNCTUATION = re.compile(r"([\\`*_\[\]|~])")
# Characters replaced by an HTML entity: no tag, no entity, no @mention, no
# #123 reference can come out of a model name or an error body.
_MARKDOWN_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "@": "&#64;", "#": "&#35;"}
_LINE_BREAKS = re.compile(r"[\r\n\u2028\u2029]+")


def markdown_text(text: str, limit: int | None = None) -> str:
    """`text` as inert inline GitHub-flavoured Markdown, on one line (fit for a table cell)."""
    text = _LINE_BREAKS.sub(" ", text)
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    text = "".join(_MARKDOWN_ENTITIES.get(char, char) for char in text)
    return _MARKDOWN_PUNCTUATION.sub(r"\\\1", text)


def html_text(text: str, limit: int | None = None) -> str:
    """`text` escaped for an HTML text node or a quoted attribute value."""
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    return html.escape(text, quote=True)


def json_for_script(data: Any) -> str:
    """JSON safe to embed in a `<script type="application/json">` element.

    `<`, `>` and `&` are written as `\\u003c`, `\\u003e`, `\\u0026`, so neither
    `</script>` nor `<!--` can appear in the element's text, whatever the data
    holds; U+2028/U+2029 are escaped too. JSON.parse reads the same values back.
    """
    text = orjson.dumps(data).decode("utf-8")
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


_CSV_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_text(text: str) -> str:
    """A text cell that a spreadsheet will not run as a formula (OWASP's advice)."""
    return "'" + text if text.startswith(_CSV_FORMULA_START) else text
