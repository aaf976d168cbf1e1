"""SAM's training recipe (paper, appendix A), for decoder fine-tuning up to training every part.

One training step, per image of the batch:

1. Up to ``masks_per_image`` ground-truth masks are drawn (masks covering more than 90% of the image
   and empty ones are dropped first). Image and masks go through the same ``ResizeLongestSide`` +
   right/bottom zero padding, so the masks live in the model's input frame (``img_size x
   img_size``).
2. **The interactive simulation** (``n_rounds = 11``): round 0 gives each mask one prompt, a point
   drawn uniformly inside the mask or its box jittered by noise (std 10% of the side, at most 20 px
   at 1024, so ``20 * img_size / 1024`` px here), with equal odds (``box_prob``). The 10 later
   rounds add one point each, drawn uniformly from the error region between the previous prediction
   and the ground truth (positive on a false negative, negative on a false positive), except
   ``no_point_rounds = 2`` rounds that add nothing so the model learns to refine its own mask. As in
   the paper, one of those is inserted at a random position among the point rounds and the other is
   always last (``no_point_placement="middle"`` puts the first one in the middle instead). The
   previous round's low-res logits are fed back as ``mask_input`` (``mask_feedback``); the mask fed
   back, and used for the next error point, is the one with the highest predicted IoU when three
   were returned.
3. **Outputs**: round 0 holds a single prompt, so the three multimask outputs are returned and only
   the lowest-loss one is supervised; the later rounds carry several prompts and supervise the
   single-mask token (paper §3, "Resolving ambiguity"). With ``nested_targets`` the three outputs
   of a first click get fixed roles instead: each is supervised with one of the masks that contain
   the click, smallest / middle / largest (subpart / part / whole), as SA-1B's nested masks allow.
   With ``nested_weight`` those roles are only a tie-break: the min over the three stays, and each
   output's loss against its own nested target is added at that weight.
4. **Loss** (:func:`samkit.losses.sam_loss`): ``20 * focal + dice + IoU-MSE``, averaged over prompts
   and then over rounds; every round back-propagates (the fed-back mask is detached by default,
   ``detach_feedback``, so each round's gradient reaches the decoder through that round's own
   forward pass).

Frames. The loss is computed on the decoder's low-res logits (``L x L``, 256 for the official
models, 128 for ``tiny``) against the ground truth average-pooled from the input frame to ``L x L``
and thresholded at 0.5 (``loss_frame="low_res"``, the default: ``(img_size/L)^2 = 16`` times fewer
pixels than upsampling the logits, with the same decision boundary to within one low-res pixel).
``loss_frame="input"`` upsamples the logits bilinearly to ``img_size`` (the first step of
``Sam.postprocess_masks``) instead. Error points are drawn in the loss frame, inside the unpadded
image, and mapped back to the input frame at the centre of their low-res pixel. Validation always
scores in the input frame, unpadded.

Frozen encoder. Unless ``train_parts == "all"``, every image is encoded once (progress bar) into an
:class:`samkit.cache.EmbeddingCache` on disk (float16, under ``cache_dir`` or
``$SAMKIT_HOME/embeddings``) and read back every epoch; with ``"all"`` images are encoded on the fly
with gradients. ``train_parts == "iou_head"`` trains the decoder's IoU prediction head alone: the masks
stay exactly those of the starting weights, only the predicted IoUs move (a calibration phase; the
loss's focal and dice terms are computed but carry no gradient).

Randomness. Every random choice about an image (which masks, point or box, first prompts, error
points) comes from a generator seeded by ``(seed, epoch, position in the epoch)``, and the order of
the images by ``(seed, epoch)``. So a resumed run continues exactly, and a run on ``k`` processes
(DDP) sees the same prompts as one process with the same total batch.

Growing a model. ``grow_from: runs/tiny_v1_phase4/model.pth`` starts ``tiny_hq`` from tiny_v1's weights:
the parameters the two share are copied, the detail path (zero-initialised) is new; ``tiny`` grows from
``tiny_v2`` the same way (its context blocks are new). For ``tiny_v2`` (another encoder design than
``tiny_v1``) it copies the prompt encoder and mask decoder only; the convolutional encoder starts from random
weights and learns under a decoder that already knows how to find the clicked object. Into a wider model of
the same design (``tiny_v2`` -> ``tiny_wide``) every layer keeps its weights in its first channels and the new
channels start with zero outgoing weights (:func:`samkit.checkpoints.widen_state`), so the grown model
predicts what the narrow one did until training moves it.

Run it with :func:`train` (or ``samkit train CONFIG.yaml``; under ``torchrun`` for several
processes).
"""

from samkit.train.config import (
    AMP_MODES,
    SCHEDULES,
    TRAIN_PARTS,
    DataConfig,
    TrainConfig,
    apply_overrides,
    load_config,
)
from samkit.train.data import (
    DATA_SOURCES,
    PreparedImage,
    PreparedImages,
    build_datasets,
    epoch_order,
    prepare_image,
)
from samkit.train.interactive import InteractiveLoss, PromptedImage, prompt_image, round_plan
from samkit.train.loop import (
    CHECKPOINT_FORMAT,
    RESUMABLE_CHANGES,
    MetricsLog,
    RunExistsError,
    TrainingDiverged,
    TrainingInterrupted,
    TrainResult,
    build_training_model,
    fill_cache,
    load_training_checkpoint,
    lr_factor,
    param_groups,
    set_trainable,
    train,
    validate,
)

__all__ = [
    "AMP_MODES",
    "CHECKPOINT_FORMAT",
    "DATA_SOURCES",
    "SCHEDULES",
    "TRAIN_PARTS",
    "DataConfig",
    "TrainConfig",
    "apply_overrides",
    "load_config",
    "PreparedImage",
    "PreparedImages",
    "build_datasets",
    "epoch_order",
    "prepare_image",
    "InteractiveLoss",
    "PromptedImage",
    "prompt_image",
    "round_plan",
    "MetricsLog",
    "RESUMABLE_CHANGES",
    "RunExistsError",
    "TrainResult",
    "TrainingDiverged",
    "TrainingInterrupted",
    "build_training_model",
    "fill_cache",
    "load_training_checkpoint",
    "lr_factor",
    "param_groups",
    "set_trainable",
    "train",
    "validate",
]
