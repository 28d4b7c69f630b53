"""Finding the peers: a missing one skips its test, except on CI, where it fails."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import NoReturn

import pytest


def peer_missing(reason: str) -> NoReturn:
    """Skip the calling test for `reason`; under CI=true fail it: `.ci/run` installs every peer."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (.ci/run must install it)")
    pytest.skip(reason)


def require_program(name: str, install_hint: str) -> str:
    """The path of the program `name`: beside this Python first, then on PATH.

    Beside this Python, because a package's scripts (litellm) sit in the venv's bin,
    which is not on PATH when pytest is started as `.venv/bin/pytest`.
    """
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    path = shutil.which(name, path=search)
    if path is None:
        peer_missing(f"{name} not found: {install_hint}")
    return path
