"""Checkpoints: where the official weights live, how to fetch them safely, and how to load them.

Three things happen here, in this order:

1. The **registry** (:data:`CHECKPOINTS`) names every downloadable checkpoint: its URL, its file name,
   its exact size in bytes and its SHA-256.
2. :func:`download` fetches a file into a ``.part`` file next to its destination, resumes an interrupted
   transfer with an HTTP ``Range`` request, checks size and SHA-256, and only then renames it into place.
   A file under its final name is therefore always a complete, verified file (or one a person put there).
   Processes downloading the same file take turns through a lock file (``<file>.lock``); a resumed
   transfer whose file changed on the server meanwhile (``If-Range``) starts over instead of splicing.
3. :func:`checkpoint_path` checks the SHA-256 of a cached file before its first use and records the result
   in ``<file>.verified`` (digest, size, modification time), so later uses cost a ``stat`` only; a file
   that was changed or replaced by hand is hashed again.
4. :func:`load_state_dict` reads a checkpoint with ``torch.load(..., weights_only=True)``, which refuses
   pickles that would run code, refuses tensors holding NaN or infinity, and :func:`load_into` copies it
   into a model, explaining any mismatch in one readable error.

A note on the official file names: the six hex digits in ``sam_vit_b_01ec64.pth`` are the start of the
file's **MD5**, not of its SHA-256 (the SHA-256 of that file starts with ``ec2df6``). The registry keeps
both; downloads are verified with the SHA-256.

Files are cached under ``$SAMKIT_HOME/checkpoints`` (default ``~/.cache/samkit/checkpoints``).
"""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import pickle
import re
import urllib.error
import urllib.request
import zipfile
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Mapping, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from .model.image_encoder import resize_rel_pos

__all__ = [
    "Checkpoint",
    "CHECKPOINTS",
    "ChecksumError",
    "DownloadError",
    "CheckpointError",
    "UnsafeCheckpointError",
    "StateDictMismatchError",
    "LoadResult",
    "samkit_home",
    "checkpoint_dir",
    "get_checkpoint",
    "checkpoint_path",
    "download",
    "verify_file",
    "verify_once",
    "file_sha256",
    "check_finite",
    "load_state_dict",
    "load_into",
    "guess_model_name",
]

PathLike = Union[str, os.PathLike]

_SAM_URL = "https://dl.fbaipublicfiles.com/segment_anything/"
_MOBILE_SAM_URL = "https://raw.githubusercontent.com/ChaoningZhang/MobileSAM/master/weights/"


@dataclass(frozen=True)
class Checkpoint:
    """One downloadable checkpoint.

    ``size`` (bytes) and ``sha256`` are what :func:`download` verifies. ``None`` means "unknown": the
    check that needs it is skipped (a missing SHA-256 falls back to the byte size alone).
    """

    name: str                    # registry name, e.g. "sam_vit_b"
    model: str                   # the samkit model name it loads into, e.g. "vit_b"
    url: str
    filename: str
    size: Optional[int]          # bytes
    sha256: Optional[str]        # lowercase hex
    md5: Optional[str] = None    # only informative: the official file names carry its first 6 digits


# Sizes and digests are those of the published files. The same values appear, independently, in the
# Git LFS pointers of several public mirrors of the files (LFS pointers record the SHA-256 and the
# exact byte size) and in other projects' download checks.
CHECKPOINTS: Dict[str, Checkpoint] = {
    "vit_h": Checkpoint(
        name="sam_vit_h",
        model="vit_h",
        url=_SAM_URL + "sam_vit_h_4b8939.pth",
        filename="sam_vit_h_4b8939.pth",
        size=2_564_550_879,
        sha256="a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
        md5="4b8939a88964f0f4ff5f5b2642c598a6",
    ),
    "vit_l": Checkpoint(
        name="sam_vit_l",
        model="vit_l",
        url=_SAM_URL + "sam_vit_l_0b3195.pth",
        filename="sam_vit_l_0b3195.pth",
        size=1_249_524_607,
        sha256="3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
        md5="0b3195507c641ddb6910d2bb5adee89c",
    ),
    "vit_b": Checkpoint(
        name="sam_vit_b",
        model="vit_b",
        url=_SAM_URL + "sam_vit_b_01ec64.pth",
        filename="sam_vit_b_01ec64.pth",
        size=375_042_383,
        sha256="ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
        md5="01ec64d29a2fca3f0661936605ae66f8",
    ),
    "vit_t": Checkpoint(
        name="mobile_sam",
        model="vit_t",
        url=_MOBILE_SAM_URL + "mobile_sam.pt",
        filename="mobile_sam.pt",
        size=40_728_226,
        sha256="6dbb90523a35330fedd7f1d3dfc66f995213d81b29a5ca8108dbcdd4e37d6c2f",
        md5=None,  # not published anywhere we could check; not needed (SHA-256 is known)
    ),
}


# --------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------
class DownloadError(OSError):
    """The file could not be fetched (no network, HTTP error, connection dropped too often)."""


class ChecksumError(ValueError):
    """A downloaded or cached file does not have the expected size or SHA-256."""


class CheckpointError(RuntimeError):
    """A checkpoint file could not be read (truncated, corrupt, or not a state dict)."""


class UnsafeCheckpointError(CheckpointError):
    """The file contains pickled objects other than tensors and plain containers; it was not loaded."""


class StateDictMismatchError(RuntimeError):
    """A state dict does not fit a model: missing keys, unexpected keys or shape mismatches."""


# --------------------------------------------------------------------------------------------------
# Cache folder and registry look-up
# --------------------------------------------------------------------------------------------------
def samkit_home() -> Path:
    """``$SAMKIT_HOME`` if set, else ``~/.cache/samkit``. Read on every call, so tests can override it."""
    home = os.environ.get("SAMKIT_HOME")
    return Path(home).expanduser() if home else Path.home() / ".cache" / "samkit"


def checkpoint_dir() -> Path:
    """The folder where downloaded checkpoints are kept: ``samkit_home() / "checkpoints"``."""
    return samkit_home() / "checkpoints"


def get_checkpoint(name: str) -> Checkpoint:
    """Look a checkpoint up by model name (``"vit_b"``), registry name (``"sam_vit_b"``) or file name."""
    if name in CHECKPOINTS:
        return CHECKPOINTS[name]
    for entry in CHECKPOINTS.values():
        if name in (entry.name, entry.filename):
            return entry
    known = ", ".join(CHECKPOINTS)
    raise ValueError(
        f"no downloadable checkpoint for {name!r}; known: {known}. "
        "(The 'tiny' model's weights ship inside samkit and are not downloaded.)"
    )


def _manual_hint(url: str, dest: Path) -> str:
    return (
        f"If this machine has no internet access, download\n    {url}\n"
        f"on another machine and place the file at\n    {dest}\n"
        "(exactly that path and name), then run again."
    )


def checkpoint_path(model_name: str, download: bool = True, progress: bool = True,
                    verify: bool = False) -> Path:
    """The local path of a model's official checkpoint, downloading it first when missing.

    Args:
        model_name: ``"vit_b"``, ``"vit_l"``, ``"vit_h"`` or ``"vit_t"`` (or a registry/file name).
        download: fetch the file when it is not cached; if False a missing file raises FileNotFoundError.
        progress: show a tqdm bar while downloading.
        verify: recompute the SHA-256 of a cached file even when an earlier check is on record.
            Without it, the SHA-256 is computed before the file's first use (seconds for the large
            files) and recorded in ``<file>.verified``; later calls compare size and modification time.
    """
    entry = get_checkpoint(model_name)
    dest = checkpoint_dir() / entry.filename
    if dest.is_file():
        verify_once(dest, sha256=entry.sha256, size=entry.size, force=verify, progress=progress)
        return dest
    if not download:
        raise FileNotFoundError(
            f"checkpoint for {entry.model!r} is not cached.\n" + _manual_hint(entry.url, dest)
        )
    return _download(entry.url, dest, sha256=entry.sha256, size=entry.size, progress=progress)


# --------------------------------------------------------------------------------------------------
# Verification
# --------------------------------------------------------------------------------------------------
def file_sha256(path: PathLike, chunk_size: int = 1 << 20, progress: bool = False) -> str:
    """SHA-256 of a file's contents, as lowercase hex (a progress bar with ``progress=True``)."""
    digest = hashlib.sha256()
    path = Path(path)
    with open(path, "rb") as f, tqdm(total=path.stat().st_size, unit="B", unit_scale=True, unit_divisor=1024,
                                     desc=f"checking {path.name}", disable=not progress, leave=False) as bar:
        for block in iter(lambda: f.read(chunk_size), b""):
            digest.update(block)
            bar.update(len(block))
    return digest.hexdigest()


def verify_file(path: PathLike, sha256: Optional[str] = None, size: Optional[int] = None,
                progress: bool = False) -> Optional[str]:
    """Raise :class:`ChecksumError` unless the file has the given byte size and SHA-256.

    Either check is skipped when its expected value is None; with no SHA-256 the size is all we check.
    Returns the SHA-256 it computed (None when it computed none).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        raise ChecksumError(
            f"{path} has {actual_size:,} bytes, expected {size:,}. "
            "The file is incomplete or a different file; delete it and download it again."
        )
    if sha256 is None:
        return None
    actual = file_sha256(path, progress=progress and actual_size > (64 << 20))
    if actual != sha256.lower():
        raise ChecksumError(
            f"SHA-256 mismatch for {path}:\n    expected {sha256.lower()}\n    got      {actual}\n"
            "The file is corrupt or a different file; delete it and download it again."
        )
    return actual


def _record_path(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def _stat_key(path: Path) -> Dict[str, int]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _remember_verified(path: Path, sha256: str) -> None:
    """Record that ``path`` (as it is now: size, modification time) has SHA-256 ``sha256``."""
    record = dict(_stat_key(path), sha256=sha256)
    tmp = _record_path(path).with_name(f"{_record_path(path).name}.tmp{os.getpid()}")
    try:
        tmp.write_text(json.dumps(record))
        os.replace(tmp, _record_path(path))
    except OSError:  # a read-only cache folder: the check is simply repeated next time
        tmp.unlink(missing_ok=True)


def _read_record(path: Path) -> Dict[str, object]:
    try:
        record = json.loads(_record_path(path).read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def verify_once(path: PathLike, sha256: Optional[str] = None, size: Optional[int] = None,
                force: bool = False, progress: bool = False) -> None:
    """Like :func:`verify_file`, but the SHA-256 is computed once per file version.

    A successful check is recorded next to the file in ``<name>.verified`` (digest, size and modification
    time); while the file keeps that size and modification time, later calls trust the record. When no
    ``sha256`` is given, the digest recorded when the file was downloaded is the expected one, so a file
    changed since is still caught. ``force`` recomputes the digest anyway. Raises :class:`ChecksumError`
    naming the file and the fix.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    record = _read_record(path)
    recorded = record.get("sha256") if isinstance(record.get("sha256"), str) else None
    expected = sha256.lower() if sha256 is not None else recorded
    if expected is None:
        verify_file(path, size=size)
        return
    if not force and recorded == expected and all(record.get(k) == v for k, v in _stat_key(path).items()):
        verify_file(path, size=size)
        return
    try:
        digest = verify_file(path, sha256=expected, size=size, progress=progress)
    except ChecksumError as e:
        if sha256 is None:
            raise ChecksumError(f"{e}\n(The expected SHA-256 was recorded in {_record_path(path)} when the "
                                "file was downloaded; delete both files to download it again.)") from None
        raise
    _remember_verified(path, digest)


# --------------------------------------------------------------------------------------------------
# Download
# --------------------------------------------------------------------------------------------------
_CHUNK = 1 << 20
# Resets, timeouts and URLError are all OSErrors; IncompleteRead and friends are HTTPExceptions.
_INTERRUPTIONS = (OSError, http.client.HTTPException)


class _Interrupted(Exception):
    """Internal: the transfer stopped early; the .part file holds what arrived."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _content_range(header: Optional[str]) -> Tuple[Optional[int], Optional[int]]:
    """``(first byte, total size)`` of a ``Content-Range: bytes START-END/TOTAL`` header (None when
    absent or unparsable; the total is None when the server wrote ``*``)."""
    match = re.match(r"\s*bytes\s+(\d+)-\d+/(\d+|\*)", header or "")
    if not match:
        return None, None
    return int(match.group(1)), (int(match.group(2)) if match.group(2) != "*" else None)


def _meta_path(part: Path) -> Path:
    return part.with_name(part.name + ".json")


def _read_meta(part: Path) -> Dict[str, object]:
    """What was recorded when ``part`` was started: url, ETag, Last-Modified, total size."""
    try:
        meta = json.loads(_meta_path(part).read_text())
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def _validator(meta: Mapping[str, object]) -> Optional[str]:
    """The ``If-Range`` value that makes a server send the whole file if it changed: a strong ETag, else
    the Last-Modified date."""
    etag = meta.get("etag")
    if isinstance(etag, str) and etag and not etag.startswith("W/"):
        return etag
    modified = meta.get("last_modified")
    return modified if isinstance(modified, str) and modified else None


def _start_over(part: Path) -> None:
    part.unlink(missing_ok=True)
    _meta_path(part).unlink(missing_ok=True)


def _fetch_once(url: str, part: Path, size: Optional[int], progress: bool, timeout: float,
                desc: str, sha256: Optional[str] = None) -> None:
    """One HTTP request: resume ``part`` from its current length, append what arrives.

    Returns normally when the server says the body is complete; raises :class:`_Interrupted` when the
    connection drops or ends early (the bytes received so far stay in ``part``), and
    :class:`DownloadError` for errors that retrying will not fix (HTTP 4xx/5xx, DNS failure, refusal).

    A ``.part`` file is resumed only when the result can be trusted: when its SHA-256 is known (checked
    at the end), or when ``<part>.json`` recorded the server's ETag or Last-Modified date for this URL
    (sent as ``If-Range``: a changed file comes back whole). Otherwise it starts over, so bytes of two
    versions of a file are never spliced together.
    """
    offset = part.stat().st_size if part.exists() else 0
    meta = _read_meta(part)
    if offset and meta.get("url") not in (None, url):
        _start_over(part)  # bytes of another URL
        offset, meta = 0, {}
    validator = _validator(meta) if meta.get("url") == url else None
    if offset and sha256 is None and validator is None:
        _start_over(part)  # nothing could tell us the server still has the same file
        offset, meta = 0, {}
    if size is not None and offset > size:
        _start_over(part)  # longer than the real file: it cannot be a prefix of it
        offset = 0
    if size is not None and offset == size and (sha256 is not None or validator is not None):
        return  # already complete; verification decides whether it is right

    request = urllib.request.Request(url, headers={"User-Agent": "samkit"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
        if validator is not None:
            request.add_header("If-Range", validator)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:
            return  # "range not satisfiable": we already have every byte
        raise DownloadError(f"HTTP {e.code} {e.reason} for {url}") from e
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise DownloadError(f"could not connect to {url}: {reason}") from e

    with response:
        status = getattr(response, "status", 200)
        range_start, range_total = _content_range(response.headers.get("Content-Range"))
        known_total = meta.get("total") if isinstance(meta.get("total"), int) else None
        if offset and status == 206 and range_start == offset and \
                (known_total is None or range_total is None or range_total == known_total):
            mode = "ab"  # the server honoured the Range request for the same file
        else:
            mode, offset = "wb", 0  # plain 200 (Range ignored, or the file changed) or an odd range
        length = response.headers.get("Content-Length")
        expected_end = offset + int(length) if length is not None else size
        if mode == "wb":
            _meta_path(part).write_text(json.dumps({
                "url": url, "etag": response.headers.get("ETag"),
                "last_modified": response.headers.get("Last-Modified"),
                "total": range_total if status == 206 else expected_end}))
        total = size if size is not None else expected_end
        received = offset
        with open(part, mode) as f, tqdm(total=total, initial=offset, unit="B", unit_scale=True,
                                         unit_divisor=1024, desc=desc, disable=not progress,
                                         leave=False) as bar:
            while True:
                try:
                    block = response.read(_CHUNK)
                except _INTERRUPTIONS as e:  # reset, timeout, IncompleteRead, ...
                    raise _Interrupted(f"{type(e).__name__}: {e}") from e
                if not block:
                    break
                f.write(block)
                received += len(block)
                bar.update(len(block))
    if expected_end is not None and received < expected_end:
        # http.client reports a connection closed before Content-Length as a plain end of data.
        raise _Interrupted(f"connection closed after {received:,} of {expected_end:,} bytes")


def download(url: str, dest: PathLike, sha256: Optional[str] = None, size: Optional[int] = None,
             progress: bool = True, retries: int = 3, timeout: float = 30.0) -> Path:
    """Download ``url`` to ``dest`` safely and return ``dest``.

    The bytes go to ``dest`` + ``.part`` first. An existing ``.part`` file is resumed with an HTTP
    ``Range`` request (a server that ignores it and answers 200 makes us start over). A dropped
    connection is resumed up to ``retries`` times. When the transfer is complete the size and the
    SHA-256 are checked (each only when given) and the file is renamed to ``dest`` atomically
    (``os.replace``), so ``dest`` never holds a partial or corrupt file; an existing ``dest`` is
    replaced only by a verified new file (one that already matches ``sha256`` is kept). Without ``size``
    and without a ``Content-Length`` from the server, a truncated body can only be caught by the SHA-256.

    Without ``sha256``, a ``.part`` file is resumed only with the server's ETag/Last-Modified recorded at
    its start (``<part>.json``, sent as ``If-Range``); otherwise the transfer starts over. Two processes
    asking for the same ``dest`` take turns (a lock on ``<dest>.lock``): the second waits, then returns
    the file the first one verified.

    Raises:
        ChecksumError: wrong size or SHA-256; the ``.part`` file is deleted.
        DownloadError: no network, an HTTP error, or too many interruptions; the message gives the URL
            and the exact path where the file can be placed by hand. What arrived stays in ``.part``
            and the next call resumes from it.
    """
    return _download(url, Path(dest), sha256=sha256, size=size, progress=progress, retries=retries,
                     timeout=timeout)


@contextmanager
def _exclusive(dest: Path) -> Iterator[bool]:
    """Hold ``<dest>.lock`` so that one process at a time downloads ``dest``; yields whether another
    process held it first (then ``dest`` may be there now). Without ``fcntl`` (Windows) nothing is locked."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on the platforms the kit is tested on
        yield False
        return
    with open(dest.with_name(dest.name + ".lock"), "a") as lock:
        waited = False
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            tqdm.write(f"waiting for another process that is downloading {dest.name} ...")
            fcntl.flock(lock, fcntl.LOCK_EX)
            waited = True
        try:
            yield waited
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _download(url: str, dest: Path, sha256: Optional[str], size: Optional[int], progress: bool,
              retries: int = 3, timeout: float = 30.0) -> Path:
    dest = Path(dest).expanduser()
    part = dest.with_suffix(dest.suffix + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive(dest) as waited:
        if dest.is_file() and (sha256 is not None or waited):
            try:  # another process finished it, or it is already here and verified
                verify_once(dest, sha256=sha256, size=size, progress=progress)
                return dest
            except ChecksumError:
                pass  # replaced below by a verified new file
        return _download_locked(url, dest, part, sha256, size, progress, retries, timeout)


def _download_locked(url: str, dest: Path, part: Path, sha256: Optional[str], size: Optional[int],
                     progress: bool, retries: int, timeout: float) -> Path:
    last_reason = ""
    for _attempt in range(retries + 1):
        try:
            _fetch_once(url, part, size, progress, timeout, desc=dest.name, sha256=sha256)
            break
        except _Interrupted as e:
            last_reason = e.reason
        except DownloadError as e:
            raise DownloadError(f"{e}\n" + _manual_hint(url, dest)) from e.__cause__
    else:
        have = part.stat().st_size if part.exists() else 0
        raise DownloadError(
            f"download of {url} was interrupted {retries + 1} times ({last_reason}); "
            f"{have:,} bytes are kept in {part} and the next attempt resumes from there.\n"
            + _manual_hint(url, dest)
        )
    if not part.exists():  # an empty body never opened the file
        part.touch()
    try:
        digest = verify_file(part, sha256=sha256, size=size, progress=progress)
        if digest is None:  # no published digest: record this one, to catch later changes to the file
            digest = file_sha256(part, progress=progress and part.stat().st_size > (64 << 20))
    except ChecksumError as e:
        _start_over(part)
        raise ChecksumError(
            f"download of {url} failed verification; the downloaded file was deleted.\n{e}"
        ) from None
    os.replace(part, dest)
    _meta_path(part).unlink(missing_ok=True)
    _remember_verified(dest, digest)
    return dest


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------
_NESTING_KEYS = ("model", "state_dict", "model_state_dict", "module")


def _unwrap(obj: object) -> object:
    """Peel off training-checkpoint wrappers: ``{"model": sd, "optimizer": ...}``, ``{"state_dict": sd}``."""
    for _ in range(4):
        if not isinstance(obj, Mapping) or any(isinstance(v, Tensor) for v in obj.values()):
            return obj
        for key in _NESTING_KEYS:
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
        else:
            return obj
    return obj


def _strip_prefix(state: Dict[str, Tensor], prefix: str) -> Dict[str, Tensor]:
    if state and all(k.startswith(prefix) for k in state):
        return OrderedDict((k[len(prefix):], v) for k, v in state.items())
    return state


def load_state_dict(path: PathLike) -> Dict[str, Tensor]:
    """Read a checkpoint file into a ``{name: tensor}`` dict on the CPU.

    Uses ``torch.load(path, map_location="cpu", weights_only=True)``: only tensors and plain containers
    are unpickled, so a file cannot run code while loading. Common wrappers are removed: a nested
    ``"model"`` / ``"state_dict"`` entry, and the ``"module."`` prefix that DataParallel/DDP add.

    Raises:
        FileNotFoundError: the file does not exist.
        UnsafeCheckpointError: the file holds other pickled objects (it was not loaded).
        CheckpointError: the file is truncated, corrupt, not a dict of tensors, or a tensor holds NaN or
            infinity (:func:`check_finite`).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        reason = _torch_reason(e)
        if re.search(r"\bglobal\b|unsupported class", str(e), re.IGNORECASE):
            raise UnsafeCheckpointError(
                f"{path} contains pickled objects other than tensors, which could run code when loaded; "
                "samkit refused to load it (torch.load with weights_only=True). If you made the file "
                "yourself and trust it, re-save only its state dict: torch.save(model.state_dict(), path).\n"
                f"torch said: {reason}"
            ) from e
        raise CheckpointError(
            f"{path} is corrupt or truncated and could not be read ({reason}). "
            "Delete it and download it again."
        ) from e
    except (RuntimeError, EOFError, ValueError, zipfile.BadZipFile, OSError) as e:
        size = path.stat().st_size
        raise CheckpointError(
            f"{path} ({size:,} bytes) is corrupt or truncated and could not be read "
            f"({type(e).__name__}: {_torch_reason(e)}). Delete it and download it again."
        ) from e
    obj = _unwrap(obj)
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a state dict (a dict of tensors)")
    bad = [k for k, v in obj.items() if not isinstance(v, Tensor)]
    if bad:
        shown = ", ".join(repr(k) for k in bad[:5]) + (f" (+{len(bad) - 5} more)" if len(bad) > 5 else "")
        raise CheckpointError(f"{path} is not a plain state dict: entries {shown} are not tensors")
    check_finite(obj, str(path))
    return _strip_prefix(OrderedDict(obj), "module.")


def check_finite(state: Mapping[str, Tensor], source: str = "the state dict",
                 advice: str = "the weights are corrupt or come from a diverged training run. Use an earlier "
                               "checkpoint, or download the file again.") -> None:
    """Raise :class:`CheckpointError` naming the first floating-point tensor that holds NaN or infinity.

    Such weights come from a diverged training run or a corrupted file; a model built from them answers
    every prompt with NaN scores and empty masks. ``advice`` ends the message.
    """
    for name, value in state.items():
        if isinstance(value, Tensor) and (value.is_floating_point() or value.is_complex()) and \
                not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            raise CheckpointError(
                f"{source}: tensor {name!r} (shape {list(value.shape)}) holds {bad:,} NaN or infinite "
                f"value(s) of {value.numel():,}; {advice}")


def _torch_reason(error: BaseException) -> str:
    """The informative line of a torch.load error (its messages run to many lines of general advice)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in lines:
        if "GLOBAL" in line or line.lower().startswith("unsupported"):
            return line
    return lines[0] if lines else "no details"


def _find_key(state: Mapping[str, Tensor], suffix: str) -> Optional[str]:
    """The shortest key ending with ``suffix`` (so a bare encoder's keys are found too)."""
    hits = [k for k in state if k == suffix or k.endswith("." + suffix)]
    return min(hits, key=len) if hits else None


_WIDTH_TO_MODEL = {768: "vit_b", 1024: "vit_l", 1280: "vit_h", 192: "tiny_v1"}


def _conv_model_name(state: Mapping[str, Tensor]) -> Tuple[Optional[str], str]:
    """Which convolutional model (``tiny``, ``tiny_v2``, ``tiny_wide``, ``tiny_cr``) a state dict is, from its
    stages' widths (read off the lateral projections of stages 2-4), its number of context blocks and whether
    its decoder has a coarse read-out."""
    from .model.configs import CONFIGS, ConvEncoderConfig

    widths = []
    for i in range(3):
        key = _find_key(state, f"image_encoder.lateral.{i}.weight")
        if key is None:
            return "tiny", "a convolutional image encoder ('image_encoder.stages.*')"
        widths.append(int(state[key].shape[1]))
    blocks = {m.group(1) for k in state for m in [re.search(r"image_encoder\.context\.(\d+)\.", k)] if m}
    coarse = any(".coarse_hypernetworks_mlps." in k for k in state)
    evidence = (f"a convolutional image encoder, stages 2-4 {tuple(widths)} wide, {len(blocks)} context blocks"
                + (", a coarse read-out" if coarse else ""))
    for name, config in CONFIGS.items():
        enc = config.encoder
        if (isinstance(enc, ConvEncoderConfig) and tuple(enc.widths[1:]) == tuple(widths)
                and enc.context_depth == len(blocks) and config.decoder.coarse_readout == coarse):
            return name, evidence
    return None, evidence


def guess_model_name(state: Mapping[str, Tensor]) -> Tuple[Optional[str], str]:
    """Guess which samkit model a state dict belongs to, from its image encoder.

    Returns ``(name or None, evidence)``. The ViT patch embedding width identifies the official models
    (768 -> vit_b, 1024 -> vit_l, 1280 -> vit_h; 192 -> samkit's tiny_v1); an encoder built from TinyViT
    ``layers.`` (not ViT ``blocks.``) is MobileSAM's vit_t, one built from ``stages.`` samkit's convolutional
    tiny, tiny_v2, tiny_wide or tiny_cr (told apart by widths, context blocks and the decoder's coarse
    read-out), a ViT with a ``detail.`` path samkit's tiny_hq.
    """
    if any(re.search(r"(^|\.)image_encoder\.layers\.\d", k) for k in state) or (
        _find_key(state, "patch_embed.seq.0.c.weight") is not None
    ):
        return "vit_t", "a TinyViT image encoder ('image_encoder.layers.*')"
    if any(re.search(r"(^|\.)image_encoder\.stages\.\d", k) for k in state):
        return _conv_model_name(state)
    if any(re.search(r"(^|\.)image_encoder\.detail\.", k) for k in state):
        return "tiny_hq", "a ViT image encoder with a detail path ('image_encoder.detail.*')"
    key = _find_key(state, "patch_embed.proj.weight")
    if key is None:
        return None, "no image encoder patch embedding found"
    width = int(state[key].shape[0])
    blocks = {m.group(1) for k in state for m in [re.search(r"blocks\.(\d+)\.", k)] if m}
    evidence = f"patch embedding width {width}" + (f", {len(blocks)} blocks" if blocks else "")
    return _WIDTH_TO_MODEL.get(width), evidence


@dataclass
class LoadResult:
    """What :func:`load_into` skipped with ``strict=False`` (field names as in torch's result), the
    position tables it resized with ``resize=True`` and the layers it widened with ``widen=True``."""

    missing_keys: List[str]
    unexpected_keys: List[str]
    resized_keys: List[str] = field(default_factory=list)
    widened_keys: List[str] = field(default_factory=list)


def _group(keys: Iterable[str], limit: int) -> List[str]:
    """Lines ``prefix (n): a, b, c, ... (+k more)`` grouping keys by their top-level module."""
    groups: Dict[str, List[str]] = OrderedDict()
    for key in keys:
        head, _, rest = key.partition(".")
        groups.setdefault(head if rest else "(top level)", []).append(rest or key)
    lines = []
    for head, rests in groups.items():
        shown = ", ".join(rests[:limit])
        more = f", ... (+{len(rests) - limit} more)" if len(rests) > limit else ""
        lines.append(f"    {head} ({len(rests)}): {shown}{more}")
    return lines


def _mismatch_message(source: str, model: nn.Module, missing: List[str], unexpected: List[str],
                      shapes: List[Tuple[str, torch.Size, torch.Size]], state: Mapping[str, Tensor],
                      model_state: Mapping[str, Tensor], limit: int = 6) -> str:
    lines = [f"{source} does not fit {type(model).__name__}:"]
    if missing:
        lines.append(f"  missing keys ({len(missing)}), in the model but not in the checkpoint:")
        lines += _group(missing, limit)
    if unexpected:
        lines.append(f"  unexpected keys ({len(unexpected)}), in the checkpoint but not in the model:")
        lines += _group(unexpected, limit)
    if shapes:
        lines.append(f"  shape mismatches ({len(shapes)}), checkpoint vs model:")
        for key, got, want in shapes[:limit]:
            lines.append(f"    {key}: {list(got)} vs {list(want)}")
        if len(shapes) > limit:
            lines.append(f"    ... (+{len(shapes) - limit} more)")
    ckpt_name, ckpt_why = guess_model_name(state)
    model_name, model_why = guess_model_name(model_state)
    if ckpt_name is not None:
        lines.append(f"  The checkpoint looks like {ckpt_name} ({ckpt_why}); the model looks like "
                     f"{model_name or 'none of the known models'} ({model_why}).")
        if ckpt_name != model_name:
            lines.append(f"  Build the matching model, e.g. samkit.build_model({ckpt_name!r}), to load it.")
    else:
        lines.append(f"  Could not tell which model the checkpoint belongs to ({ckpt_why}).")
    return "\n".join(lines)


def resize_positions(state: Mapping[str, Tensor], model: nn.Module) -> Tuple[Dict[str, Tensor], List[str]]:
    """Adapt a checkpoint's position tables to ``model``'s input resolution.

    A ViT encoder trained at one resolution can continue training at another (SAM's encoder itself was
    pre-trained at 224 px and trained at 1024 px): the absolute position embedding ``pos_embed``
    (``1 x H x W x C``) is resized bicubically to the model's token grid, and the relative position tables
    ``rel_pos_h``/``rel_pos_w`` (``(2S - 1) x C``) linearly to the model's length. Other tensors are returned
    unchanged. Returns the new state dict and the names that were resized.
    """
    model_state = model.state_dict()
    out: Dict[str, Tensor] = dict(state)
    resized: List[str] = []
    for name, value in state.items():
        target = model_state.get(name)
        if target is None or value.shape == target.shape:
            continue
        if name.endswith("pos_embed") and value.dim() == 4 and value.shape[-1] == target.shape[-1]:
            grid = value.permute(0, 3, 1, 2).float()  # 1 x C x H x W
            grid = F.interpolate(grid, size=tuple(target.shape[1:3]), mode="bicubic", align_corners=False)
            out[name] = grid.permute(0, 2, 3, 1).to(value.dtype).contiguous()
            resized.append(name)
        elif name.endswith(("rel_pos_h", "rel_pos_w")) and value.dim() == 2 and value.shape[1] == target.shape[1]:
            out[name] = resize_rel_pos(value.float(), target.shape[0]).to(value.dtype).contiguous()
            resized.append(name)
    return out, resized


def widen_state(state: Mapping[str, Tensor], model: nn.Module) -> Tuple[Dict[str, Tensor], List[str]]:
    """Fit a narrower model's weights into ``model``, whose layers have as many or more channels.

    Each tensor whose every dimension is at most ``model``'s is copied into the leading corner of
    ``model``'s own (freshly initialised) tensor, and the weights reading from the new input channels
    (dimension 1 of a weight of two or more dimensions) are set to zero: the new channels compute
    features that nothing reads yet, so the widened model predicts exactly what the narrow one does
    (with GroupNorm this holds when the new channels form whole new groups, as they do when widths
    grow by multiples of the group size). Returns the new state and the widened keys.
    """
    own = model.state_dict()
    out: Dict[str, Tensor] = dict(state)
    widened: List[str] = []
    for key, old in state.items():
        if key not in own or own[key].shape == old.shape:
            continue
        new = own[key]
        if new.dim() != old.dim() or any(o > n for o, n in zip(old.shape, new.shape)):
            continue  # not a widening: left for load_into to report as a shape mismatch
        grown = new.detach().clone()
        if grown.dim() >= 2 and grown.shape[1] > old.shape[1]:
            grown[:, old.shape[1]:] = 0
        grown[tuple(slice(0, n) for n in old.shape)] = old.to(grown.dtype)
        out[key] = grown
        widened.append(key)
    return out, widened


def load_into(model: nn.Module, state_dict_or_path: Union[Mapping[str, Tensor], PathLike],
              strict: bool = True, resize: bool = False, widen: bool = False) -> LoadResult:
    """Copy a checkpoint into ``model`` (any ``nn.Module``), explaining any mismatch in one error.

    Args:
        model: the module to fill; its parameters and persistent buffers are overwritten in place.
        state_dict_or_path: a ``{name: tensor}`` mapping, or a checkpoint file read with
            :func:`load_state_dict`.
        strict: if True, any missing key, unexpected key or shape mismatch raises; if False, missing and
            unexpected keys are skipped and reported in the result, but a shape mismatch still raises
            (as ``nn.Module.load_state_dict`` does).
        resize: adapt position embeddings made for another input resolution (:func:`resize_positions`)
            instead of reporting them as shape mismatches.
        widen: fit a narrower model's layers into ``model``'s wider ones (:func:`widen_state`), after the
            position tables are resized (a table is resized, never widened).

    Raises:
        StateDictMismatchError: listing missing keys, unexpected keys and shape mismatches grouped by
            top-level module, and guessing which model the checkpoint was made for. Nothing is copied.
    """
    if isinstance(state_dict_or_path, (str, os.PathLike)):
        source = f"checkpoint {Path(state_dict_or_path).name!r}"
        state = load_state_dict(state_dict_or_path)
    elif isinstance(state_dict_or_path, Mapping):
        source = "the state dict"
        state = state_dict_or_path
    else:
        raise TypeError(f"expected a state dict or a file path, got {type(state_dict_or_path).__name__}")
    resized: List[str] = []
    widened: List[str] = []
    if resize:
        state, resized = resize_positions(state, model)
    if widen:
        state, widened = widen_state(state, model)

    model_state = model.state_dict()
    missing = [k for k in model_state if k not in state]
    unexpected = [k for k in state if k not in model_state]
    shapes = [(k, state[k].shape, model_state[k].shape) for k in model_state
              if k in state and state[k].shape != model_state[k].shape]
    if shapes or (strict and (missing or unexpected)):
        raise StateDictMismatchError(
            _mismatch_message(source, model, missing, unexpected, shapes, state, model_state)
        )
    model.load_state_dict({k: v for k, v in state.items() if k in model_state}, strict=False)
    return LoadResult(missing_keys=missing, unexpected_keys=unexpected, resized_keys=resized, widened_keys=widened)
