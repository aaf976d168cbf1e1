"""Checkpoint registry, download (resume, verification, failures) and safe loading.

Everything runs offline: downloads come from a local HTTP server on 127.0.0.1 that can honour or
ignore Range requests and can drop the connection halfway through a transfer.
"""
from __future__ import annotations

import hashlib
import os
import random
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from samkit import checkpoints as ck
from samkit.checkpoints import (
    CHECKPOINTS,
    CheckpointError,
    ChecksumError,
    DownloadError,
    StateDictMismatchError,
    UnsafeCheckpointError,
    checkpoint_path,
    download,
    guess_model_name,
    load_into,
    load_state_dict,
)

PAYLOAD = random.Random(0).randbytes(300_000)
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


# --------------------------------------------------------------------------------------------------
# A tiny HTTP server
# --------------------------------------------------------------------------------------------------
class _Handler(BaseHTTPRequestHandler):
    """Serves ``server.payload`` at /file.bin.

    ``server.mode``: "normal" honours ``Range: bytes=N-`` with 206; "ignore_range" always answers 200
    with the whole file. ``server.cuts`` > 0 makes the next that many responses stop halfway.
    ``server.ranges`` records the Range header of every request (None when absent).
    """

    def do_GET(self):  # noqa: N802 (http.server's naming)
        srv = self.server
        rng = self.headers.get("Range")
        srv.ranges.append(rng)
        if self.path != "/file.bin":
            self.send_error(404)
            return
        data = srv.payload
        start = 0
        if rng and srv.mode != "ignore_range":
            start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if srv.cuts > 0:
            srv.cuts -= 1
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args):  # keep the test output quiet
        pass


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch, tmp_path):
    # Local URLs must never go through a proxy; the cache must never touch the real home folder.
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("SAMKIT_HOME", str(tmp_path / "home"))


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    srv.payload = PAYLOAD
    srv.mode = "normal"
    srv.cuts = 0
    srv.ranges = []
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}/file.bin"
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=5)


def _part(dest: Path) -> Path:
    return dest.with_suffix(dest.suffix + ".part")


# --------------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------------
def test_registry_entries_are_complete():
    assert set(CHECKPOINTS) == {"vit_b", "vit_l", "vit_h", "vit_t"}
    for model, entry in CHECKPOINTS.items():
        assert entry.model == model
        assert entry.url.endswith("/" + entry.filename)
        assert re.fullmatch(r"[0-9a-f]{64}", entry.sha256), entry.name
        assert entry.size is not None and entry.size > 10_000_000
    for model in ("vit_b", "vit_l", "vit_h"):
        entry = CHECKPOINTS[model]
        assert entry.url.startswith("https://dl.fbaipublicfiles.com/segment_anything/")
        # The hex tag in the official file names is the start of the MD5, not of the SHA-256.
        tag = re.search(r"_([0-9a-f]{6})\.pth$", entry.filename).group(1)
        assert entry.md5.startswith(tag)
        assert not entry.sha256.startswith(tag)
    assert "MobileSAM" in CHECKPOINTS["vit_t"].url and CHECKPOINTS["vit_t"].filename == "mobile_sam.pt"
    assert CHECKPOINTS["vit_b"].size < CHECKPOINTS["vit_l"].size < CHECKPOINTS["vit_h"].size


def test_get_checkpoint_by_any_name():
    assert ck.get_checkpoint("sam_vit_l") is CHECKPOINTS["vit_l"]
    assert ck.get_checkpoint("mobile_sam.pt") is CHECKPOINTS["vit_t"]
    with pytest.raises(ValueError, match="vit_b"):
        ck.get_checkpoint("vit_x")


def test_cache_dir_follows_samkit_home(tmp_path, monkeypatch):
    monkeypatch.setenv("SAMKIT_HOME", str(tmp_path / "elsewhere"))
    assert ck.checkpoint_dir() == tmp_path / "elsewhere" / "checkpoints"
    monkeypatch.delenv("SAMKIT_HOME")
    assert ck.checkpoint_dir() == Path.home() / ".cache" / "samkit" / "checkpoints"


# --------------------------------------------------------------------------------------------------
# Download
# --------------------------------------------------------------------------------------------------
def test_full_download_verifies_and_renames(server, tmp_path):
    dest = tmp_path / "sub" / "file.bin"
    out = download(server.url, dest, sha256=PAYLOAD_SHA, size=len(PAYLOAD), progress=True)
    assert out == dest
    assert dest.read_bytes() == PAYLOAD
    assert not _part(dest).exists()
    assert server.ranges == [None]


def test_dropped_connection_is_resumed_automatically(server, tmp_path):
    server.cuts = 1
    dest = tmp_path / "file.bin"
    download(server.url, dest, sha256=PAYLOAD_SHA, size=len(PAYLOAD), progress=False)
    assert dest.read_bytes() == PAYLOAD
    half = len(PAYLOAD) // 2
    assert server.ranges == [None, f"bytes={half}-"]


def test_interrupted_download_resumes_on_the_next_call(server, tmp_path):
    server.cuts = 1
    dest = tmp_path / "file.bin"
    with pytest.raises(DownloadError, match="interrupted") as info:
        download(server.url, dest, sha256=PAYLOAD_SHA, size=len(PAYLOAD), progress=False, retries=0)
    half = len(PAYLOAD) // 2
    assert str(_part(dest)) in str(info.value)
    assert not dest.exists()
    assert _part(dest).read_bytes() == PAYLOAD[:half]

    download(server.url, dest, sha256=PAYLOAD_SHA, size=len(PAYLOAD), progress=False, retries=0)
    assert server.ranges[-1] == f"bytes={half}-"
    assert dest.read_bytes() == PAYLOAD
    assert not _part(dest).exists()


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    server.mode = "ignore_range"
    dest = tmp_path / "file.bin"
    _part(dest).write_bytes(b"x" * 1000)  # garbage that must not end up in front of the file
    download(server.url, dest, sha256=PAYLOAD_SHA, progress=False)
    assert server.ranges == ["bytes=1000-"]
    assert dest.read_bytes() == PAYLOAD


def test_complete_part_file_is_accepted_without_refetching(server, tmp_path):
    dest = tmp_path / "file.bin"
    _part(dest).write_bytes(PAYLOAD)
    download(server.url, dest, sha256=PAYLOAD_SHA, progress=False)  # size unknown: server says 416
    assert server.ranges == [f"bytes={len(PAYLOAD)}-"]
    assert dest.read_bytes() == PAYLOAD


def test_wrong_checksum_leaves_nothing_behind(server, tmp_path):
    dest = tmp_path / "file.bin"
    with pytest.raises(ChecksumError, match="SHA-256 mismatch") as info:
        download(server.url, dest, sha256="0" * 64, size=len(PAYLOAD), progress=False)
    assert server.url in str(info.value)
    assert not dest.exists()
    assert not _part(dest).exists()


def test_wrong_size_leaves_nothing_behind(server, tmp_path):
    dest = tmp_path / "file.bin"
    with pytest.raises(ChecksumError, match="bytes"):
        download(server.url, dest, sha256=None, size=len(PAYLOAD) + 1, progress=False)
    assert not dest.exists() and not _part(dest).exists()


def test_unreachable_url_says_where_to_put_the_file(tmp_path):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now: the connection is refused
    url = f"http://127.0.0.1:{port}/sam_vit_b_01ec64.pth"
    dest = tmp_path / "ckpt" / "sam_vit_b_01ec64.pth"
    with pytest.raises(DownloadError) as info:
        download(url, dest, progress=False, timeout=5)
    message = str(info.value)
    assert url in message
    assert str(dest) in message
    assert "place the file" in message
    assert not dest.exists() and not _part(dest).exists()


def test_http_error_is_reported(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(server.url.replace("file.bin", "missing.bin"), tmp_path / "m.bin", progress=False)


def test_checkpoint_path_downloads_into_the_cache(server, tmp_path, monkeypatch):
    entry = ck.Checkpoint(name="fake", model="fake", url=server.url, filename="fake.pth",
                          size=len(PAYLOAD), sha256=PAYLOAD_SHA)
    monkeypatch.setitem(CHECKPOINTS, "fake", entry)
    with pytest.raises(FileNotFoundError) as info:
        checkpoint_path("fake", download=False)
    expected = tmp_path / "home" / "checkpoints" / "fake.pth"
    assert str(expected) in str(info.value) and server.url in str(info.value)

    path = checkpoint_path("fake", progress=False)
    assert path == expected and path.read_bytes() == PAYLOAD
    assert checkpoint_path("fake", download=False, verify=True) == expected  # cached: no new request
    assert len(server.ranges) == 1

    path.write_bytes(PAYLOAD[:10])  # a wrong file placed by hand is caught by its size
    with pytest.raises(ChecksumError, match="expected"):
        checkpoint_path("fake")


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------
def test_load_state_dict_unwraps_common_nesting(tmp_path):
    sd = {"a.weight": torch.randn(2, 3), "b": torch.arange(4)}
    for i, wrapped in enumerate([
        sd,
        {"model": sd, "optimizer": {"state": {}, "param_groups": []}, "step": 7},
        {"state_dict": {"module." + k: v for k, v in sd.items()}, "epoch": 3},
    ]):
        path = tmp_path / f"ckpt{i}.pth"
        torch.save(wrapped, path)
        loaded = load_state_dict(path)
        assert set(loaded) == set(sd)
        for k in sd:
            assert torch.equal(loaded[k], sd[k]) and loaded[k].device.type == "cpu"


def test_load_state_dict_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_state_dict(tmp_path / "nope.pth")


@pytest.mark.parametrize("damage", ["truncated", "random", "empty"])
def test_load_state_dict_corrupt_file(tmp_path, damage):
    path = tmp_path / "broken.pth"
    torch.save({"w": torch.randn(64, 64)}, path)
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "random":
        path.write_bytes(random.Random(1).randbytes(2000))
    else:
        path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="corrupt or truncated") as info:
        load_state_dict(path)
    assert "broken.pth" in str(info.value)
    assert not isinstance(info.value, UnsafeCheckpointError)


def test_load_state_dict_rejects_non_tensor_entries(tmp_path):
    path = tmp_path / "mixed.pth"
    torch.save({"w": torch.ones(1), "note": "hello"}, path)
    with pytest.raises(CheckpointError, match="'note'"):
        load_state_dict(path)


class _Payload:
    """Unpickling this calls os.mkdir(marker): harmless, but visible if it ever runs."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_weights_only_refuses_code_in_a_pickle(tmp_path):
    marker = tmp_path / "code_ran"
    path = tmp_path / "evil.pth"
    torch.save({"w": torch.ones(3), "payload": _Payload(marker)}, path)
    with pytest.raises(UnsafeCheckpointError, match="evil.pth"):
        load_state_dict(path)
    assert not marker.exists()
    # The payload is real: an unrestricted load does run it.
    torch.load(path, weights_only=False)
    assert marker.is_dir()


# --------------------------------------------------------------------------------------------------
# load_into and the mismatch report
# --------------------------------------------------------------------------------------------------
class _Encoder(nn.Module):
    def __init__(self, width: int, patch: int, depth: int):
        super().__init__()
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, width, patch, stride=patch)
        self.blocks = nn.ModuleList(nn.Linear(4, 4) for _ in range(depth))


class _FakeSam(nn.Module):
    """Just the key layout of SAM: image_encoder / prompt_encoder / mask_decoder."""

    def __init__(self, width: int = 192, patch: int = 8, depth: int = 6, decoder_dim: int = 8):
        super().__init__()
        self.image_encoder = _Encoder(width, patch, depth)
        self.prompt_encoder = nn.Embedding(4, decoder_dim)
        self.mask_decoder = nn.Linear(decoder_dim, decoder_dim)
        self.register_buffer("pixel_mean", torch.zeros(3, 1, 1), persistent=False)


def test_load_into_copies_weights():
    source, target = _FakeSam(), _FakeSam()
    result = load_into(target, source.state_dict())
    assert result.missing_keys == [] and result.unexpected_keys == []
    for (k, a), (_, b) in zip(source.state_dict().items(), target.state_dict().items()):
        assert torch.equal(a, b), k


def test_load_into_from_a_file(tmp_path):
    source, target = _FakeSam(), _FakeSam()
    path = tmp_path / "fake.pth"
    torch.save({"model": source.state_dict()}, path)
    load_into(target, path)
    assert torch.equal(target.mask_decoder.weight, source.mask_decoder.weight)


def test_mismatch_error_lists_keys_and_guesses_the_model():
    checkpoint = _FakeSam(width=768, patch=16, depth=12).state_dict()  # a "vit_b"-like checkpoint
    checkpoint["mask_decoder.extra_token.weight"] = torch.zeros(2)
    del checkpoint["prompt_encoder.weight"]
    model = _FakeSam()  # "tiny"-like: width 192, 6 blocks
    before = model.image_encoder.patch_embed.proj.weight.clone()
    with pytest.raises(StateDictMismatchError) as info:
        load_into(model, checkpoint)
    message = str(info.value)
    assert "missing keys (1)" in message and "prompt_encoder (1): weight" in message
    assert "unexpected keys (13)" in message
    assert "image_encoder (12): blocks.6.weight" in message  # blocks 6..11 x weight/bias, grouped
    assert "(+6 more)" in message  # long groups are truncated
    assert "mask_decoder (1): extra_token.weight" in message
    assert "shape mismatches (2)" in message
    assert "image_encoder.patch_embed.proj.weight: [768, 3, 16, 16] vs [192, 3, 8, 8]" in message
    assert "looks like vit_b" in message and "model looks like tiny" in message
    assert "build_model('vit_b')" in message
    # Nothing was copied.
    assert torch.equal(model.image_encoder.patch_embed.proj.weight, before)


def test_non_strict_skips_missing_and_unexpected_but_not_shapes():
    checkpoint = _FakeSam().state_dict()
    del checkpoint["mask_decoder.bias"]
    checkpoint["extra"] = torch.ones(1)
    model = _FakeSam()
    with pytest.raises(StateDictMismatchError):
        load_into(model, checkpoint, strict=True)
    result = load_into(model, checkpoint, strict=False)
    assert result.missing_keys == ["mask_decoder.bias"]
    assert result.unexpected_keys == ["extra"]
    assert torch.equal(model.mask_decoder.weight, checkpoint["mask_decoder.weight"])

    checkpoint["mask_decoder.weight"] = torch.zeros(3, 3)
    with pytest.raises(StateDictMismatchError, match="mask_decoder.weight: \\[3, 3\\] vs \\[8, 8\\]"):
        load_into(model, checkpoint, strict=False)


@pytest.mark.parametrize("width, expected", [(768, "vit_b"), (1024, "vit_l"), (1280, "vit_h"),
                                             (192, "tiny_v1"), (100, None)])
def test_guess_model_from_patch_embed_width(width, expected):
    state = {"image_encoder.patch_embed.proj.weight": torch.empty(width, 3, 1, 1),
             "image_encoder.blocks.0.norm1.weight": torch.empty(width)}
    name, evidence = guess_model_name(state)
    assert name == expected
    assert str(width) in evidence


def test_guess_tinyvit_encoder():
    state = {"image_encoder.patch_embed.seq.0.c.weight": torch.empty(32, 3, 3, 3),
             "image_encoder.layers.0.blocks.0.conv1.c.weight": torch.empty(256, 64, 1, 1)}
    assert guess_model_name(state)[0] == "vit_t"
    assert guess_model_name({"mask_decoder.w": torch.empty(1)})[0] is None


def test_resize_positions_loads_weights_made_at_another_resolution():
    import samkit
    from samkit.model.configs import get_config
    from samkit.model.sam import build_sam

    small = build_sam(get_config("tiny_v1").at_resolution(256))
    with torch.no_grad():
        small.image_encoder.pos_embed.fill_(0.25)
        for name, p in small.named_parameters():
            if name.endswith(("rel_pos_h", "rel_pos_w")):  # a ramp along the table, a different one per channel
                p.copy_(torch.arange(p.shape[0], dtype=p.dtype)[:, None] * torch.linspace(0.5, 2, p.shape[1]))
    tables = {n: p.detach().clone() for n, p in small.named_parameters() if n.endswith(("rel_pos_h", "rel_pos_w"))}
    big = samkit.build_model("tiny_v1")  # 512 px: 32 x 32 tokens
    with pytest.raises(ck.StateDictMismatchError, match="pos_embed"):
        ck.load_into(big, small.state_dict())
    result = ck.load_into(big, small.state_dict(), resize=True)
    assert big.image_encoder.pos_embed.shape == (1, 32, 32, 192)
    torch.testing.assert_close(big.image_encoder.pos_embed, torch.full_like(big.image_encoder.pos_embed, 0.25))
    grown = 0
    for name, p in big.named_parameters():
        if name.endswith(("rel_pos_h", "rel_pos_w")):
            old = tables[name].numpy()
            if p.shape[0] == old.shape[0]:  # windowed blocks: the window did not change
                assert name not in result.resized_keys
                torch.testing.assert_close(p.detach(), tables[name])
                continue
            grown += 1
            assert name in result.resized_keys and p.shape[0] == 2 * 32 - 1  # global blocks see the grid
            # linear resampling with half-pixel centres, written out with numpy
            src = np.clip((np.arange(p.shape[0]) + 0.5) * old.shape[0] / p.shape[0] - 0.5, 0, old.shape[0] - 1)
            expected = np.stack([np.interp(src, np.arange(old.shape[0]), old[:, c]) for c in range(old.shape[1])], 1)
            np.testing.assert_allclose(p.detach().numpy(), expected, rtol=1e-5, atol=1e-5)
    assert grown > 0 and "image_encoder.pos_embed" in result.resized_keys
    _, resized = ck.resize_positions(big.state_dict(), big)
    assert resized == []  # nothing to do at the same resolution
