"""The embedding cache: an image's embedding is computed once per (model, image) and reused.

The key is a SHA-1 of a model fingerprint and the image bytes, so a second ``set_image`` of the same
picture costs no encoder pass, and training with a frozen encoder reads each image's embedding from
disk in every epoch. On disk, embeddings are stored as float16 ``.pt`` files written atomically
(a temporary file, then ``os.replace``), so an interrupted write never leaves a half file under a key.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
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


class EmbeddingCache:
    """An LRU in-memory cache of image embeddings, optionally backed by a folder on disk.

    Args:
        directory: where to keep ``<key>.pt`` files (float16); ``None`` keeps embeddings in memory only.
        max_items: how many embeddings to keep in memory (a vit_b embedding is 4 MiB in float32).
    """

    def __init__(self, directory: Optional[Union[str, Path]] = None, max_items: int = 32) -> None:
        self.directory = Path(directory) if directory is not None else None
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
        self.max_items = max_items
        self._memory: "OrderedDict[str, torch.Tensor]" = OrderedDict()
        self.hits = 0
        self.misses = 0

    def _path(self, key: str) -> Path:
        assert self.directory is not None
        return self.directory / f"{key}.pt"

    def get(self, key: str) -> Optional[torch.Tensor]:
        """The cached embedding (float32, CPU) or ``None``."""
        if key in self._memory:
            self._memory.move_to_end(key)
            self.hits += 1
            return self._memory[key]
        if self.directory is not None and self._path(key).exists():
            try:
                emb = torch.load(self._path(key), map_location="cpu", weights_only=True).float()
            except Exception:  # unreadable entry: drop it and recompute
                self._path(key).unlink(missing_ok=True)
            else:
                self._remember(key, emb)
                self.hits += 1
                return emb
        self.misses += 1
        return None

    def put(self, key: str, embedding: torch.Tensor) -> None:
        emb = embedding.detach().to("cpu", torch.float32)
        if self.directory is not None:  # keep what the disk holds, so a value never depends on eviction
            emb = emb.to(torch.float16).to(torch.float32)
        self._remember(key, emb)
        if self.directory is not None:
            fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
            os.close(fd)
            try:
                torch.save(emb.to(torch.float16).clone(), tmp)
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
        return key in self._memory or (self.directory is not None and self._path(key).exists())

    def __len__(self) -> int:
        return len(self._memory)

    def clear(self) -> None:
        self._memory.clear()
