"""The README's Python examples run as written, offline, from a clone.

The shell blocks are the install and test commands that CI itself runs (``.ci/run``).
The Python blocks run in order in one fresh interpreter (names carry over, as a reader pastes
them), in an empty folder with an empty cache and downloads forbidden. A line whose
comment says ``# downloads`` is left out: it needs the network, which tests never use.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MARK = "# downloads"

pytestmark = pytest.mark.integration


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def offline_lines(block: str) -> str:
    return "\n".join(line for line in block.splitlines() if MARK not in line)


def test_the_readme_marks_what_downloads_and_keeps_the_rest_offline():
    blocks = python_blocks((ROOT / "README.md").read_text())
    assert len(blocks) >= 4
    marked = [line for block in blocks for line in block.splitlines() if MARK in line]
    # the published-weights and dataset lines are the marked ones
    assert any('weights="imagenet"' in line and "alpha=0.25" in line for line in marked)
    assert any('from_preset("ssd_mobilenet_v1_coco")' in line for line in marked)
    assert any("tfds_coco" in line for line in marked)
    kept = "\n".join(offline_lines(b) for b in blocks)
    assert "ssd_mobilenet_v1_coco\"" not in kept and "tfds_coco" not in kept


def test_every_readme_python_block_runs_as_written_offline(tmp_path):
    blocks = python_blocks((ROOT / "README.md").read_text())
    program = "\n\n".join(offline_lines(b) for b in blocks)
    program += (
        "\n\nimport numpy as np\n"
        "assert dets['boxes'].shape[0] == 1 and dets['scores'][0, 0] > 0.5  # the astronaut's face\n"
        "x0, y0, x1, y1 = dets['boxes'][0, 0]\n"
        "assert 150 < x0 < x1 < 300 and 30 < y0 < y1 < 200, dets['boxes'][0, 0]  # in her pixels\n"
        "assert classifier.num_classes == 5\n"
        "import os\n"
        "assert os.path.getsize('faces.tflite') > 1e6 and os.path.isdir('exported/faces')\n"
        "print('README OK')\n")
    (tmp_path / "readme_examples.py").write_text(program)
    env = {**os.environ, "MOBILENET_ZOO_OFFLINE": "1", "MOBILENET_ZOO_CACHE": str(tmp_path / "cache"),
           "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "readme_examples.py"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "README OK" in done.stdout
