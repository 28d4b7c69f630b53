"""Untrusted text is made inert for each format."""

from __future__ import annotations

import json

import pytest

from onybench.report.escape import csv_text, html_text, json_for_script, markdown_text

ATTACK = '</script><script>alert("x")</script><!-- <img src=x onerror=alert(1)> & ok'


def test_html_text_leaves_no_tag_and_no_unquoted_attribute_value() -> None:
    escaped = html_text(ATTACK)
    assert "<" not in escaped
    assert ">" not in escaped
    assert '"' not in escaped
    assert escaped.startswith("&lt;/script&gt;&lt;script&gt;alert(&quot;x&quot;)")
    assert "&amp; ok" in escaped


def test_html_text_cuts_long_text_before_escaping() -> None:
    assert html_text("<" * 10, limit=4) == "&lt;&lt;&lt;…"


def test_json_for_script_has_no_end_tag_or_comment_and_parses_back() -> None:
    data = {"model": ATTACK, "line": "a\u2028b"}
    text = json_for_script(data)
    assert "</" not in text
    assert "<!--" not in text
    assert "<" not in text
    assert "\u2028" not in text
    assert json.loads(text) == data


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;"),
        ("a|b", "a\\|b"),
        (
            "**bold** _it_ `code` [link](x) ~~s~~",
            "\\*\\*bold\\*\\* \\_it\\_ \\`code\\` \\[link\\](x) \\~\\~s\\~\\~",
        ),
        ("@octocat fixes #12", "&#64;octocat fixes &#35;12"),
        ("one\ntwo\r\nthree", "one two three"),
        ("a\\b", "a\\\\b"),
        ("openai/gpt-4o-mini", "openai/gpt-4o-mini"),
        ("64.8 / 86.7 / 119.6", "64.8 / 86.7 / 119.6"),
    ],
)
def test_markdown_text_is_inert_inline_text(text: str, expected: str) -> None:
    assert markdown_text(text) == expected


def test_markdown_text_cuts_to_the_limit() -> None:
    assert markdown_text("abcdef", limit=4) == "abc…"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("=HYPERLINK(1)", "'=HYPERLINK(1)"), ("+1", "'+1"), ("@x", "'@x"), ("a/b", "a/b")],
)
def test_csv_text_is_never_a_formula(text: str, expected: str) -> None:
    assert csv_text(text) == expected
