"""The built image: its layers, and a rebuild after a code edit that reuses the dependency layer."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.container.compose_stack import ENGINE, ROOT, record

pytestmark = [pytest.mark.container, pytest.mark.slow]

IMAGE = "predictq:local"
EDITED = "predictq:cache-check"


def engine(*args: str, timeout: float = 120) -> str:
    done = subprocess.run([ENGINE, *args], capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{ENGINE} {shlex.join(args)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def layers(image: str) -> list[str]:
    return engine("image", "inspect", "--format", "{{range .RootFS.Layers}}{{println .}}{{end}}", image).split()


def build_context(folder: Path) -> Path:
    """A copy of what the build sees: the Dockerfile, .dockerignore and every path the .dockerignore admits."""
    admitted = [line[1:].rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.startswith("!")]
    for name in ["Dockerfile", ".dockerignore", *admitted]:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, folder / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, folder / name)
    return folder


@pytest.fixture
def edited_image(tmp_path: Path) -> Iterator[str]:
    if not ENGINE:
        pytest.skip("no container engine configured: deploy/container-test.sh runs these tests")
    context = build_context(tmp_path)
    with (context / "predictq" / "__init__.py").open("a") as source:
        source.write("# a code edit\n")
    start = time.monotonic()
    args = shlex.split(os.environ.get("PREDICTQ_CONTAINER_BUILD_ARGS", ""))
    done = subprocess.run([ENGINE, "build", *args, "-t", EDITED, str(context)], capture_output=True, text=True,
                          timeout=900)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-5000:]
    record("rebuild after a code edit", f"{time.monotonic() - start:.1f} s, "
                                        f"{log.count('Using cache')} steps from cache")
    yield EDITED
    subprocess.run([ENGINE, "image", "rm", EDITED], capture_output=True, timeout=120)


def test_code_edit_changes_only_the_last_layer(edited_image: str) -> None:
    before, after = layers(IMAGE), layers(edited_image)
    assert len(before) == len(after) >= 3
    assert before[:-1] == after[:-1], "a layer below the project's own code was rebuilt"
    assert before[-1] != after[-1], "the edit did not reach the image"
    history = engine("history", "--format", "{{.Size}}\t{{.CreatedBy}}", IMAGE).splitlines()
    copies = [line.split("\t") for line in history if "COPY" in line]
    # Newest first: the project's code, then the dependencies' virtual environment.
    (code_size, _), (deps_size, _) = copies[:2]
    size = int(engine("image", "inspect", "--format", "{{.Size}}", IMAGE))
    record("image size, layers", f"{size / 1e6:.0f} MB, {len(before)} layers")
    record("dependency layer (reused) / code layer", f"{deps_size} / {code_size}")
