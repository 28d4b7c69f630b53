"""A run's directory: run.json at the start, records.jsonl as requests finish.

Everything is written so that a crash or SIGKILL loses nothing already measured:
run.json is complete before the first request, and each record is one whole
line, written with a single call and flushed at once.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from onybench.errors import ReportError
from onybench.metrics.record import RequestRecord

RUN_FILE = "run.json"
RECORDS_FILE = "records.jsonl"
REPORT_FILE = "report.json"


class RunDirectory:
    """Owns one run's output folder; refuses a folder that already holds files."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def create(self, run_metadata: dict[str, Any]) -> None:
        """Make the folder (refusing a non-empty one), write run.json, start records.jsonl."""
        if self.path.exists():
            if not self.path.is_dir():
                raise ReportError(f"--out {self.path} exists and is not a directory")
            if any(self.path.iterdir()):
                raise ReportError(
                    f"--out {self.path} is not empty; runs are never mixed: "
                    "choose a new directory or remove this one"
                )
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            write_json(self.path / RUN_FILE, run_metadata)
            (self.path / RECORDS_FILE).touch()
        except OSError as exc:
            raise ReportError(f"cannot write to {self.path}: {exc.strerror or exc}") from None

    def record_writer(self) -> RecordWriter:
        return RecordWriter(self.path / RECORDS_FILE)


class RecordWriter:
    """Appends records to records.jsonl: one record, one line, one unbuffered write.

    The file is opened for appending, so several worker processes can share it:
    each line lands whole, wherever the others' lines fall.
    """

    def __init__(self, path: Path) -> None:
        try:
            self._file: BinaryIO = path.open("ab", buffering=0)
        except OSError as exc:
            raise ReportError(f"cannot write to {path}: {exc.strerror or exc}") from None

    def append(self, record: RequestRecord) -> None:
        self._file.write(orjson.dumps(record.to_json_dict()) + b"\n")

    def close(self) -> None:
        self._file.close()


def write_json(path: Path, document: dict[str, Any]) -> Path:
    """Write atomically (temp file + rename), so a reader never sees half a file."""
    temp = path.with_suffix(path.suffix + ".tmp")
    temp.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")
    os.replace(temp, path)
    return path


def read_records(run_dir: Path) -> Iterator[RequestRecord]:
    """Every whole record line of a run; a last line cut by a crash is skipped."""
    path = run_dir / RECORDS_FILE
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise ReportError(f"cannot read {path}: {exc.strerror or exc}") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield RequestRecord.from_json_dict(orjson.loads(line))
        except (orjson.JSONDecodeError, TypeError) as exc:
            if number == len(lines):
                return
            raise ReportError(f"{path}:{number}: not a record: {exc}") from None


def read_json_file(path: Path) -> dict[str, Any]:
    """A JSON object from `path`; a ReportError says why it cannot be one."""
    try:
        document = orjson.loads(path.read_bytes())
    except OSError as exc:
        raise ReportError(f"cannot read {path}: {exc.strerror or exc}") from None
    except orjson.JSONDecodeError as exc:
        raise ReportError(f"{path} is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ReportError(f"{path} is not a JSON object")
    return document
