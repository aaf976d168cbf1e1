"""The ``samkit`` command line: ``download`` from file:// URLs and a closed port (offline), ``run``
on a throw-away notebook, and the sub-commands the help lists."""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path

import nbformat
import pytest

from samkit import checkpoints as ck
from samkit.cli import build_parser, main

PAYLOAD = bytes(range(256)) * 400  # 100 KiB
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture
def registry(tmp_path, monkeypatch):
    """A registry with one checkpoint served from a file:// URL, and an empty SAMKIT_HOME."""
    source = tmp_path / "server" / "fake.pth"
    source.parent.mkdir()
    source.write_bytes(PAYLOAD)
    entry = ck.Checkpoint(
        name="fake_ckpt",
        model="fake",
        url=source.as_uri(),
        filename="fake.pth",
        size=len(PAYLOAD),
        sha256=PAYLOAD_SHA,
    )
    monkeypatch.setattr(ck, "CHECKPOINTS", {"fake": entry})
    monkeypatch.setenv("SAMKIT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SAMKIT_OFFLINE", raising=False)
    return entry


def test_help_lists_what_exists():
    text = build_parser().format_help()
    for command in ("train", "download", "run"):
        assert command in text
    import samkit.cli

    for promised in ("samkit train", "samkit download", "samkit run"):
        assert promised in samkit.cli.__doc__


def test_download_verifies_and_caches(registry, capsys):
    dest = ck.checkpoint_dir() / "fake.pth"
    assert main(["download", "fake", "--no-progress"]) == 0
    assert dest.read_bytes() == PAYLOAD and not dest.with_suffix(".pth.part").exists()
    assert "downloaded" in capsys.readouterr().out
    assert main(["download", "fake_ckpt", "--verify"]) == 0  # the registry name works too
    assert "already cached" in capsys.readouterr().out
    assert main(["download", "--list"]) == 0
    assert "cached at" in capsys.readouterr().out


def test_download_restarts_a_stale_part_file(registry):
    part = ck.checkpoint_dir() / "fake.pth.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"garbage")  # file:// ignores Range: start over
    assert main(["download", "fake", "--no-progress"]) == 0
    assert (ck.checkpoint_dir() / "fake.pth").read_bytes() == PAYLOAD and not part.exists()


def test_corrupt_cached_file_is_reported(registry, capsys):
    dest = ck.checkpoint_dir() / "fake.pth"
    dest.parent.mkdir(parents=True)
    dest.write_bytes(PAYLOAD[:-1] + b"\x00")  # right size, wrong bytes: hashed before first use
    assert main(["download", "fake"]) == 1
    assert "SHA-256 mismatch" in capsys.readouterr().err
    assert main(["download", "fake", "--verify"]) == 1
    assert "SHA-256 mismatch" in capsys.readouterr().err


def test_wrong_checksum_leaves_nothing(registry, monkeypatch, capsys):
    monkeypatch.setitem(
        ck.CHECKPOINTS,
        "fake",
        ck.Checkpoint(
            name="fake_ckpt",
            model="fake",
            url=registry.url,
            filename="fake.pth",
            size=len(PAYLOAD),
            sha256="0" * 64,
        ),
    )
    assert main(["download", "fake", "--no-progress"]) == 1
    assert "failed verification" in capsys.readouterr().err
    # nothing but the (empty) lock file that serialises downloads of this file
    assert [p.name for p in ck.checkpoint_dir().iterdir() if p.suffix != ".lock"] == []


def test_offline_errors_say_where_to_put_the_file(registry, monkeypatch, capsys):
    dest = ck.checkpoint_dir() / "fake.pth"
    monkeypatch.setenv("SAMKIT_OFFLINE", "1")
    assert main(["download", "fake"]) == 1
    err = capsys.readouterr().err
    assert "not cached" in err and str(dest) in err and registry.url in err

    monkeypatch.delenv("SAMKIT_OFFLINE")
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setitem(
        ck.CHECKPOINTS,
        "fake",
        ck.Checkpoint(
            name="fake_ckpt",
            model="fake",
            url=f"http://127.0.0.1:{port}/fake.pth",
            filename="fake.pth",
            size=len(PAYLOAD),
            sha256=PAYLOAD_SHA,
        ),
    )
    monkeypatch.setenv("no_proxy", "*")
    assert main(["download", "fake", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "could not connect" in err and str(dest) in err


def test_download_unknown_model(registry, capsys):
    assert main(["download", "vit_z"]) == 1
    assert "no downloadable checkpoint for 'vit_z'" in capsys.readouterr().err
    assert main(["download"]) == 2


def _notebook(path: Path) -> None:
    params = nbformat.v4.new_code_cell("out_dir = 'x'\nvalue = 1")
    params.metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_markdown_cell("# A throw-away notebook"),
            params,
            nbformat.v4.new_code_cell(
                "from pathlib import Path\nPath(out_dir).mkdir(parents=True, exist_ok=True)\n"
                "(Path(out_dir) / 'value.txt').write_text(str(value))"
            ),
        ]
    )
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)


@pytest.mark.notebooks
def test_run_executes_notebooks(tmp_path, monkeypatch, capsys):
    books = tmp_path / "notebooks"
    books.mkdir()
    _notebook(books / "01_value.ipynb")
    monkeypatch.chdir(tmp_path)  # ./notebooks, as in a checkout
    assert main(["run", "--out", "runs", "--name", "r", "-p", "value", "7", "--no-progress"]) == 0
    assert (tmp_path / "runs" / "r" / "01_value" / "value.txt").read_text() == "7"
    assert (tmp_path / "runs" / "r" / "timings.json").is_file()
    monkeypatch.chdir(books)  # no notebooks/ here
    assert main(["run"]) == 2
    assert "--notebook-dir" in capsys.readouterr().err
