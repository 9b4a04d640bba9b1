"""Versioned model artifacts: one JSON file of parameters plus metadata, integrity-checked on load (no pickle)."""

from __future__ import annotations

import hashlib
import platform
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import orjson

from model.errors import ArtifactError
from model.params import ModelParams

ARTIFACT_FORMAT = "predictq.glm/1"
ARTIFACT_FILENAME = "model.json"
APPROVED_ARTIFACT = Path(__file__).resolve().parent / "data" / "glm26_approved.json"
_LIBRARIES = ("predictq", "numpy", "pandas", "pyarrow", "scikit-learn", "scipy", "statsmodels", "orjson")


@dataclass(frozen=True)
class Artifact:
    """A model's parameters, its metadata, and the sha256 of the canonical parameter bytes."""

    params: ModelParams
    metadata: Mapping[str, Any]
    sha256: str

    @property
    def version(self) -> str:
        """The version id recorded in the metadata."""
        return str(self.metadata["version"])


def params_sha256(params: ModelParams) -> str:
    """sha256 of the canonical JSON of the parameters (sorted keys, shortest round-trip floats)."""
    return hashlib.sha256(orjson.dumps(params.to_dict(), option=orjson.OPT_SORT_KEYS)).hexdigest()


def library_versions() -> dict[str, str]:
    """Versions of Python and of the libraries that shape a model's numbers."""
    versions = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            continue
    return versions


def resolve_path(path: str | Path | None) -> Path:
    """The artifact file for a path: None/'' is the approved model, a directory holds `model.json`."""
    if path is None or str(path) == "":
        return APPROVED_ARTIFACT
    resolved = Path(path)
    return resolved / ARTIFACT_FILENAME if resolved.is_dir() else resolved


def save_artifact(path: str | Path, params: ModelParams, name: str, metadata: Mapping[str, Any]) -> Artifact:
    """Write an artifact file (a directory gets `model.json`); version id = name + sha256 prefix."""
    digest = params_sha256(params)
    full = {
        "version": f"{name}-{digest[:12]}",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "libraries": library_versions(),
        "feature_names": list(params.output_features),
        "cutoff": params.cutoff,
        **metadata,
    }
    document = {"format": ARTIFACT_FORMAT, "sha256": digest, "params": params.to_dict(), "metadata": full}
    target = Path(path)
    if target.is_dir() or target.suffix == "":
        target.mkdir(parents=True, exist_ok=True)
        target = target / ARTIFACT_FILENAME
    target.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    return Artifact(params, full, digest)


def load_artifact(path: str | Path | None = None, expected_sha256: str = "") -> Artifact:
    """Read and verify an artifact; ArtifactError when absent, malformed, or its sha256 does not match.

    `expected_sha256`, when given, pins the parameters: the file's own checksum catches corruption, a pinned
    one (from the deployment, not the file) also refuses a file replaced or edited on purpose.
    """
    target = resolve_path(path)
    try:
        document = orjson.loads(target.read_bytes())
    except OSError as exc:
        raise ArtifactError(f"cannot read model artifact {target}: {exc.strerror or exc}") from exc
    except orjson.JSONDecodeError as exc:
        raise ArtifactError(f"model artifact {target} is not valid JSON: {exc}") from exc
    if not isinstance(document, dict) or document.get("format") != ARTIFACT_FORMAT:
        raise ArtifactError(f"model artifact {target} is not in format {ARTIFACT_FORMAT}")
    params = ModelParams.from_dict(document.get("params") or {})
    digest = params_sha256(params)
    if digest != document.get("sha256"):
        raise ArtifactError(
            f"model artifact {target} fails its integrity check: sha256 of its parameters is {digest}, "
            f"the file records {document.get('sha256')}"
        )
    if expected_sha256 and digest != expected_sha256.strip().lower():
        raise ArtifactError(
            f"model artifact {target} is not the pinned model: sha256 of its parameters is {digest}, "
            f"PREDICTQ_MODEL_SHA256 expects {expected_sha256.strip().lower()}"
        )
    metadata = document.get("metadata")
    if not isinstance(metadata, dict) or "version" not in metadata:
        raise ArtifactError(f"model artifact {target} has no version in its metadata")
    return Artifact(params, metadata, digest)
