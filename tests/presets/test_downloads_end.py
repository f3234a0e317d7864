"""Downloads always end, and cache / install errors name the fix (issue 28).

Every server here is a local HTTP server on 127.0.0.1 started by the test; nothing
reaches the internet. The published file names are keras.applications' and TF-slim's."""

import hashlib
import json
import os
import re
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import published_layouts as pl
import pytest

from mobilenet_zoo.cli import presets as cli
from mobilenet_zoo.convert import alpha_from_name, convert
from mobilenet_zoo.hub import catalog, download, registry
from mobilenet_zoo.presets import install

SMALL = "mobilenet_v1_0.25_128_imagenet"
KERAS_FILE, SLIM_FILE = "mobilenet_2_5_128_tf.h5", "mobilenet_v1_0.25_128.tgz"
DATA = np.random.default_rng(28).integers(0, 256, 300_000, dtype=np.uint8).tobytes()
DIGEST = hashlib.sha256(DATA).hexdigest()


def _env(**extra):
    """The environment of a user's shell: downloads allowed unless a test says otherwise."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOBILENET_ZOO_")}
    env.update(extra)
    return env


def _cli(*args, env):
    return subprocess.run([sys.executable, "-m", "mobilenet_zoo", "presets", *args],
                          capture_output=True, text=True, timeout=180, env=env)


class _Dribble(BaseHTTPRequestHandler):
    """Serves ``server.data`` (Range honoured) ``server.step`` bytes every ``server.pause`` s."""

    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802 (http.server's name)
        server = self.server
        server.requests.append(self.headers.get("Range"))
        start = int(self.headers["Range"].split("=")[1].split("-")[0]) if self.headers.get("Range") else 0
        body = server.data[start:]
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(server.data) - 1}/{len(server.data)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            for i in range(0, len(body), server.step):
                self.wfile.write(body[i:i + server.step])
                self.wfile.flush()
                time.sleep(server.pause)
        except OSError:  # the client gave up: what the test wants
            pass


class DribbleServer:
    def __init__(self, data: bytes, step: int, pause: float) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Dribble)
        self.httpd.daemon_threads = True
        self.httpd.data, self.httpd.step, self.httpd.pause = data, step, pause
        self.httpd.requests = []

    def __getattr__(self, name):
        return getattr(self.httpd, name)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self):
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def allowed(monkeypatch, tmp_path):
    monkeypatch.delenv("MOBILENET_ZOO_OFFLINE", raising=False)
    monkeypatch.setenv("MOBILENET_ZOO_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def keras_h5(tmp_path_factory):
    """A file in keras.applications' layout and name (alpha 0.25, 128 pixels, 1000 classes)."""
    from mobilenet_zoo import MobileNetBackbone, MobileNetClassifier

    model = MobileNetClassifier(MobileNetBackbone(alpha=0.25, input_shape=(128, 128, 3)),
                                num_classes=1000)
    return pl.write_keras2_h5(model, tmp_path_factory.mktemp("keras") / KERAS_FILE)


# ---------------------------------------------------------------- downloads end
def test_a_mirror_that_dribbles_bytes_is_stopped_naming_url_rate_and_variable(tmp_path):
    cache = tmp_path / "cache"
    with DribbleServer(b"x" * 1_000_000, step=1, pause=0.2) as server:  # 5 bytes/s
        start = time.monotonic()
        done = _cli("fetch", SMALL, env=_env(MOBILENET_ZOO_CACHE=str(cache),
                                             MOBILENET_ZOO_MIRROR=server.url,
                                             MOBILENET_ZOO_MIN_RATE="1000",
                                             MOBILENET_ZOO_MIN_RATE_WINDOW="1"))
    assert done.returncode == 3, done.stderr[-3000:]
    assert time.monotonic() - start < 120
    error = done.stderr.strip().splitlines()[-1]
    assert "Traceback" not in done.stderr
    assert f"{server.url}/{KERAS_FILE}" in error and "$MOBILENET_ZOO_MIN_RATE=1000" in error
    assert re.search(r"\d+ bytes received", error) and re.search(r"\d+ B/s", error), error
    part = cache / "downloads" / f"{KERAS_FILE}.part"
    assert part.stat().st_size > 0 and f"{part.name} ({part.stat().st_size} bytes) is kept" in error


def test_a_download_past_its_deadline_stops_and_the_next_call_resumes(allowed, monkeypatch,
                                                                      tmp_path):
    monkeypatch.setenv("MOBILENET_ZOO_DOWNLOAD_DEADLINE", "1")
    monkeypatch.setenv("MOBILENET_ZOO_MIN_RATE", "0")  # fast enough for any rate check
    dest = tmp_path / KERAS_FILE
    with DribbleServer(DATA, step=2000, pause=0.05) as server:  # 40 kB/s: 7 s for the file
        url = f"{server.url}/{KERAS_FILE}"
        with pytest.raises(download.DownloadTooSlowError) as err:
            download.download(url, dest, DIGEST)
        message = str(err.value)
        assert url in message and "$MOBILENET_ZOO_DOWNLOAD_DEADLINE=1 s" in message
        assert re.search(r"\d+ bytes received", message) and "raise $MOBILENET_ZOO_DOWNLOAD_DEADLINE" in message
        part = dest.with_name(dest.name + ".part")
        kept = part.stat().st_size
        assert 0 < kept < len(DATA) and not dest.exists()
        server.httpd.step, server.httpd.pause = 1 << 16, 0.0
        monkeypatch.setenv("MOBILENET_ZOO_DOWNLOAD_DEADLINE", "60")
        assert download.download(url, dest, DIGEST).read_bytes() == DATA
    assert server.requests == [None, f"bytes={kept}-"] and not part.exists()


@pytest.mark.parametrize("name,value", [
    ("MOBILENET_ZOO_DOWNLOAD_DEADLINE", "0"), ("MOBILENET_ZOO_DOWNLOAD_DEADLINE", "soon"),
    ("MOBILENET_ZOO_MIN_RATE", "-5"), ("MOBILENET_ZOO_MIN_RATE", "1kB"),
    ("MOBILENET_ZOO_MIN_RATE_WINDOW", "0"), ("MOBILENET_ZOO_MIN_RATE_WINDOW", "nan")])
def test_bad_deadline_and_rate_settings_name_the_variable(allowed, monkeypatch, tmp_path, name,
                                                          value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=rf"\${name} must be a (positive|non-negative) number .*"
                                         rf"got '{re.escape(value)}'"):
        download.download("http://127.0.0.1:9/x.h5", tmp_path / "x.h5")


def test_progress_reaches_a_log_file_every_tenth_with_mb_and_rate(allowed, tmp_path, capsys):
    data = DATA * 4  # 1.2 MB in 64 KiB pieces
    with pl.FileServer({"big.h5": data}) as server:
        download.download(f"{server.url}/big.h5", tmp_path / "big.h5",
                          hashlib.sha256(data).hexdigest())
    lines = capsys.readouterr().err.splitlines()
    progress = [line for line in lines if re.fullmatch(
        r"\s+\d+% \d+\.\d/1\.2 MB, \d+(\.\d)? [kM]?B/s", line)]
    assert lines[0].startswith("Downloading big.h5 (1.2 MB)")
    assert len(progress) >= 8, lines
    assert re.fullmatch(r"\s+done: 1\.2 MB in \d+\.\d s \(.*B/s\)", lines[-1])


# ---------------------------------------------------------------- stale .part files
@pytest.mark.parametrize("case", ["corrupt", "another_file", "longer", "range_ignored",
                                  "changed_on_host"])
def test_a_stale_part_never_makes_a_call_fail(allowed, tmp_path, case):
    """Another file's or a longer part is discarded before the request; a corrupt one is
    resumed, fails the hash and is fetched whole in the same call."""
    dest = tmp_path / KERAS_FILE
    part, info = tmp_path / f"{KERAS_FILE}.part", tmp_path / f"{KERAS_FILE}.part.json"
    half = len(DATA) // 2
    record = {"url": "http://old/x", "total": len(DATA), "sha256": DIGEST, "etag": None,
              "last_modified": None}
    if case == "corrupt":  # from a run of an older version: no record, wrong bytes
        part.write_bytes(b"\0" * half)
    elif case == "another_file":
        part.write_bytes(DATA[:half])
        info.write_text(json.dumps(dict(record, sha256="0" * 64)))
    elif case == "longer":
        part.write_bytes(DATA + b"tail")
        info.write_text(json.dumps(record))
    elif case == "range_ignored":
        part.write_bytes(b"\0" * half)
    else:
        part.write_bytes(b"\0" * half)
        info.write_text(json.dumps(dict(record, total=len(DATA) + 5)))
    with pl.FileServer({KERAS_FILE: DATA}) as server:
        server.httpd.ranges = case != "range_ignored"
        assert download.download(f"{server.url}/{KERAS_FILE}", dest, DIGEST).read_bytes() == DATA
    ranges = [r for _, r in server.requests]
    expected = {"corrupt": [f"bytes={half}-", None], "another_file": [None], "longer": [None],
                "range_ignored": [f"bytes={half}-"], "changed_on_host": [f"bytes={half}-", None]}
    assert ranges == expected[case]
    assert not part.exists() and not info.exists()


def test_an_unhashed_files_part_without_a_validator_is_not_resumed(allowed, tmp_path):
    """No published sha256 and no ETag / Last-Modified: nothing could catch a corrupt
    part, so it is discarded before the request instead of being resumed into the file."""
    dest = tmp_path / KERAS_FILE
    part = tmp_path / f"{KERAS_FILE}.part"
    part.write_bytes(b"\0" * (len(DATA) // 2))
    with pl.FileServer({KERAS_FILE: DATA}) as server:
        assert download.download(f"{server.url}/{KERAS_FILE}", dest, None).read_bytes() == DATA
    assert [r for _, r in server.requests] == [None]


# ---------------------------------------------------------------- the cache folder
@pytest.mark.parametrize("shape", ["file", "read_only_folder"])
def test_an_unusable_cache_names_mobilenet_zoo_cache_and_the_fix(tmp_path, shape):
    cache = tmp_path / "cache"
    if shape == "file":
        cache.write_text("not a folder")
    else:
        if os.geteuid() == 0:
            pytest.skip("root ignores folder permissions")
        cache.mkdir(mode=0o500)
    done = _cli("fetch", SMALL, env=_env(MOBILENET_ZOO_CACHE=str(cache)))
    assert done.returncode == 3, done.stderr[-3000:]
    error = done.stderr.strip()
    assert "\n" not in error and "Traceback" not in error
    assert "MOBILENET_ZOO_CACHE" in error and str(cache) in error and "writable folder" in error
    assert not re.search(r"\[Errno \d+\]", error)


def test_registering_into_a_file_shaped_cache_names_the_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("MOBILENET_ZOO_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache").write_text("")
    with pytest.raises(registry.CacheNotWritableError, match=r"is a file, not a folder.*"
                                                             r"set \$MOBILENET_ZOO_CACHE"):
        with registry.locked_cache():
            pass


# ---------------------------------------------------------------- installs name their source
def test_an_unhashed_archive_that_fails_to_convert_names_its_url(allowed, monkeypatch, capsys):
    with pl.FileServer({SLIM_FILE: b"<html>503 Service Unavailable</html>"}) as server:
        monkeypatch.setenv("MOBILENET_ZOO_MIRROR", server.url)
        assert cli.main(["fetch", SMALL, "--source", "tf_slim_tgz"]) == 3  # a bad published file
    error = capsys.readouterr().err
    assert f"{server.url}/{SLIM_FILE}" in error and "no sha256 is published" in error
    assert str(registry.downloads_dir()) not in error


def test_a_bad_from_file_is_named_in_the_conversion_error(allowed, tmp_path, capsys):
    carried = tmp_path / SLIM_FILE
    carried.write_bytes(pl.memory_tar({"./readme.txt": b"no checkpoint here"}))
    assert cli.main(["fetch", SMALL, "--from", str(carried)]) == 2
    error = capsys.readouterr().err
    assert f"{carried}: no checkpoint" in error and str(registry.downloads_dir()) not in error


def test_a_from_file_install_is_recorded_and_listed_as_coming_from_that_file(
        allowed, monkeypatch, keras_h5, capsys):
    digest = download.sha256_of(keras_h5)
    monkeypatch.setitem(catalog.KERAS_APPLICATIONS_SHA256, "2_5_128", (digest, "0" * 64))
    assert cli.main(["fetch", SMALL, "--from", str(keras_h5)]) == 0
    assert str(keras_h5) in capsys.readouterr().out
    entry = registry.read_manifest(registry.cache_dir())[SMALL]
    assert entry["source_file"] == str(keras_h5.resolve()) and entry["source_sha256"] == digest
    assert entry["source_url"] == keras_h5.resolve().as_uri()
    assert cli.main([]) == 0
    listing = capsys.readouterr().out
    block = listing[listing.index(f"{SMALL}  [cache"):].split("\n\n")[0]
    assert f"from file: {keras_h5.resolve()}" in block and digest in block
    assert "storage.googleapis.com" not in block.split("licence")[1]


# ---------------------------------------------------------------- unknown names
def test_fetch_of_an_unknown_name_is_one_line_with_close_matches_before_keras():
    for name, close in (("nope", None), ("mobilenet_v1_0.25_128_imagent", SMALL)):
        done = subprocess.run([sys.executable, "-X", "importtime", "-m", "mobilenet_zoo",
                               "presets", "fetch", name], capture_output=True, text=True,
                              timeout=120, env=_env(MOBILENET_ZOO_OFFLINE="1"))
        assert done.returncode == 2
        imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()
                    if line.startswith("import time:")}
        assert "keras" not in imported and "tensorflow" not in imported
        lines = [line for line in done.stderr.splitlines() if not line.startswith("import time:")]
        assert len(lines) == 1, lines
        assert lines[0].startswith(f"error: unknown preset '{name}'")
        assert "run `mobilenet-zoo presets` to list them" in lines[0].lower()
        assert (close in lines[0]) if close else "did you mean" not in lines[0]


# ---------------------------------------------------------------- keras.applications names
@pytest.mark.parametrize("name,expected", [
    ("mobilenet_2_5_128_tf.h5", (0.25, 128)), ("mobilenet_5_0_160_tf_no_top.h5", (0.5, 160)),
    ("mobilenet_7_5_192_tf.h5", (0.75, 192)), ("mobilenet_1_0_224_tf.h5", (1.0, 224)),
    ("mobilenet_v1_0.5_160.tgz", (0.5, 160)), ("weights.h5", (None, None))])
def test_alpha_and_size_are_read_from_keras_applications_file_names(name, expected):
    assert alpha_from_name(f"/home/me/.keras/models/{name}") == expected


def test_a_keras_applications_128_file_converts_as_a_128_model(keras_h5, tmp_path):
    meta = convert(keras_h5, tmp_path / "small.weights.h5")
    assert meta["input_size"] == 128 and meta["alpha"] == 0.25


# ---------------------------------------------------------------- careless use (sweep of fetch)
class _Cutting(BaseHTTPRequestHandler):
    """``cut``: every response stops at 40% of what it owes (Range honoured); ``lie``: the
    Content-Length announces twice the file, Range ignored. The connection then closes."""

    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802 (http.server's name)
        data, mode = self.server.data, self.server.mode
        rng = self.headers.get("Range")
        start = int(rng.split("=")[1].split("-")[0]) if rng and mode == "cut" else 0
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        body = data[start:]
        self.send_header("Content-Length", str(len(body) * (2 if mode == "lie" else 1)))
        self.end_headers()
        self.wfile.write(body[: int(len(body) * 0.4)] if mode == "cut" else body)


def test_a_mirror_install_records_and_prints_the_url_the_bytes_came_from(
        allowed, monkeypatch, keras_h5, capsys):
    digest = download.sha256_of(keras_h5)
    monkeypatch.setitem(catalog.KERAS_APPLICATIONS_SHA256, "2_5_128", (digest, "0" * 64))
    published = catalog.remote_presets()[SMALL]["sources"][0]["url"]
    with pl.FileServer({KERAS_FILE: keras_h5.read_bytes()}) as server:
        monkeypatch.setenv("MOBILENET_ZOO_MIRROR", f"{server.url}/m")
        assert cli.main(["fetch", SMALL]) == 0
    fetched = f"{server.url}/m/{KERAS_FILE}"
    entry = registry.read_manifest(registry.cache_dir())[SMALL]
    assert entry["source_url"] == fetched and entry["source_published_url"] == published
    line = capsys.readouterr().out.splitlines()[0]
    assert line.startswith(f"installed {SMALL}") and f"from {fetched} (a mirror of {published})" in line


@pytest.mark.parametrize("served,why", [
    (b"\n  <!DOCTYPE html><html><body>Sign in to continue</body></html>",
     "the server sent an HTML page, not the archive (a login or error page?)"),
    (DATA, "not a readable tar archive")], ids=["html_page", "random_bytes"])
def test_a_bad_published_archive_is_exit_3_naming_the_url(allowed, monkeypatch, capsys, served,
                                                          why):
    with pl.FileServer({SLIM_FILE: served}) as server:
        monkeypatch.setenv("MOBILENET_ZOO_MIRROR", server.url)
        assert cli.main(["fetch", SMALL, "--source", "tf_slim_tgz"]) == 3
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith(f"error: {server.url}/{SLIM_FILE}: ") and why in error
    assert not (registry.downloads_dir() / SLIM_FILE).exists()


def test_a_timeout_names_mobilenet_zoo_timeout_and_its_value(allowed, monkeypatch, tmp_path,
                                                            capsys):
    monkeypatch.setenv("MOBILENET_ZOO_TIMEOUT", "0.5")
    monkeypatch.setenv("MOBILENET_ZOO_MIN_RATE", "0")
    dest = tmp_path / KERAS_FILE
    with DribbleServer(DATA, step=1, pause=3) as server:  # a byte, then silence
        url = f"{server.url}/{KERAS_FILE}"
        with pytest.raises(download.DownloadError) as err:
            download.download(url, dest, DIGEST)
    message = str(err.value)
    assert url in message and "$MOBILENET_ZOO_TIMEOUT=0.5 s (timed out 3 times" in message
    assert f"3 of {len(DATA)} bytes received" in message and "raise $MOBILENET_ZOO_TIMEOUT" in message
    assert dest.with_name(f"{dest.name}.part").stat().st_size == 3
    assert "no data for $MOBILENET_ZOO_TIMEOUT=0.5 s at 0.0 MB of 0.3 MB, resuming" in capsys.readouterr().err


@pytest.mark.parametrize("mode,cuts", [("cut", 3), ("lie", 2)])
def test_a_cut_connection_says_so_in_words_and_keeps_the_part(allowed, tmp_path, capsys, mode,
                                                              cuts):
    dest = tmp_path / KERAS_FILE
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Cutting)
    httpd.daemon_threads, httpd.data, httpd.mode = True, DATA, mode
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/{KERAS_FILE}"
    try:
        with pytest.raises(download.DownloadError) as err:
            download.download(url, dest, DIGEST)
    finally:
        httpd.shutdown()
        httpd.server_close()
    part = dest.with_name(f"{dest.name}.part")
    total = len(DATA) * (2 if mode == "lie" else 1)
    message, log = str(err.value), capsys.readouterr().err
    assert url in message and f"the connection was cut {cuts} times" in message
    assert f"{part.stat().st_size} of {total} bytes received" in message
    assert f"{part.name} is kept" in message and "IncompleteRead" not in message
    assert "done:" not in log
    assert len(re.findall(r"^  connection cut at \d+\.\d MB of \d+\.\d MB, resuming$", log,
                          re.MULTILINE)) == cuts - 1, log


def test_a_fetch_that_waited_for_another_process_says_it_did_not_install(allowed, keras_h5):
    if not os.path.exists("/proc/locks"):
        pytest.skip("needs Linux's /proc/locks to see the second process wait")
    meta = catalog.remote_presets()[SMALL]
    lock = registry.downloads_dir() / f"{SMALL}.install.lock"
    with download.file_lock(lock):  # "another process" installs; this fetch must wait
        fetch = subprocess.Popen(  # offline: it would fail if it downloaded instead of waiting
            [sys.executable, "-m", "mobilenet_zoo", "presets", "fetch", SMALL],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=_env(MOBILENET_ZOO_CACHE=os.environ["MOBILENET_ZOO_CACHE"],
                     MOBILENET_ZOO_OFFLINE="1"))
        deadline = time.monotonic() + 120
        while f"-> FLOCK  ADVISORY  WRITE {fetch.pid} " not in open("/proc/locks").read():
            assert fetch.poll() is None and time.monotonic() < deadline, fetch.communicate()
            time.sleep(0.1)
        install._convert_and_register(SMALL, meta, meta["sources"][0], keras_h5)
    out, err = fetch.communicate(timeout=120)
    assert fetch.returncode == 0, err
    assert out.startswith(f"{SMALL} was installed meanwhile by another process: "), out
    assert f"installed {SMALL}:" not in out and "frozen graph" not in out
