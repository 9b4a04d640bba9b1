"""Artifacts: JSON parameters with metadata, verified by sha256 on load; no pickle anywhere."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from model.artifact import APPROVED_ARTIFACT, load_artifact, params_sha256, save_artifact
from model.errors import ArtifactError
from model.scoring import load_scorer


def test_approved_artifact_verifies_and_carries_metadata() -> None:
    artifact = load_artifact(None)
    assert artifact.sha256 == params_sha256(artifact.params)
    assert artifact.version.startswith("glm26-approved-") and artifact.version.endswith(artifact.sha256[:12])
    meta = artifact.metadata
    assert meta["cutoff"] == 0.712 and len(meta["feature_names"]) == 25
    assert {"created_at", "libraries", "metrics", "provenance"} <= set(meta)
    assert load_scorer("").version == artifact.version


def test_round_trip_keeps_every_figure_exactly(tmp_path: Path) -> None:
    source = load_artifact()
    saved = save_artifact(tmp_path / "m", source.params, "copy", {"provenance": {"from": "test"}})
    loaded = load_artifact(tmp_path / "m")
    assert loaded.params == source.params and loaded.sha256 == saved.sha256 == source.sha256
    assert loaded.metadata["provenance"] == {"from": "test"} and loaded.version == f"copy-{source.sha256[:12]}"


def _tampered(tmp_path: Path, edit: object) -> Path:
    document = orjson.loads(APPROVED_ARTIFACT.read_bytes())
    edit(document)  # type: ignore[operator]
    path = tmp_path / "model.json"
    path.write_bytes(orjson.dumps(document))
    return path


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["params"]["coefficients"].__setitem__(0, 0.5), "fails its integrity check"),
        (lambda d: d["params"].__setitem__("cutoff", 0.5), "fails its integrity check"),
        (lambda d: d.__setitem__("sha256", "0" * 64), "fails its integrity check"),
        (lambda d: d.__setitem__("format", "pickle"), "is not in format"),
        (lambda d: d["params"].pop("features"), "malformed"),
        (lambda d: d["params"]["scaler_var_ddof0"].__setitem__(0, -1.0), "positive variances"),
    ],
)
def test_tampered_artifact_is_refused(tmp_path: Path, edit: object, message: str) -> None:
    with pytest.raises(ArtifactError, match=message):
        load_scorer(str(_tampered(tmp_path, edit)))


def test_unreadable_artifacts(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="cannot read"):
        load_artifact(tmp_path / "absent.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        load_artifact(tmp_path / "bad.json")


def test_a_pinned_checksum_refuses_any_other_model(tmp_path: Path) -> None:
    approved = load_scorer()
    assert load_scorer(None, approved.sha256.upper()).sha256 == approved.sha256
    with pytest.raises(ArtifactError, match="not the pinned model"):
        load_scorer(None, "0" * 64)
