"""Files on disk are not trusted by their size: checkpoints are hashed before first use, a resumed
download never splices two versions of a file, two processes share one download, and weights holding
NaN are refused."""
from __future__ import annotations

import hashlib
import os
import random
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

import samkit
from samkit import checkpoints as ck
from samkit.checkpoints import CHECKPOINTS, CheckpointError, ChecksumError, DownloadError, download

OLD = random.Random(1).randbytes(200_000)
NEW = random.Random(2).randbytes(200_000)


class _Handler(BaseHTTPRequestHandler):
    """Serves ``server.payload`` at /file.bin with an ETag (its SHA-256), honouring ``Range`` and
    ``If-Range`` as HTTP servers do. ``server.cuts``: the next responses stop halfway;
    ``server.etag = False`` sends no validators; ``server.delay``: seconds between 10 kB pieces."""

    def do_GET(self):  # noqa: N802
        srv = self.server
        srv.requests.append((self.headers.get("Range"), self.headers.get("If-Range")))
        data = srv.payload
        etag = '"' + hashlib.sha256(data).hexdigest()[:16] + '"'
        start = 0
        rng, if_range = self.headers.get("Range"), self.headers.get("If-Range")
        if rng and (if_range is None or if_range == etag):
            start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        if srv.etag:
            self.send_header("ETag", etag)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if srv.cuts > 0:
            srv.cuts -= 1
            body = body[: len(body) // 2]
            self.close_connection = True
        for i in range(0, len(body), 10_000):
            self.wfile.write(body[i:i + 10_000])
            time.sleep(srv.delay)

    def log_message(self, *args):
        pass


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("SAMKIT_HOME", str(tmp_path / "home"))


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    srv.payload, srv.cuts, srv.etag, srv.delay, srv.requests = OLD, 0, True, 0.0, []
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}/file.bin"
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _register(monkeypatch, server, name="vit_b"):
    """Point the registry entry of ``name`` at the local server's OLD payload."""
    entry = ck.Checkpoint(name="fake", model=name, url=server.url, filename="fake.pth", size=len(OLD),
                          sha256=hashlib.sha256(OLD).hexdigest())
    monkeypatch.setitem(CHECKPOINTS, name, entry)
    return ck.checkpoint_dir() / entry.filename


# ------------------------------------------------------------------------------- cached checkpoints
def test_hand_placed_file_of_the_right_size_but_wrong_bytes_is_refused(server, monkeypatch):
    dest = _register(monkeypatch, server)
    dest.parent.mkdir(parents=True)
    dest.write_bytes(NEW)  # same size as the registered file
    with pytest.raises(ChecksumError, match="SHA-256 mismatch for .*fake.pth"):
        ck.checkpoint_path("vit_b", download=False)


def test_load_model_verifies_the_cached_checkpoint_before_building(server, monkeypatch):
    dest = _register(monkeypatch, server)
    dest.parent.mkdir(parents=True)
    dest.write_bytes(NEW)
    built = []
    monkeypatch.setattr(samkit, "build_model", lambda name: built.append(name))
    with pytest.raises(ChecksumError, match="fake.pth"):
        samkit.load_model("vit_b", download=False)
    assert built == []


def test_the_digest_is_computed_once_per_file_version(server, monkeypatch):
    dest = _register(monkeypatch, server)
    calls = []
    real = ck.file_sha256
    monkeypatch.setattr(ck, "file_sha256", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    ck.checkpoint_path("vit_b", progress=False)  # downloads and hashes once
    assert dest.read_bytes() == OLD and len(calls) == 1
    for _ in range(3):
        ck.checkpoint_path("vit_b", download=False)
    assert len(calls) == 1  # later uses trust the record: size and modification time unchanged
    dest.write_bytes(NEW)  # replaced by hand, same size, new modification time
    os.utime(dest, ns=(dest.stat().st_atime_ns, dest.stat().st_mtime_ns + 10**9))
    with pytest.raises(ChecksumError, match="SHA-256 mismatch"):
        ck.checkpoint_path("vit_b", download=False)
    assert len(calls) == 2


def test_a_file_without_published_digest_keeps_the_digest_of_its_download(server, tmp_path):
    dest = tmp_path / "archive.zip"
    download(server.url, dest, progress=False)
    ck.verify_once(dest, size=len(OLD))
    dest.write_bytes(NEW)
    os.utime(dest, ns=(dest.stat().st_atime_ns, dest.stat().st_mtime_ns + 10**9))
    with pytest.raises(ChecksumError, match="recorded in .*archive.zip.verified"):
        ck.verify_once(dest, size=len(OLD))


# ------------------------------------------------------------------------------- resumed downloads
def test_resume_after_the_file_changed_on_the_server_does_not_splice(server, tmp_path):
    """No digest is known (like NDISPark): the old code appended the new file's tail to the old head."""
    dest = tmp_path / "data.zip"
    server.cuts = 1
    with pytest.raises(DownloadError, match="interrupted"):
        download(server.url, dest, progress=False, retries=0)
    server.payload = NEW  # the file changes on the server before the resume
    download(server.url, dest, progress=False, retries=0)
    assert dest.read_bytes() == NEW
    assert server.requests[-1][1] is not None  # the resume asked "only if unchanged" (If-Range)


def test_resume_of_an_unchanged_file_continues_where_it_stopped(server, tmp_path):
    dest = tmp_path / "data.zip"
    server.cuts = 1
    with pytest.raises(DownloadError):
        download(server.url, dest, progress=False, retries=0)
    download(server.url, dest, progress=False, retries=0)
    assert dest.read_bytes() == OLD
    assert server.requests[-1][0] == f"bytes={len(OLD) // 2}-"


def test_part_file_without_a_way_to_check_it_starts_over(server, tmp_path):
    server.etag = False
    dest = tmp_path / "data.zip"
    server.cuts = 1
    with pytest.raises(DownloadError):
        download(server.url, dest, progress=False, retries=0)
    server.payload = NEW
    download(server.url, dest, progress=False, retries=0)
    assert dest.read_bytes() == NEW and server.requests[-1] == (None, None)


def test_two_downloads_of_one_file_share_it(server, monkeypatch):
    """The second caller waits for the first one's lock (a file lock: processes alike), then uses the
    verified file."""
    _register(monkeypatch, server)
    server.delay = 0.01  # 200 kB in 20 pieces: 0.2 s, long enough for the two calls to overlap
    results, errors = [], []

    def fetch():
        try:
            results.append(ck.checkpoint_path("vit_b", progress=False))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=fetch) for _ in range(2)]
    for t in threads:
        t.start()
        time.sleep(0.05)
    for t in threads:
        t.join(30)
    assert errors == [] and len(results) == 2
    assert results[0].read_bytes() == OLD
    assert [r for r in server.requests] == [(None, None)]  # one transfer served both


# ------------------------------------------------------------------------------- weights
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_checkpoint_with_non_finite_weights_is_refused_naming_the_tensor(tmp_path, bad):
    model = samkit.build_model("tiny")
    state = model.state_dict()
    state["mask_decoder.iou_prediction_head.layers.0.weight"][0, 3] = bad
    path = tmp_path / "diverged.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"diverged\.pth: tensor 'mask_decoder\.iou_prediction_head"
                                              r"\.layers\.0\.weight'.*1 NaN or infinite"):
        samkit.load_model("tiny", checkpoint=path)
