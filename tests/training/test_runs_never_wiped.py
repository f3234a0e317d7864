"""A recipe never wipes an earlier run without being asked; flags say yes or no strictly.

Before, a run into an ``--out`` that held an earlier run silently deleted its backups
and log and wrote its own; ``--augment Y`` or ``flase`` read as False; a kill during
the final save left a hidden ``.model.keras.tmp-PID.keras`` behind for good.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mobilenet_zoo.training.identity import EarlierRunError, claim_out

ROOT = Path(__file__).resolve().parents[2]


def _earlier_run(folder: Path) -> dict[str, bytes]:
    (folder / "backup").mkdir(parents=True)
    (folder / "backup" / "latest.weights.h5").write_bytes(b"weights of epoch 7")
    (folder / "log.csv").write_text("epoch,loss\n0,1.5\n")
    (folder / "run_identity.json").write_text(json.dumps({"flags": {"lr": 0.1}, "data": "x"}))
    (folder / "model.keras").write_bytes(b"the earlier model")
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _recipe(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow"}
    return subprocess.run([sys.executable, str(ROOT / "recipes" / "ssd_coco.py"), *args],
                          capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)


@pytest.mark.integration
def test_a_recipe_into_a_folder_with_an_earlier_run_refuses_and_changes_nothing(tmp_path):
    before = _earlier_run(tmp_path / "run")
    result = _recipe("--smoke", "--out", str(tmp_path / "run"))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "holds an earlier run" in result.stderr and "--resume" in result.stderr
    assert "--overwrite" in result.stderr
    assert _files(tmp_path / "run") == before


@pytest.mark.integration
def test_a_refused_resume_is_one_line_without_a_traceback(tmp_path):
    _earlier_run(tmp_path / "run")
    result = _recipe("--smoke", "--resume", "--out", str(tmp_path / "run"))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "error: --resume:" in result.stderr and "another configuration or data" in result.stderr
    assert "pass --overwrite instead of --resume" in result.stderr  # a fix that works


def test_overwrite_clears_the_earlier_runs_state_and_resume_with_overwrite_is_refused(tmp_path, capsys):
    folder = tmp_path / "run"
    _earlier_run(folder)
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(EarlierRunError, match="give one of them"):
        claim_out(str(folder), resume=True, overwrite=True)
    claim_out(str(folder), resume=False, overwrite=True)
    assert sorted(_files(folder)) == ["model.keras", "notes.txt"]  # replaced when the run saves
    assert "removed the earlier run's" in capsys.readouterr().out


def test_an_empty_or_unrelated_folder_is_a_fine_out(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "readme.txt").write_text("x")
    claim_out(str(tmp_path), resume=False, overwrite=False)
    assert (tmp_path / "readme.txt").exists()


def test_a_killed_saves_temporary_file_is_removed_on_the_next_start(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    stale = tmp_path / f".model.keras.tmp-{dead}.keras"
    stale.write_bytes(b"half a model")
    (tmp_path / "checkpoints").mkdir()
    stale_ckpt = tmp_path / "checkpoints" / f".tmp-{dead}.weights.h5"
    stale_ckpt.write_bytes(b"half")
    live = tmp_path / f".results.json.tmp-{os.getpid()}.json"  # a writer still running
    live.write_text("{")
    claim_out(str(tmp_path), resume=True, overwrite=False)
    assert not stale.exists() and not stale_ckpt.exists()
    assert live.exists()


@pytest.mark.parametrize("word,value", [("true", True), ("Yes", True), ("1", True), ("on", True),
                                        ("FALSE", False), ("no", False), ("0", False), ("off", False)])
def test_yes_no_flags_read_the_usual_words(word, value):
    from recipes import imagenet

    assert imagenet.parse_args(["--augment", word]).augment is value


@pytest.mark.parametrize("word", ["Y", "flase", "", "2", "nope"])
def test_yes_no_flags_refuse_any_other_word(word, capsys):
    from recipes import imagenet

    with pytest.raises(SystemExit) as exit_info:
        imagenet.parse_args(["--augment", word])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--augment" in err and "true/yes/1/on" in err and repr(word) in err


def test_a_run_kept_in_a_stage_sub_folder_is_found_and_overwrite_clears_it(tmp_path):
    """recipes/transfer.py keeps each stage's backup and log in OUT/head, OUT/fine_tune."""
    (tmp_path / "head" / "backup").mkdir(parents=True)
    (tmp_path / "head" / "backup" / "latest.weights.h5").write_bytes(b"epoch 3")
    (tmp_path / "head" / "log.csv").write_text("epoch,loss\n")
    (tmp_path / "my_photos").mkdir()
    (tmp_path / "my_photos" / "a.jpg").write_bytes(b"jpeg")
    with pytest.raises(EarlierRunError, match=r"head/log.csv, head/backup"):
        claim_out(str(tmp_path), resume=False, overwrite=False)
    assert (tmp_path / "head" / "backup" / "latest.weights.h5").exists()
    claim_out(str(tmp_path), resume=False, overwrite=True)
    assert not (tmp_path / "head" / "backup").exists() and not (tmp_path / "head" / "log.csv").exists()
    assert (tmp_path / "my_photos" / "a.jpg").read_bytes() == b"jpeg"


def test_a_users_files_that_look_like_temporaries_are_never_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    mine = [f"notes.tmp-{dead}.txt", f"report.tmp-{dead}", f"draft.tmp-{dead}.pdf"]
    for name in mine:
        (tmp_path / name).write_text("mine")
    (tmp_path / f"model.tflite.tmp-{dead}").write_bytes(b"half an export")
    claim_out(str(tmp_path), resume=False, overwrite=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(mine)
