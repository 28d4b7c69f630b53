import json
import random
import re
import statistics
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onybench.errors import ScenarioError
from onybench.load.datasets import (
    DatasetError,
    LengthDistribution,
    Prompt,
    estimate_tokens,
    filler_text,
    inline,
    load_jsonl,
    load_sharegpt,
    load_text,
    read_sharegpt,
    sample,
    synthetic,
    with_unique_prefix,
)

SAMPLE = Path(__file__).resolve().parents[2] / "scenarios" / "data" / "sharegpt-sample.json"


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def user_text(prompt: Prompt) -> str:
    assert prompt.messages[-1]["role"] == "user"
    return prompt.messages[-1]["content"]


# --- estimate_tokens ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("", 0),
        (" ", 1),  # non-empty text is at least one token
        ("a", 1),
        ("word", 1),  # 1/2 + 4/8
        ("hello world", 2),  # 2 × (4 + 5) eighths = 18 → 2
        ("internationalization", 3),  # (4 + 20) / 8
        ("çok", 2),  # (4 + 3 + 8) / 8, rounded
        ("2025", 4),  # one per digit
        ("Hi!\n", 2),  # (4 + 2 + 5 + 8) / 8, rounded
    ],
)
def test_estimate_tokens_weighs_words_letters_non_ascii_digits_symbols_and_newlines(
    text: str, tokens: int
) -> None:
    assert estimate_tokens(text) == tokens


def test_estimate_tokens_counts_turkish_as_longer_than_english_of_the_same_length() -> None:
    assert estimate_tokens("çiçekçiğiz") > estimate_tokens("flowerbeds")


# --- inline and text --------------------------------------------------------------------


def test_inline_prompts_become_one_user_message_each() -> None:
    prompts = inline(["Say hi.", "Count to three."])
    assert [p.messages for p in prompts] == [
        ({"role": "user", "content": "Say hi."},),
        ({"role": "user", "content": "Count to three."},),
    ]
    assert [p.input_tokens for p in prompts] == [estimate_tokens("Say hi."), 4]
    assert all(p.max_tokens is None for p in prompts)


def test_inline_rejects_no_prompts_and_names_an_empty_one() -> None:
    with pytest.raises(ScenarioError) as error:
        inline([])
    assert error.value.key_path == "prompts.prompts"
    with pytest.raises(ScenarioError, match="empty") as error:
        inline(["fine", "  "])
    assert error.value.key_path == "prompts.prompts[1]"


def test_a_text_file_gives_one_prompt_per_non_blank_line(tmp_path: Path) -> None:
    path = write(tmp_path, "p.txt", "first prompt\r\n\n   \nsecond prompt\nthird\n")
    assert [user_text(p) for p in load_text(path)] == ["first prompt", "second prompt", "third"]


def test_a_missing_file_is_a_dataset_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.txt"
    for load in (load_text, load_jsonl, load_sharegpt):
        with pytest.raises(DatasetError, match="no such file; check the path") as error:
            load(path)
        assert error.value.path == path
        assert str(path) in str(error.value)


def test_an_empty_text_file_is_a_dataset_error(tmp_path: Path) -> None:
    path = write(tmp_path, "empty.txt", "\n  \n")
    with pytest.raises(DatasetError, match="no prompts; write one prompt per line"):
        load_text(path)


def test_a_file_that_is_not_utf8_names_the_line_of_the_bad_byte(tmp_path: Path) -> None:
    path = write(tmp_path, "latin1.txt", "one\ntwo\nthr\xe9e\n".encode("latin-1"))
    with pytest.raises(DatasetError, match="not UTF-8") as error:
        load_text(path)
    assert error.value.line == 3
    assert f"{path}:3:" in str(error.value)


# --- JSON lines ----------------------------------------------------------------------------


def test_jsonl_lines_may_be_strings_prompts_or_messages_with_max_tokens(tmp_path: Path) -> None:
    lines = [
        json.dumps("plain string"),
        "",
        json.dumps({"prompt": "with a limit", "max_tokens": 64, "id": "ignored"}),
        json.dumps(
            {
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Why?"},
                ]
            }
        ),
    ]
    prompts = load_jsonl(write(tmp_path, "p.jsonl", "\n".join(lines) + "\n"))
    assert [p.messages for p in prompts] == [
        ({"role": "user", "content": "plain string"},),
        ({"role": "user", "content": "with a limit"},),
        ({"role": "system", "content": "Be brief."}, {"role": "user", "content": "Why?"}),
    ]
    assert [p.max_tokens for p in prompts] == [None, 64, None]
    assert prompts[2].input_tokens == estimate_tokens("Be brief.") + estimate_tokens("Why?")


def test_a_jsonl_string_may_hold_a_raw_line_separator(tmp_path: Path) -> None:
    path = write(tmp_path, "p.jsonl", '"one\u2028line"\n')
    assert [user_text(p) for p in load_jsonl(path)] == ["one\u2028line"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"prompt": "unclosed', "not valid JSON"),
        ("42", "found a number 42"),
        ("null", "found null null"),
        ('""', "the prompt is empty"),
        ('{"prompt": "  "}', '"prompt" is empty'),
        ('{"prompt": 3}', '"prompt" must be a string'),
        (
            '{"id": 7, "promt": "hi"}',
            'no "prompt" or "messages" key \\(did you mean "prompt" for "promt"\\?\\), '
            'found keys "id", "promt"',
        ),
        ('{"prompt": "a", "messages": []}', 'give "prompt" or "messages", not both'),
        ('{"messages": []}', '"messages" must be a non-empty list'),
        ('{"messages": ["hi"]}', '"messages"\\[0\\] must be'),
        ('{"messages": [{"role": "robot", "content": "x"}]}', "has role 'robot'; use one of"),
        ('{"messages": [{"role": "user"}]}', 'needs "content" as a string'),
        ('{"messages": [{"role": "user", "content": ""}]}', "every message is empty"),
        ('{"prompt": "x", "max_tokens": 0}', '"max_tokens" must be a whole number of at least 1'),
        ('{"prompt": "x", "max_tokens": true}', '"max_tokens" must be a whole number'),
    ],
)
def test_a_malformed_jsonl_line_is_a_dataset_error_naming_its_line(
    tmp_path: Path, line: str, message: str
) -> None:
    path = write(tmp_path, "p.jsonl", f'"fine"\n\n{line}\n"also fine"\n')
    with pytest.raises(DatasetError, match=message) as error:
        load_jsonl(path)
    assert error.value.line == 3
    assert str(error.value).startswith(f"prompts.path: {path}:3: ")


def test_a_jsonl_file_without_prompts_is_a_dataset_error_showing_the_shape(tmp_path: Path) -> None:
    with pytest.raises(
        DatasetError, match=re.escape('no prompts; write each line as a JSON string, {"prompt"')
    ):
        load_jsonl(write(tmp_path, "p.jsonl", "\n\n"))


# --- ShareGPT --------------------------------------------------------------------------------


def test_the_sharegpt_sample_gives_18_requests_and_skips_2() -> None:
    dataset = read_sharegpt(SAMPLE)
    assert len(dataset.prompts) == 18
    assert dataset.skipped == 2
    assert load_sharegpt(SAMPLE) == dataset.prompts


def test_a_sharegpt_request_is_the_first_human_turn_asking_for_the_reply_length() -> None:
    entries = json.loads(SAMPLE.read_text(encoding="utf-8"))
    first = read_sharegpt(SAMPLE).prompts[0]
    question, reply = entries[0]["conversations"][:2]
    assert first.messages == ({"role": "user", "content": question["value"]},)
    assert first.input_tokens == estimate_tokens(question["value"])
    assert first.max_tokens == estimate_tokens(reply["value"])


def test_a_sharegpt_conversation_may_open_with_a_system_turn() -> None:
    prompts = read_sharegpt(SAMPLE).prompts
    assert any(user_text(p) == "Why is the sky blue?" for p in prompts)


def test_sharegpt_max_prompts_stops_reading_early() -> None:
    assert len(load_sharegpt(SAMPLE, max_prompts=5)) == 5


def test_sharegpt_skips_conversations_without_a_human_turn_followed_by_a_reply(
    tmp_path: Path,
) -> None:
    def turns(*pairs: tuple[str, str]) -> dict[str, object]:
        return {"conversations": [{"from": f, "value": v} for f, v in pairs]}

    entries = [
        turns(("human", "q"), ("gpt", "a")),
        turns(("gpt", "hello")),
        turns(("human", "q"), ("human", "again")),
        turns(("human", "q"), ("gpt", "  ")),
        turns(("human", ""), ("gpt", "a")),
        turns(),
        turns(("user", "q2"), ("assistant", "a2 a2")),
    ]
    dataset = read_sharegpt(write(tmp_path, "s.json", json.dumps(entries)))
    assert [user_text(p) for p in dataset.prompts] == ["q", "q2"]
    assert dataset.skipped == 5


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ('[\n {"conversations": []},\n {"conversations": [}\n]', 3, "not valid JSON"),
        ('{"conversations": []}', 1, "expected a JSON list, found an object"),
        ("[\n {}\n]", 2, 'this entry has no "conversations" list'),
        ('[\n {"conversations": []}\n {"conversations": []}\n]', 3, "expected ',' or '\\]' here"),
        ('[{"conversations": []}] extra', 1, "unexpected text after the list"),
        ("", 1, "not valid JSON"),
    ],
)
def test_a_malformed_sharegpt_file_is_a_dataset_error_naming_the_line(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    path = write(tmp_path, "s.json", text)
    with pytest.raises(DatasetError, match=message) as error:
        read_sharegpt(path)
    assert error.value.line == line
    assert f"{path}:{line}:" in str(error.value)


def test_a_sharegpt_file_with_no_usable_conversation_is_a_dataset_error(tmp_path: Path) -> None:
    path = write(tmp_path, "s.json", '[{"conversations": [{"from": "gpt", "value": "hi"}]}]')
    with pytest.raises(DatasetError, match="no usable conversation among 1"):
        read_sharegpt(path)
    with pytest.raises(DatasetError, match="no usable conversation among 0"):
        read_sharegpt(write(tmp_path, "e.json", "[ ]"))


# --- synthetic ----------------------------------------------------------------------------


def test_synthetic_prompts_are_exactly_the_drawn_length_under_the_estimate() -> None:
    prompts = synthetic(400, LengthDistribution("normal", 300, 60), None, seed=5)
    lengths = [p.input_tokens for p in prompts]
    assert all(estimate_tokens(user_text(p)) == p.input_tokens for p in prompts)
    # The draws are the distribution's: mean 300, stdev 60 (3 % and 10 % leeway).
    assert abs(statistics.fmean(lengths) - 300) < 9
    assert abs(statistics.pstdev(lengths) - 60) < 6


@settings(max_examples=200)
@given(tokens=st.integers(1, 3000), seed=st.integers(0, 10**6), index=st.integers(0, 10**7))
def test_filler_text_hits_any_length_exactly_with_or_without_a_prefix(
    tokens: int, seed: int, index: int
) -> None:
    plain = filler_text(tokens, random.Random(seed))
    assert estimate_tokens(plain) == tokens
    prefix = f"[req {index}] "
    prefixed = filler_text(tokens, random.Random(seed), prefix=prefix)
    assert prefixed.startswith(prefix)
    if tokens > estimate_tokens(prefix):
        assert estimate_tokens(prefixed) == tokens


def test_synthetic_prompts_are_the_same_under_a_seed_and_differ_under_another() -> None:
    lengths = LengthDistribution("uniform", 100, 50)
    outputs = LengthDistribution("fixed", 64)
    first = synthetic(20, lengths, outputs, seed=1)
    assert first == synthetic(20, lengths, outputs, seed=1)
    other = synthetic(20, lengths, outputs, seed=2)
    assert [user_text(p) for p in first] != [user_text(p) for p in other]
    assert all(p.max_tokens == 64 for p in first)


def test_synthetic_lengths_follow_their_distribution_and_never_drop_below_one() -> None:
    uniform = synthetic(300, LengthDistribution("uniform", 50, 10), None, seed=3)
    assert {p.input_tokens for p in uniform} <= set(range(40, 61))
    assert min(p.input_tokens for p in uniform) == 40
    assert max(p.input_tokens for p in uniform) == 60
    clamped = synthetic(200, LengthDistribution("normal", 2, 50), None, seed=3)
    assert min(p.input_tokens for p in clamped) == 1
    outputs = synthetic(
        100, LengthDistribution("fixed", 8), LengthDistribution("normal", 5, 40), seed=3
    )
    assert min(p.max_tokens or 0 for p in outputs) == 1


def test_synthetic_unique_prefixes_differ_and_keep_the_length_exact() -> None:
    prompts = synthetic(50, LengthDistribution("fixed", 40), None, seed=9, unique_prefix=True)
    texts = [user_text(p) for p in prompts]
    assert [t.split("]")[0] for t in texts] == [f"[req {i}" for i in range(50)]
    assert all(estimate_tokens(t) == 40 for t in texts)


def test_a_length_distribution_rejects_a_mean_below_one_or_a_negative_spread() -> None:
    with pytest.raises(ScenarioError, match="mean must be at least 1"):
        LengthDistribution("fixed", 0)
    with pytest.raises(ScenarioError, match="spread not negative"):
        LengthDistribution("normal", 10, -1)
    with pytest.raises(ScenarioError, match="not a distribution"):
        LengthDistribution("zipf", 10)  # type: ignore[arg-type]


def test_synthetic_needs_at_least_one_prompt() -> None:
    with pytest.raises(ScenarioError) as error:
        synthetic(0, LengthDistribution("fixed", 10), None, seed=0)
    assert error.value.key_path == "prompts.count"


# --- unique prefixes and sampling ----------------------------------------------------------


def test_with_unique_prefix_prepends_the_index_to_the_first_message_and_re_estimates() -> None:
    prompt = Prompt(
        ({"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}), 3, 12
    )
    seven = with_unique_prefix(prompt, 7)
    assert seven.messages == (
        {"role": "system", "content": "[req 7] Be brief."},
        {"role": "user", "content": "Hi"},
    )
    assert seven.input_tokens == estimate_tokens("[req 7] Be brief.") + estimate_tokens("Hi")
    assert seven.max_tokens == 12
    assert with_unique_prefix(prompt, 7) == seven
    assert with_unique_prefix(prompt, 8).messages != seven.messages
    assert prompt.messages[0]["content"] == "Be brief."  # the original is untouched


def test_sample_without_a_count_gives_each_prompt_once() -> None:
    prompts = inline([f"p{i}" for i in range(10)])
    assert list(sample(prompts, None, seed=0, shuffle=False)) == prompts
    shuffled = list(sample(prompts, None, seed=0, shuffle=True))
    assert sorted(map(user_text, shuffled)) == sorted(map(user_text, prompts))
    assert shuffled != prompts


def test_sample_cycles_when_more_requests_than_prompts() -> None:
    prompts = inline(["a", "b", "c"])
    assert [user_text(p) for p in sample(prompts, 7, seed=0, shuffle=False)] == list("abcabca")


def test_shuffled_sampling_is_a_new_permutation_each_pass_deterministic_under_the_seed() -> None:
    prompts = inline([f"p{i}" for i in range(8)])
    order = [user_text(p) for p in sample(prompts, 24, seed=4, shuffle=True)]
    passes = [order[0:8], order[8:16], order[16:24]]
    assert all(sorted(one) == sorted(map(user_text, prompts)) for one in passes)
    assert passes[0] != passes[1]
    assert order == [user_text(p) for p in sample(prompts, 24, seed=4, shuffle=True)]
    assert order != [user_text(p) for p in sample(prompts, 24, seed=5, shuffle=True)]


def test_sampling_nothing_is_an_error() -> None:
    with pytest.raises(ScenarioError, match="no prompts"):
        sample([], 3, seed=0, shuffle=False)
