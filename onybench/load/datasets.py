"""Prompt sources: inline strings, text and JSON-lines files, ShareGPT, synthetic.

Every source becomes a list of `Prompt`s (chat messages, an input-token
estimate, and the output length the source asks for, if any), read and checked
in full before the first request: a missing file, a malformed line or an empty
dataset is a `DatasetError` naming the file, the line and the fix. `sample`
then orders them under the run's seed. Nothing is downloaded, ever: token
counts come from `estimate_tokens`, a measured heuristic, not a tokenizer.
"""

from __future__ import annotations

import difflib
import itertools
import json
import random
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from onybench.errors import ScenarioError

# --- the data ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Prompt:
    """One request's input: OpenAI chat messages (``{"role", "content"}``).

    `input_tokens` is `estimate_tokens` summed over the messages' contents (the
    chat template's few tokens per message are not counted). `max_tokens` is the
    output length the source asks for (a ShareGPT reply's length, a synthetic
    draw, a JSONL line's ``max_tokens``), None when it says nothing.
    """

    messages: tuple[Mapping[str, str], ...]
    input_tokens: int
    max_tokens: int | None = None


class DatasetError(ScenarioError):
    """A prompt file that cannot be used; the message names file:line and the fix."""

    def __init__(
        self,
        message: str,
        key_path: str | None = None,
        *,
        path: Path | None = None,
        line: int | None = None,
    ) -> None:
        self.path = path
        self.line = line
        if path is not None:
            where = f"{path}:{line}" if line is not None else str(path)
            message = f"{where}: {message}"
        super().__init__(message, key_path)


# --- the token estimate --------------------------------------------------------

_LETTER_RUN = re.compile(r"[^\W\d_]+")  # runs of letters, any script
_DIGIT = re.compile(r"\d")
_SYMBOL = re.compile(r"[^\w\s]")  # punctuation, symbols, emoji


def estimate_tokens(text: str) -> int:
    """Roughly how many tokens `text` is, without a tokenizer (nothing to download).

    A linear count, in eighths of a token, rounded to the nearest whole token
    (at least 1 for non-empty text, 0 for ""):

    - each run of letters (a word, of any script): 1/2, plus 1/8 per letter;
    - each letter outside ASCII (ş, ğ, ı, é, …) 1 more;
    - each digit 1, each punctuation mark or symbol 5/8, each newline 1.

    So a 4-letter English word is 1 token, a 12-letter one 2, and Turkish words
    cost more per letter, as BPE vocabularies trained mostly on English make
    them. The weights were fitted to o200k_base (the GPT-4o family's tokenizer)
    on one half of a generated English/Turkish corpus and rounded.

    Measured by ``benchmarks/token_estimate.py`` against the exact o200k_base
    and cl100k_base BPE vocabularies that the `bpe-openai` 0.1.4 wheel bundles
    (its cl100k counts equal `tiktoken`'s on every text tried). Held-out texts:
    230 generated from sentences the weights were not fitted on (English and
    Turkish prose, questions, numbers, code, JSON; 1-34 sentences each) and the
    47 turns of ``scenarios/data/sharegpt-sample.json``. Relative error
    |estimate − true| / true, mean / p95:

    ============ =============== =============== =============== ===============
    tokenizer    all 277         English         Turkish         ShareGPT
    ============ =============== =============== =============== ===============
    o200k_base   6.9 % / 18.5 %  6.9 % / 18.2 %  6.6 % / 18.5 %  9.0 % / 20.0 %
    cl100k_base  14.9 % / 31.1 % 6.9 % / 18.2 %  25.3 % / 33.3 % 11.9 % / 30.8 %
    ============ =============== =============== =============== ===============

    The usual rule of thumb, UTF-8 bytes / 4, does worse (o200k: 13.5 % / 40 %,
    18 % / 50 % on English, which it overcounts), and so does a word-and-punctuation
    count × 1.1 (23 % / 50 %, as it misses Turkish's long words). cl100k_base
    (GPT-4, GPT-3.5) splits Turkish into ~25 % more tokens than o200k_base, so
    the estimate runs low there. Other vocabularies (Llama, Qwen, Mistral) were
    not measured. Use the estimate for sizing and reporting, never where the
    server's own ``usage`` count is available.
    """
    if not text:
        return 0
    return max(1, (_eighths(text) + 4) // 8)


def _eighths(text: str) -> int:
    """`estimate_tokens` before rounding, in eighths of a token (exact integers)."""
    total = 0
    for run in _LETTER_RUN.findall(text):
        non_ascii = len(run) - len(run.encode("ascii", "ignore"))
        total += 4 + len(run) + 8 * non_ascii
    total += 8 * len(_DIGIT.findall(text))
    total += 5 * len(_SYMBOL.findall(text))
    return total + 8 * text.count("\n")


def _messages_tokens(messages: Sequence[Mapping[str, str]]) -> int:
    return sum(estimate_tokens(message["content"]) for message in messages)


def _user_prompt(text: str, max_tokens: int | None = None) -> Prompt:
    messages = ({"role": "user", "content": text},)
    return Prompt(messages, estimate_tokens(text), max_tokens)


# --- inline and files ------------------------------------------------------------


def inline(prompts: Sequence[str]) -> list[Prompt]:
    """Prompts written in the scenario (``prompts.prompts``), one user message each."""
    if not prompts:
        raise ScenarioError("give at least one prompt", "prompts.prompts")
    for number, text in enumerate(prompts):
        if not text.strip():
            raise ScenarioError(
                "the prompt is empty; write some text or remove it", f"prompts.prompts[{number}]"
            )
    return [_user_prompt(text) for text in prompts]


def load_text(path: Path) -> list[Prompt]:
    """One prompt per non-empty line of a UTF-8 text file (blank lines are skipped)."""
    prompts = [_user_prompt(line) for _, line in _lines(path) if line.strip()]
    if not prompts:
        raise DatasetError(
            "the file has no prompts; write one prompt per line", "prompts.path", path=path
        )
    return prompts


_JSONL_SHAPE = (
    'write each line as a JSON string, {"prompt": "..."} or '
    '{"messages": [{"role": "user", "content": "..."}]}, with an optional "max_tokens"'
)
_ROLES = ("system", "developer", "user", "assistant")


def load_jsonl(path: Path) -> list[Prompt]:
    """One prompt per non-blank line: a JSON string (the prompt), ``{"prompt": "..."}``
    or ``{"messages": [...]}`` (OpenAI chat messages), with an optional positive
    ``"max_tokens"``. Other keys (ids, metadata) are ignored."""
    prompts = []
    for number, line in _lines(path):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(
                f"not valid JSON ({exc.msg} at column {exc.colno}); {_JSONL_SHAPE}",
                "prompts.path",
                path=path,
                line=number,
            ) from None
        prompts.append(_jsonl_prompt(item, path, number))
    if not prompts:
        raise DatasetError(f"the file has no prompts; {_JSONL_SHAPE}", "prompts.path", path=path)
    return prompts


def _jsonl_prompt(item: Any, path: Path, line: int) -> Prompt:
    def fail(reason: str) -> DatasetError:
        return DatasetError(reason, "prompts.path", path=path, line=line)

    if isinstance(item, str):
        if not item.strip():
            raise fail("the prompt is empty; write some text or remove the line")
        return _user_prompt(item)
    if not isinstance(item, dict):
        raise fail(f"found {_json_type(item)} {_clip(item)}; {_JSONL_SHAPE}")
    max_tokens = item.get("max_tokens")
    if max_tokens is not None and (
        not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1
    ):
        raise fail(f'"max_tokens" must be a whole number of at least 1, found {max_tokens!r}')
    if "prompt" in item and "messages" in item:
        raise fail('give "prompt" or "messages", not both')
    if "prompt" in item:
        text = item["prompt"]
        if not isinstance(text, str):
            raise fail(f'"prompt" must be a string, found {_clip(text)}')
        if not text.strip():
            raise fail('"prompt" is empty; write some text or remove the line')
        return _user_prompt(text, max_tokens)
    if "messages" in item:
        messages = _chat_messages(item["messages"], fail)
        return Prompt(messages, _messages_tokens(messages), max_tokens)
    hint = ""
    for key in item:
        close = difflib.get_close_matches(key, ("prompt", "messages"), n=1, cutoff=0.6)
        if close:
            hint = f' (did you mean "{close[0]}" for "{key}"?)'
            break
    keys = ", ".join(f'"{key}"' for key in item) or "none"
    raise fail(f'no "prompt" or "messages" key{hint}, found keys {keys}; {_JSONL_SHAPE}')


def _chat_messages(
    value: Any, fail: Callable[[str], DatasetError]
) -> tuple[Mapping[str, str], ...]:
    if not isinstance(value, list) or not value:
        raise fail(f'"messages" must be a non-empty list of messages, found {_clip(value)}')
    messages: list[Mapping[str, str]] = []
    for number, message in enumerate(value):
        where = f'"messages"[{number}]'
        if not isinstance(message, dict):
            raise fail(f'{where} must be {{"role": ..., "content": ...}}, found {_clip(message)}')
        role, content = message.get("role"), message.get("content")
        if role not in _ROLES:
            raise fail(f"{where} has role {role!r}; use one of {', '.join(_ROLES)}")
        if not isinstance(content, str):
            raise fail(f'{where} needs "content" as a string, found {_clip(content)}')
        messages.append({"role": str(role), "content": content})
    if not any(message["content"].strip() for message in messages):
        raise fail('every message is empty; write some text in "content"')
    return tuple(messages)


# --- ShareGPT ----------------------------------------------------------------------

_HUMAN = frozenset({"human", "user"})
_GPT = frozenset({"gpt", "chatgpt", "assistant", "bard", "bing"})


@dataclass(frozen=True, slots=True)
class ShareGptDataset:
    """What `read_sharegpt` found: the prompts, and how many conversations it
    skipped because they hold no human turn followed by a reply."""

    prompts: list[Prompt]
    skipped: int


def read_sharegpt(path: Path, *, max_prompts: int | None = None) -> ShareGptDataset:
    """Read a ShareGPT JSON file, the format vLLM's serving benchmark reads::

        [{"id": "...", "conversations": [{"from": "human", "value": "..."},
                                         {"from": "gpt", "value": "..."}, ...]}, ...]

    A conversation becomes one request when its first human turn ("human" or
    "user") is followed directly by a reply ("gpt", "chatgpt", "assistant",
    …), both non-empty: the human turn is the prompt, and ``max_tokens`` is the
    reply's estimated length (vLLM's convention: ask for as much as the real
    answer was). Later turns are not sent. Other conversations are skipped and
    counted; at `max_prompts` reading stops (skips after it are not counted).
    Unlike vLLM, no length filter is applied.
    """
    if max_prompts is not None and max_prompts < 1:
        raise ScenarioError(f"must be at least 1, got {max_prompts}", "prompts.count")
    prompts: list[Prompt] = []
    skipped = 0
    entries = 0
    for line, entry in _json_list(path):
        if max_prompts is not None and len(prompts) >= max_prompts:
            break
        entries += 1
        turns = entry.get("conversations") if isinstance(entry, dict) else None
        if not isinstance(turns, list):
            raise DatasetError(
                f'this entry has no "conversations" list (found {_clip(entry)}); {_SHAREGPT_SHAPE}',
                "prompts.path",
                path=path,
                line=line,
            )
        prompt = _sharegpt_prompt(turns)
        if prompt is None:
            skipped += 1
        else:
            prompts.append(prompt)
    if not prompts:
        raise DatasetError(
            f"no usable conversation among {entries}: each needs a human turn followed "
            "directly by a gpt reply, both non-empty",
            "prompts.path",
            path=path,
        )
    return ShareGptDataset(prompts, skipped)


_SHAREGPT_SHAPE = (
    'a ShareGPT file is one JSON list of {"conversations": [{"from": "human", '
    '"value": "..."}, {"from": "gpt", "value": "..."}]}'
)
_WHITESPACE = re.compile(r"[ \t\n\r]*")


def _json_list(path: Path) -> Iterator[tuple[int, Any]]:
    """The items of a file holding one JSON list, each with the line it starts on.

    Decoded item by item with `json.JSONDecoder.raw_decode` (the same C scanner
    as `json.loads`), so errors about an item can name its line.
    """
    text = _read(path)
    decoder = json.JSONDecoder()

    def fail(reason: str, position: int) -> DatasetError:
        line = text.count("\n", 0, position) + 1
        return DatasetError(reason, "prompts.path", path=path, line=line)

    def skip_space(position: int) -> int:
        match = _WHITESPACE.match(text, position)
        assert match is not None  # the pattern matches the empty string
        return match.end()

    position = skip_space(0)
    if not text.startswith("[", position):
        try:
            found = _json_type(json.loads(text))
        except json.JSONDecodeError as exc:
            raise fail(f"not valid JSON ({exc.msg}); {_SHAREGPT_SHAPE}", exc.pos) from None
        raise fail(f"expected a JSON list, found {found}; {_SHAREGPT_SHAPE}", position)
    position = skip_space(position + 1)
    if text.startswith("]", position):
        return
    line, counted_to = 1, 0
    while True:
        line += text.count("\n", counted_to, position)
        counted_to = position
        try:
            item, position = decoder.raw_decode(text, position)
        except json.JSONDecodeError as exc:
            raise fail(f"not valid JSON ({exc.msg} at column {exc.colno})", exc.pos) from None
        yield line, item
        position = skip_space(position)
        if text.startswith(",", position):
            position = skip_space(position + 1)
        elif text.startswith("]", position):
            if skip_space(position + 1) != len(text):
                raise fail("unexpected text after the list's closing ]", position + 1)
            return
        else:
            raise fail(
                "expected ',' or ']' here (a comma missing between items, or the list cut short?)",
                position,
            )


def load_sharegpt(path: Path, *, max_prompts: int | None = None) -> list[Prompt]:
    """The prompts of a ShareGPT file (see `read_sharegpt`, which also counts skips)."""
    return read_sharegpt(path, max_prompts=max_prompts).prompts


def _sharegpt_prompt(turns: list[Any]) -> Prompt | None:
    for number, turn in enumerate(turns):
        if not isinstance(turn, dict) or turn.get("from") not in _HUMAN:
            continue
        reply = turns[number + 1] if number + 1 < len(turns) else None
        question = turn.get("value")
        if (
            not isinstance(reply, dict)
            or reply.get("from") not in _GPT
            or not isinstance(question, str)
            or not question.strip()
            or not isinstance(reply.get("value"), str)
            or not reply["value"].strip()
        ):
            return None
        return _user_prompt(question, estimate_tokens(reply["value"]))
    return None


# --- synthetic ---------------------------------------------------------------------


@dataclass(frozen=True)
class LengthDistribution:
    """A token length to draw: ``fixed`` (always `mean`), ``uniform`` (an integer
    in mean ± spread) or ``normal`` (mean, standard deviation `spread`, rounded).
    Draws are clamped to at least 1."""

    kind: Literal["fixed", "uniform", "normal"]
    mean: int
    spread: int = 0

    def __post_init__(self) -> None:
        if self.kind not in ("fixed", "uniform", "normal"):
            raise ScenarioError(
                f"{self.kind!r} is not a distribution; use fixed, uniform or normal"
            )
        if self.mean < 1 or self.spread < 0:
            raise ScenarioError(
                f"mean must be at least 1 and spread not negative, got {self.mean} ± {self.spread}"
            )

    def draw(self, rng: random.Random) -> int:
        if self.kind == "fixed":
            return self.mean
        if self.kind == "uniform":
            value = rng.randint(self.mean - self.spread, self.mean + self.spread)
        else:
            value = round(rng.gauss(self.mean, self.spread))
        return max(1, value)


# Common English words of 3-5 letters, each one token (with its leading space)
# in both o200k_base and cl100k_base (checked by benchmarks/token_estimate.py).
# Their mean estimate is 1 token per word, as their true count is, so the
# filler's estimate is also close to what a server counts.
FILLER_WORDS: tuple[str, ...] = (
    "the", "and", "for", "are", "but", "not", "you", "all", "any", "can",
    "had", "her", "was", "one", "our", "out", "day", "get", "has", "him",
    "his", "how", "man", "new", "now", "old", "see", "two", "way", "who",
    "that", "with", "have", "this", "will", "your", "from", "they", "know", "want",
    "been", "good", "much", "some", "time", "very", "when", "come", "here", "just",
    "like", "long", "make", "many", "more", "only", "over", "such", "take", "than",
    "about", "after", "again", "below", "could", "every", "first", "found", "great", "house",
    "large", "learn", "never", "other", "place", "plant", "point", "right", "small", "sound",
    "spell", "still", "study", "their", "there", "these", "thing", "think", "three", "water",
)  # fmt: skip
# Words to land exactly on a length: cost 5/8 … 12/8 of a token (1 to 8 letters).
_FINISHERS: dict[int, str] = {
    5: "a", 6: "an", 7: "the", 8: "that", 9: "about", 10: "before", 11: "between", 12: "children"
}  # fmt: skip


def filler_text(tokens: int, rng: random.Random, *, prefix: str = "") -> str:
    """`prefix` followed by space-separated words from `FILLER_WORDS`, such that
    ``estimate_tokens(result) == tokens`` (when `tokens` exceeds the prefix's own
    estimate; otherwise one word follows the prefix)."""
    # The estimate is additive over words separated by spaces: a word of n
    # letters costs 4 + n eighths, a space nothing; the result rounds
    # (eighths + 4) // 8, so any total in [8·tokens − 4, 8·tokens + 3] lands.
    low = 8 * tokens - 4
    eighths = _eighths(prefix) if prefix else 0
    words: list[str] = []
    while low - eighths > 12:
        word = FILLER_WORDS[rng.randrange(len(FILLER_WORDS))]
        words.append(word)
        eighths += 4 + len(word)
    gap = low - eighths
    words.append(_FINISHERS[min(12, max(5, gap))])
    return prefix + " ".join(words)


def synthetic(
    count: int,
    input_tokens: LengthDistribution,
    output_tokens: LengthDistribution | None,
    *,
    seed: int,
    unique_prefix: bool = False,
) -> list[Prompt]:
    """`count` prompts of filler text whose `estimate_tokens` equals a length
    drawn from `input_tokens`, with ``max_tokens`` drawn from `output_tokens`
    (None: the request's own setting applies). Deterministic under `seed`.

    `unique_prefix` starts prompt i with ``"[req i] "`` (counted in its length)
    so no two share a prefix a server could cache. A drawn length below the
    prefix's own estimate gets the prefix and one word.

    The filler's true length is close to its estimate (benchmarks/token_estimate.py,
    o200k_base and cl100k_base alike): within ±0.2 % on average from 128 tokens
    on (e.g. 1021-1030 true tokens for 1024), ±5 % at 16.
    """
    if count < 1:
        raise ScenarioError(f"must be at least 1, got {count}", "prompts.count")
    rng = random.Random(seed)
    prompts = []
    for index in range(count):
        length = input_tokens.draw(rng)
        max_tokens = output_tokens.draw(rng) if output_tokens is not None else None
        text = filler_text(length, rng, prefix=_unique_prefix(index, "") if unique_prefix else "")
        prompts.append(_user_prompt(text, max_tokens))
    return prompts


def _unique_prefix(index: int, run_tag: str) -> str:
    return f"[req {run_tag}{index}] "


def with_unique_prefix(prompt: Prompt, index: int, run_tag: str = "") -> Prompt:
    """`prompt` with ``"[req <run_tag><index>] "`` at the very start of its first
    message, so requests differ from their first token on and a server's prompt
    cache cannot serve them; `input_tokens` is re-estimated. A `run_tag` unique
    to the run (the run id) keeps a rerun from hitting the cache of the last one."""
    first, *rest = prompt.messages
    changed = {**first, "content": _unique_prefix(index, run_tag) + first["content"]}
    messages = (changed, *rest)
    return replace(prompt, messages=messages, input_tokens=_messages_tokens(messages))


# --- ordering -----------------------------------------------------------------------


def sample(
    prompts: Sequence[Prompt], count: int | None, *, seed: int, shuffle: bool
) -> Iterator[Prompt]:
    """`count` prompts in a deterministic order: the file's order, or with
    `shuffle` a permutation drawn from `seed` (a new one each pass). More
    requests than prompts cycle through them again; None gives each prompt
    once."""
    if not prompts:
        raise ScenarioError("there are no prompts to send", "prompts")
    if count is not None and count < 0:
        raise ScenarioError(f"must not be negative, got {count}", "prompts.count")
    rng = random.Random(seed)

    def passes() -> Iterator[Prompt]:
        while True:
            order = list(prompts)
            if shuffle:
                rng.shuffle(order)
            yield from order

    return itertools.islice(passes(), len(prompts) if count is None else count)


# --- reading ------------------------------------------------------------------------


def _read(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DatasetError(
            "no such file; check the path (relative paths start at the scenario file's folder)",
            "prompts.path",
            path=path,
        ) from None
    except OSError as exc:
        raise DatasetError(
            f"cannot read: {exc.strerror or exc}", "prompts.path", path=path
        ) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DatasetError(
            f"not UTF-8 text (byte {data[exc.start]:#04x}); save the file as UTF-8",
            "prompts.path",
            path=path,
            line=line,
        ) from None


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number from 1, text without its line end). Only \\n (or \\r\\n) ends
    a line, as editors number them; a JSON string may hold U+2028 raw."""
    for number, line in enumerate(_read(path).split("\n"), start=1):
        yield number, line.removesuffix("\r")


def _json_type(value: Any) -> str:
    """What JSON calls the type of a decoded value."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    return "a number"


def _clip(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"
