"""samkit: a readable, weight-compatible Segment Anything for teaching and reproduction.

    import samkit
    model = samkit.load_model("tiny")          # the embedded model shipped with the package (offline)
    model = samkit.load_model("vit_b")         # official weights: downloaded once, cached, verified
    predictor = samkit.Predictor(model)
    predictor.set_image(image)                 # H x W x 3 uint8 RGB
    masks, scores, logits = predictor.predict(point_coords=[[500, 375]], point_labels=[1])
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

from .cache import EmbeddingCache
from .model import MODEL_NAMES, Sam, get_config
from .model.configs import UNSHIPPED
from .model.sam import build_sam
from .predictor import Predictor

__version__ = "0.1.0"

ASSETS = Path(__file__).parent / "assets"
EMBEDDED_TINY = ASSETS / "sam_tiny.pt"


def build_model(name: str, drop_path_rate: float = 0.0) -> Sam:
    """A randomly initialised SAM: ``vit_b``, ``vit_l``, ``vit_h``, ``vit_t``, ``tiny``, ``tiny_v2``, ``tiny_wide``,
    ``tiny_v1`` or ``tiny_hq``."""
    return build_sam(get_config(name), drop_path_rate=drop_path_rate)


def load_model(name: str, checkpoint: Optional[Union[str, Path]] = None, device: Optional[str] = None,
               download: bool = True) -> Sam:
    """Build ``name`` and load weights, in eval mode.

    Args:
        checkpoint: a ``.pth``/``.pt`` state dict; by default the official checkpoint of ``name``
            (downloaded once into ``$SAMKIT_HOME``, verified by sha256) or, for ``tiny``, the model
            embedded in the package.
        device: ``"cpu"``, ``"cuda"``, ... (default: CPU).
        download: allow downloading an official checkpoint that is not cached yet.
    """
    from . import checkpoints

    get_config(name)  # an unknown name fails before anything is downloaded
    if checkpoint is None:
        if name == "tiny":
            if not EMBEDDED_TINY.exists():
                raise FileNotFoundError(
                    f"the embedded tiny model is missing ({EMBEDDED_TINY}); train it with "
                    "`make train-tiny` or pass checkpoint=...")
            checkpoint = EMBEDDED_TINY
        elif name in UNSHIPPED:
            run = UNSHIPPED[name]
            raise FileNotFoundError(
                f"{name} has no shipped weights; train it (`samkit train configs/{run}.yaml`; its config names the "
                f"weights it starts from) and pass checkpoint=runs/{run}/model.pth")
        else:  # downloaded or cached, its SHA-256 checked before the first use
            checkpoint = checkpoints.checkpoint_path(name, download=download)
    model = build_model(name)
    checkpoints.load_into(model, checkpoint)
    model.eval()
    if device is not None:
        model.to(device)
    return model


def __getattr__(attr: str):  # lazy imports keep `import samkit` fast
    if attr == "AutomaticMaskGenerator":
        from .automatic import AutomaticMaskGenerator
        return AutomaticMaskGenerator
    if attr in ("losses", "data", "evaluate", "viz", "train", "checkpoints", "widgets", "automatic"):
        import importlib
        return importlib.import_module(f".{attr}", __name__)
    raise AttributeError(f"module 'samkit' has no attribute {attr!r}")


__all__ = ["build_model", "load_model", "Predictor", "AutomaticMaskGenerator", "EmbeddingCache", "MODEL_NAMES",
           "Sam", "get_config"]
