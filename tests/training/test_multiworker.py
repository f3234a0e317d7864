"""--strategy multiworker, actually run: two worker processes on 127.0.0.1 with TF_CONFIG."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration  # two worker processes each

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 420  # seconds for the whole two-worker run; a hang fails the test, never blocks CI


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _start_workers(args, tmp_path, timeout_s=None):
    cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
    procs = []
    for index in range(2):
        env = dict(os.environ, TF_CONFIG=json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": index}}))
        if timeout_s:
            env["MOBILENET_ZOO_COLLECTIVE_TIMEOUT"] = str(timeout_s)
        procs.append(subprocess.Popen(
            [sys.executable, *args], env=env, cwd=tmp_path, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True))
    return procs


def _finish(procs, timeout=TIMEOUT):
    deadline = time.time() + timeout
    outs = []
    for p in procs:
        try:
            outs.append(p.communicate(timeout=max(1, deadline - time.time()))[0])
        except subprocess.TimeoutExpired:
            for q in procs:
                os.killpg(q.pid, signal.SIGKILL)
            pytest.fail(f"multi-worker run still running after {timeout} s")
    return outs


def _results_path(output):
    m = re.search(r"results in (\S+results\.json)", output)
    assert m, output[-3000:]
    return Path(m.group(1))


def test_two_workers_train_the_imagenet_smoke_and_only_the_chief_writes(tmp_path):
    out = tmp_path / "out"
    args = [str(ROOT / "recipes" / "imagenet.py"), "--smoke", "--strategy", "multiworker",
            "--out", str(out), "--verbose", "0"]
    procs = _start_workers(args, tmp_path)
    outs = _finish(procs)
    for p, o in zip(procs, outs):
        assert p.returncode == 0, o[-4000:]
    chief, worker = (json.loads(_results_path(o).read_text()) for o in outs)
    assert _results_path(outs[0]) == out / "results.json"
    assert not str(_results_path(outs[1])).startswith(str(out))  # the worker wrote elsewhere
    assert chief["replicas"] == worker["replicas"] == 2
    assert chief["history"]["loss"] == pytest.approx(worker["history"]["loss"], rel=1e-5)
    assert (out / "model.keras").is_file() and (out / "backup").is_dir()


def test_a_killed_worker_makes_the_other_fail_clearly_within_the_timeout(tmp_path):
    args = [str(ROOT / "recipes" / "imagenet.py"), "--smoke", "--strategy", "multiworker",
            "--out", str(tmp_path / "out"), "--verbose", "0", "--epochs", "50"]
    procs = _start_workers(args, tmp_path, timeout_s=30)
    log = tmp_path / "out" / "log.csv"  # the chief's CSV log: a line per finished epoch
    deadline = time.time() + 180
    while not (log.is_file() and len(log.read_text().splitlines()) >= 2) and time.time() < deadline:
        time.sleep(1)
    if time.time() >= deadline:
        for q in procs:
            os.killpg(q.pid, signal.SIGKILL)
        pytest.fail("the two workers finished no epoch in 180 s")
    os.killpg(procs[1].pid, signal.SIGKILL)  # both are training: an epoch ran in lockstep
    start = time.time()
    output = _finish(procs[:1], timeout=240)[0]
    assert procs[0].returncode != 0, output[-3000:]  # a failure, not a silent success
    assert time.time() - start < 240
    assert re.search(r"DeadlineExceeded|Unavailable|peer|collective|timed out|Cancelled", output,
                     re.IGNORECASE), output[-3000:]


def test_two_workers_run_the_ssd_coco_smoke(tmp_path):
    out = tmp_path / "out"
    args = [str(ROOT / "recipes" / "ssd_coco.py"), "--smoke", "--strategy", "multiworker",
            "--alpha", "0.25", "--weights", "scratch", "--image-size", "128", "--out", str(out),
            "--verbose", "0", "--no-tflite"]
    procs = _start_workers(args, tmp_path)
    outs = _finish(procs)
    for p, o in zip(procs, outs):
        assert p.returncode == 0, o[-4000:]
    assert (out / "results.json").is_file() and (out / "model.keras").is_file()
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["backup", "checkpoints", "detections.png", "log.csv", "model.keras", "results.json",
         "run_identity.json", "tensorboard"])  # run_identity.json: --resume checks it (since 6ea3d82)
    paths = [Path(re.search(r"results: (\S+)", o).group(1)) for o in outs]
    assert paths[0] == out / "results.json" and not str(paths[1]).startswith(str(out))
    chief, worker = (json.loads(p.read_text()) for p in paths)
    assert chief["final_loss"] == pytest.approx(worker["final_loss"], rel=1e-5)


def test_two_workers_run_the_facenet_distillation_smoke(tmp_path):
    """A plain Keras Distiller (not a Task) under MultiWorkerMirroredStrategy."""
    out = tmp_path / "out"
    args = [str(ROOT / "recipes" / "facenet_distill.py"), "--smoke", "--strategy", "multiworker",
            "--out", str(out), "--verbose", "0"]
    procs = _start_workers(args, tmp_path)
    outs = _finish(procs)
    for p, o in zip(procs, outs):
        assert p.returncode == 0, o[-4000:]
    paths = [Path(re.search(r"results: (\S+)", o).group(1)) for o in outs]
    assert paths[0] == out / "results.json" and not str(paths[1]).startswith(str(out))
    assert (out / "student.keras").is_file()


def test_keras_workarounds_are_version_guarded_and_installed_once(monkeypatch):
    """mobilenet_zoo.compat: nothing is patched outside the versions a workaround names."""
    import keras
    from keras.src.backend.tensorflow import trainer as tf_trainer

    from mobilenet_zoo import compat

    # Restored after the test, whatever install_multi_worker does to them.
    monkeypatch.setattr(tf_trainer, "reduce_per_replica", tf_trainer.reduce_per_replica)
    monkeypatch.setattr(tf_trainer.TensorFlowTrainer, "_maybe_symbolic_build",
                        tf_trainer.TensorFlowTrainer._maybe_symbolic_build)
    before = (tf_trainer.reduce_per_replica, tf_trainer.TensorFlowTrainer._maybe_symbolic_build)
    monkeypatch.setattr(keras, "version", lambda: "4.0.0")
    assert compat.keras_version() == (4, 0, 0) and not compat.install_multi_worker()
    assert (tf_trainer.reduce_per_replica, tf_trainer.TensorFlowTrainer._maybe_symbolic_build) == before
    monkeypatch.setattr(keras, "version", lambda: "3.15.1")
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the multi-worker workarounds apply to the TensorFlow backend only")
    assert compat.install_multi_worker()
    patched = (tf_trainer.reduce_per_replica, tf_trainer.TensorFlowTrainer._maybe_symbolic_build)
    assert patched != before and all(getattr(f, "_mobilenet_zoo_patch", False) for f in patched)
    assert compat.install_multi_worker()  # idempotent: not wrapped twice
    assert (tf_trainer.reduce_per_replica, tf_trainer.TensorFlowTrainer._maybe_symbolic_build) == patched
