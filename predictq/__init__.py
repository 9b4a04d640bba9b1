"""predictq: queue-driven scoring service for the approved GLM_Model_26 model.

`predictq.Client` (and `predictq.Job`) are imported on first use, so `import predictq` stays cheap.
"""

from __future__ import annotations

from typing import Any

from core.version import VERSION as __version__

__all__ = ["Client", "Job", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "Client":
        from predictq.client import Client

        return Client
    if name == "Job":
        from predictq.job import Job

        return Job
    raise AttributeError(f"module 'predictq' has no attribute {name!r}")
