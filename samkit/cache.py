"""The embedding cache: an image's embedding is computed once per (model, image) and reused.

The key is a SHA-1 of a model fingerprint and the image bytes, so a second ``set_image`` of the same
picture costs no encoder pass, and training with a frozen encoder reads each image's embedding from
disk in every epoch. On disk, embeddings are stored as float16 ``.pt`` files written atomically
(a temporary file, then ``os.replace``), so an interrupted write never leaves a half file under a key.
Each file carries the SHA-256 of its tensor's bytes: an entry damaged on disk (flipped bits, a file
from an older layout, NaN values) is deleted when it is read and the embedding computed again.
Temporary files left by a killed process are removed when the cache folder is next opened.
"""
from __future__ import annotations

import hashlib
import os
import weakref
from collections import OrderedDict
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
from torch import nn

#: encoder -> ((config name, its parameters' addresses and versions), fingerprint); an entry goes
#: when its encoder does
_FINGERPRINTS: "weakref.WeakKeyDictionary[nn.Module, tuple]" = weakref.WeakKeyDictionary()


def model_fingerprint(model: nn.Module) -> str:
    """A short hash of the image encoder's weights (a strided sample of every tensor) and config name.

    Remembered per encoder and recomputed only when a parameter changes (in-place updates bump the
    tensors' version counters), so it is cheap to call before every encoder pass.
    """
    encoder = getattr(model, "image_encoder", model)
    params = list(encoder.parameters())
    name = str(getattr(getattr(model, "config", None), "name", type(encoder).__name__))
    state = (name, tuple((p.data_ptr(), p._version) for p in params))
    memo = _FINGERPRINTS.get(encoder)
    if memo is not None and memo[0] == state:
        return memo[1]
    h = hashlib.sha1()
    h.update(name.encode())
    with torch.no_grad():
        for p in params:
            flat = p.detach().reshape(-1)
            sample = flat[:: max(1, flat.numel() // 64)].float().cpu().numpy()
            h.update(str(tuple(p.shape)).encode())
            h.update(sample.tobytes())
    digest = h.hexdigest()[:16]
    _FINGERPRINTS[encoder] = (state, digest)
    return digest


def image_key(model: nn.Module, image: Union[np.ndarray, torch.Tensor], extra: str = "") -> str:
    """Cache key for ``image`` (its shape and bytes) under ``model``."""
    arr = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    h = hashlib.sha1()
    h.update(model_fingerprint(model).encode())
    h.update(str((arr.shape, str(arr.dtype), extra)).encode())
    h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def _digest(embedding: torch.Tensor) -> str:
    """SHA-256 of a CPU tensor's bytes."""
    return hashlib.sha256(embedding.contiguous().view(torch.uint8).numpy().tobytes()).hexdigest()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def remove_stale_temporaries(directory: Path) -> int:
    """Delete ``*.tmp<pid>`` files in ``directory`` whose writing process is gone; returns how many."""
    removed = 0
    for tmp in directory.glob("*.tmp*"):
        suffix = tmp.suffix[len(".tmp"):] if tmp.suffix.startswith(".tmp") else ""
        if suffix.isdigit() and int(suffix) != os.getpid() and not _pid_alive(int(suffix)):
            tmp.unlink(missing_ok=True)
            removed += 1
    return removed


class EmbeddingCache:
    """An LRU in-memory cache of image embeddings, optionally backed by a folder on disk.

    Args:
        directory: where to keep ``<key>.pt`` files (float16 with a SHA-256 of their bytes); ``None`` keeps
            embeddings in memory only.
        max_items: how many embeddings to keep in memory (a vit_b embedding is 4 MiB in float32).
    """

    def __init__(self, directory: Optional[Union[str, Path]] = None, max_items: int = 32) -> None:
        self.directory = Path(directory) if directory is not None else None
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(self.directory)
        self.max_items = max_items
        self._memory: "OrderedDict[str, torch.Tensor]" = OrderedDict()
        self.hits = 0
        self.misses = 0
        self.dropped = 0  # damaged entries deleted from disk

    def _path(self, key: str) -> Path:
        assert self.directory is not None
        return self.directory / f"{key}.pt"

    def _load(self, key: str) -> Optional[torch.Tensor]:
        """The checked embedding stored on disk under ``key`` (float32), or None; a damaged entry is deleted."""
        path = self._path(key)
        if not path.exists():
            return None
        try:
            entry = torch.load(path, map_location="cpu", weights_only=True)
            ok = isinstance(entry, dict) and isinstance(entry.get("embedding"), torch.Tensor) \
                and entry.get("sha256") == _digest(entry["embedding"]) \
                and bool(torch.isfinite(entry["embedding"]).all())
        except Exception:  # unreadable (truncated, not a torch file, ...)
            ok = False
        if not ok:
            path.unlink(missing_ok=True)  # recomputed by the caller
            self.dropped += 1
            return None
        emb = entry["embedding"].float()
        self._remember(key, emb)
        return emb

    def get(self, key: str) -> Optional[torch.Tensor]:
        """The cached embedding (float32, CPU) or ``None`` (also for an entry damaged on disk)."""
        if key in self._memory:
            self._memory.move_to_end(key)
            self.hits += 1
            return self._memory[key]
        if self.directory is not None:
            emb = self._load(key)
            if emb is not None:
                self.hits += 1
                return emb
        self.misses += 1
        return None

    def put(self, key: str, embedding: torch.Tensor) -> None:
        emb = embedding.detach().to("cpu", torch.float32)
        if not bool(torch.isfinite(emb).all()):
            raise ValueError(f"refusing to cache an embedding holding NaN or infinity (key {key}); the image "
                             "encoder's weights or input are broken")
        if self.directory is not None:  # keep what the disk holds, so a value never depends on eviction
            emb = emb.to(torch.float16).to(torch.float32)
        self._remember(key, emb)
        if self.directory is not None:
            half = emb.to(torch.float16).clone()
            tmp = self.directory / f"{key}.pt.tmp{os.getpid()}"
            try:
                torch.save({"embedding": half, "sha256": _digest(half)}, tmp)
                os.replace(tmp, self._path(key))
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)

    def _remember(self, key: str, emb: torch.Tensor) -> None:
        self._memory[key] = emb
        self._memory.move_to_end(key)
        while len(self._memory) > self.max_items:
            self._memory.popitem(last=False)

    def __contains__(self, key: str) -> bool:
        """Whether ``get(key)`` would return an embedding (an entry on disk is read and checked)."""
        return key in self._memory or (self.directory is not None and self._load(key) is not None)

    def __len__(self) -> int:
        return len(self._memory)

    def clear(self) -> None:
        self._memory.clear()
