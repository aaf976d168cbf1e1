"""Which device, which mixed-precision dtype, how to time: one policy for the whole kit.

    from samkit.device import pick_device, autocast_dtype, autocast, make_scaler, describe_device

    device = pick_device("auto")              # cuda when a GPU is visible, else cpu
    dtype = autocast_dtype(device)            # bfloat16 (Ampere+), float16 (T4, V100), None on the CPU
    scaler = make_scaler(device, dtype)       # a GradScaler, enabled only for float16
    with autocast(device, dtype):
        loss = model(batch)
    scaler.scale(loss).backward(); scaler.step(optimizer); scaler.update()
    print(describe_device(device))            # "cuda:0 · Tesla T4 · 15.0 GiB · compute capability 7.5 · fp16"

Colab's free GPU is a T4 (compute capability 7.5): it has float16 tensor cores but no native bfloat16
(torch may still report bfloat16 as supported there, by emulation, which is slow), so ``autocast_dtype``
picks float16 and training needs the loss scaling of :func:`make_scaler`. From Ampere (capability 8.0:
A100, L4, RTX 30xx) on, bfloat16 is native, has float32's range and needs no scaler. On the CPU
everything runs in float32 unless bfloat16 is asked for. The training loop (``TrainConfig.amp``), the
notebooks (:func:`samkit.notebook_utils.setup`) and the GPU suite all ask this module.
"""
from __future__ import annotations

import contextlib
import time
from typing import Any, Callable, ContextManager, List, Optional, Union

import torch

__all__ = ["pick_device", "autocast_dtype", "autocast", "make_scaler", "describe_device", "AMP_CHOICES",
           "native_bf16", "synchronize", "time_calls"]

#: the values ``amp`` may take (TrainConfig.amp uses the last three).
AMP_CHOICES = ("auto", "none", "bf16", "fp16")

DeviceLike = Union[str, torch.device]


def pick_device(device: DeviceLike = "auto") -> torch.device:
    """The device to run on.

    Args:
        device: ``"auto"`` (``cuda`` when ``torch.cuda.is_available()``, else ``cpu``), ``"cpu"``, ``"cuda"``,
            ``"cuda:1"``, ``"mps"`` or a ``torch.device``.

    Raises:
        ValueError: a CUDA (or MPS) device was asked for but this machine has none, or the index is out of range.
        TypeError: ``device`` is neither a string nor a ``torch.device``.
    """
    if isinstance(device, str):
        if device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        try:
            dev = torch.device(device)
        except RuntimeError as exc:
            raise ValueError(f"device={device!r} is not a device name; use 'auto', 'cpu', 'cuda' or 'cuda:N'") from exc
    elif isinstance(device, torch.device):
        dev = device
    else:
        raise TypeError(f"device must be a string such as 'auto', 'cpu' or 'cuda', or a torch.device; "
                        f"got {type(device).__name__}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={str(dev)!r} but torch.cuda.is_available() is False on this machine "
                             f"(torch {torch.__version__}); use device='auto' or 'cpu'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device={str(dev)!r} but this machine has {torch.cuda.device_count()} CUDA device(s)")
    if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ValueError("device='mps' but torch.backends.mps.is_available() is False on this machine")
    return dev


def native_bf16(device: torch.device) -> bool:
    """True on a CUDA card with native bfloat16 (compute capability >= 8.0: Ampere and newer).

    ``torch.cuda.is_bf16_supported()`` alone is not enough: on older cards (T4 = 7.5) it may report True
    because bfloat16 is emulated, which works but is slower than float16.
    """
    return (device.type == "cuda" and torch.cuda.is_bf16_supported()
            and torch.cuda.get_device_capability(device) >= (8, 0))


def autocast_dtype(device: DeviceLike, amp: str = "auto") -> Optional[torch.dtype]:
    """The dtype for ``torch.autocast`` on ``device``, or ``None`` for full float32.

    Args:
        device: where the model runs (``torch.device`` or a name, resolved with :func:`pick_device`).
        amp: ``"auto"``: on CUDA, ``bfloat16`` where the card has it natively (:func:`native_bf16`),
            ``float16`` on older cards (T4 = 7.5, V100 = 7.0); ``None`` on the CPU and other devices.
            ``"none"``: ``None`` everywhere. ``"bf16"`` / ``"fp16"``: forced (bf16 works on the CPU too;
            fp16 autocast on the CPU is slow and only useful to test the code path).

    Raises:
        ValueError: ``amp`` is not one of :data:`AMP_CHOICES`, or bf16 was forced on a CUDA card without
            native bfloat16.
    """
    if amp not in AMP_CHOICES:
        raise ValueError(f"amp={amp!r}; choose one of {', '.join(AMP_CHOICES)}")
    dev = pick_device(device)
    if amp == "none":
        return None
    if amp == "fp16":
        return torch.float16
    if amp == "bf16":
        if dev.type == "cuda" and not native_bf16(dev):
            major, minor = torch.cuda.get_device_capability(dev)
            raise ValueError(f"amp='bf16' but {torch.cuda.get_device_name(dev)} (compute capability "
                             f"{major}.{minor}) has no native bfloat16 (it needs 8.0 or newer); "
                             "use amp='fp16' or 'auto'")
        return torch.bfloat16
    # auto: bf16 where native, fp16 (with a GradScaler when training) on older cards, fp32 elsewhere
    if dev.type != "cuda":
        return None
    return torch.bfloat16 if native_bf16(dev) else torch.float16


def autocast(device: DeviceLike, dtype: Optional[torch.dtype]) -> ContextManager:
    """``torch.autocast`` for ``device`` with ``dtype``; a no-op context when ``dtype`` is ``None``.

    Inside it, matmuls and convolutions run in ``dtype``; numerically sensitive ops (softmax, norms, losses)
    stay in float32, as torch's autocast lists decide. Outputs may be in ``dtype``: call ``.float()`` before
    comparing or thresholding.
    """
    if dtype is None:
        return contextlib.nullcontext()
    if dtype not in (torch.float16, torch.bfloat16):
        raise ValueError(f"autocast dtype must be torch.float16, torch.bfloat16 or None, got {dtype}")
    dev = device if isinstance(device, torch.device) else pick_device(device)
    return torch.autocast(device_type=dev.type, dtype=dtype)


def make_scaler(device: DeviceLike, dtype: Optional[torch.dtype]) -> "torch.amp.GradScaler":
    """A ``torch.amp.GradScaler`` for ``device``, enabled only when ``dtype`` is float16.

    float16's range ends at 65504 and small gradients underflow to zero, so fp16 training scales the loss
    up before ``backward`` and unscales the gradients before the step. bfloat16 and float32 need none: the
    returned scaler is disabled and its ``scale``/``step``/``update`` pass through unchanged, so a training
    loop can call it unconditionally.
    """
    dev = device if isinstance(device, torch.device) else pick_device(device)
    return torch.amp.GradScaler(dev.type, enabled=dtype == torch.float16)


def synchronize(device: DeviceLike) -> None:
    """Wait for queued CUDA work on ``device`` (for timings); nothing on the CPU."""
    dev = device if isinstance(device, torch.device) else torch.device(device)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def time_calls(fn: Callable[[], Any], repeat: int = 5, warmup: int = 1,
               device: Optional[DeviceLike] = None) -> List[float]:
    """Wall time of each of ``repeat`` calls of ``fn()`` in seconds, after ``warmup`` untimed calls.

    With a CUDA ``device`` the queue is synchronised around every call, so the GPU work is counted (CUDA
    calls return before the kernels finish). Take the median of the list for a figure to quote.
    """
    dev = None if device is None else (device if isinstance(device, torch.device) else torch.device(device))
    for _ in range(warmup):
        fn()
    if dev is not None:
        synchronize(dev)
    times = []
    for _ in range(max(1, repeat)):
        start = time.perf_counter()
        fn()
        if dev is not None:
            synchronize(dev)
        times.append(time.perf_counter() - start)
    return times


def describe_device(device: DeviceLike) -> str:
    """One line naming the device: card name, memory, compute capability and the ``auto`` mixed precision.

    Examples: ``"cuda:0 · Tesla T4 · 14.7 GiB · compute capability 7.5 · autocast float16"``,
    ``"cpu · 2 threads · torch 2.14.1 · float32"``.
    """
    dev = pick_device(device)
    if dev.type == "cuda":
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        dtype = autocast_dtype(torch.device("cuda", index))
        return (f"cuda:{index} · {props.name} · {props.total_memory / 2 ** 30:.1f} GiB · "
                f"compute capability {props.major}.{props.minor} · autocast {str(dtype).replace('torch.', '')} · "
                f"torch {torch.__version__}")
    if dev.type == "cpu":
        return f"cpu · {torch.get_num_threads()} threads · torch {torch.__version__} · float32"
    return f"{dev} · torch {torch.__version__}"
