"""The built-in mock of the Onysoft / OpenAI streaming API: real HTTP on loopback.

- `MockConfig`: latency, output, usage and cost, faults, send log.
- `serve` / `running_mock`: serve in the current trio run (the hypercorn engine).
- `MockProcess`: serve from a child process (a sync context manager), on either engine
  (`MockConfig.engine`: "hypercorn", or "lean", `onybench.mock.lean`).
"""

from onybench.mock.config import FAULTS, MockConfig
from onybench.mock.server import MockEndpoint, MockProcess, running_mock, serve

__all__ = ["FAULTS", "MockConfig", "MockEndpoint", "MockProcess", "running_mock", "serve"]
