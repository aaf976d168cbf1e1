"""samkit's SAM, one module per part of the paper's figure 4."""
from .configs import CONFIGS, MODEL_NAMES, SamConfig, get_config
from .conv_encoder import ConvEncoder
from .image_encoder import ImageEncoderViT
from .mask_decoder import MaskDecoder
from .prompt_encoder import PromptEncoder
from .sam import Sam, build_sam
from .tiny_vit import TinyViT
from .transformer import TwoWayTransformer

__all__ = ["CONFIGS", "ConvEncoder", "MODEL_NAMES", "SamConfig", "get_config", "ImageEncoderViT", "MaskDecoder",
           "PromptEncoder", "Sam", "TinyViT", "build_sam", "TwoWayTransformer"]
