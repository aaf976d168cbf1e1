"""The published numbers the course quotes, each with where it comes from: one place for notebooks,
slides and the model card.

Every value below was taken from the text or the tables of Kirillov et al., "Segment Anything", ICCV 2023
(arXiv 2304.02643, v1); the ``source`` of each :class:`Fact` names the section, table or figure, and ``n``
the sample the number was measured on. Values printed inside a figure (the bar labels of Fig. 9a) say so.
The paper gives the curves of Fig. 9c (mIoU against 1-9 clicks for SAM, RITM, SimpleClick, FocalClick) and
the histograms of Fig. 6 only as drawings, without printed values: they are not reproduced here.

The course's own settings and timings (``COURSE_*``) come from the course presentation, not the paper, and
say so in their ``source``.

    from samkit import paper
    paper.MASK_QUALITY.value["iou_above_0.90"]     # 0.94
    paper.MASK_QUALITY.cite()                        # 'Kirillov et al. 2023, §5; 500 images (~50k masks)'
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

__all__ = ["PAPER", "PAPER_SHORT", "ARXIV", "Fact", "COURSE", "SA1B", "MASK_QUALITY", "MASKS_PER_IMAGE_REGION",
           "DATA_ENGINE", "AMG", "GEOGRAPHY", "FAIRNESS_PEOPLE", "FAIRNESS_CLOTHING", "POINT_VS_RITM",
           "POINT_EVAL", "EDGES", "PROPOSALS", "INSTANCES", "TEXT_TO_MASK", "TRAIN_VIT_H", "TRAIN_VIT_B",
           "LOSS", "COMPUTE", "EFFICIENCY", "LIMITATIONS", "FOUNDATION_MODEL", "ZERO_SHOT", "ABLATIONS",
           "COURSE_DECODER_RUN", "COURSE_FINETUNE_RUN", "facts", "edge_rows", "point_wins"]

PAPER = "Kirillov et al., Segment Anything, ICCV 2023 (arXiv 2304.02643)"
PAPER_SHORT = "Kirillov et al. 2023"
ARXIV = "https://arxiv.org/abs/2304.02643"
COURSE = "the course presentation"


@dataclass(frozen=True)
class Fact:
    """A published number (or table) and where it comes from.

    value: the number, or a dict/list of them; percentages as fractions (0.94), mIoU as printed (54.4).
    source: section, table or figure of the paper (``"§5"``, ``"Table 3"``, ``"Fig. 9a, bar labels"``), or
        ``COURSE`` for the course presentation.
    n: the sample the number was measured on, in words (``"500 images (~50k masks)"``).
    note: how to read it (units, protocol, caveats).
    """

    value: Any
    source: str
    n: Optional[str] = None
    note: str = ""
    origin: str = field(default=PAPER_SHORT)

    def cite(self) -> str:
        """``'Kirillov et al. 2023, Table 3; 200 BSDS500 test images'``."""
        text = f"{self.origin}, {self.source}" if self.origin else self.source
        return text + (f"; {self.n}" if self.n else "")


# ------------------------------------------------------------------------------------------------- SA-1B (§1, §5)
SA1B = Fact(
    {"images": 11_000_000, "masks": 1_100_000_000, "masks_per_image": 100, "automatic_share": 0.991,
     "mean_original_resolution": (3300, 4950), "released_short_side": 1500,
     "images_vs_open_images": 11, "masks_vs_open_images": 400, "masks_per_image_vs_open_images": 36,
     "ade20k_fewer_masks_per_image": 3.5, "coco_resolution": (480, 640), "held_out_images": 2000},
    "§1, §5 (Images, Masks, Mask properties), Fig. 2 caption, App. F.1",
    n="the whole data set",
    note="masks_per_image is the paper's '~100 masks per image on average'; resolutions are H x W in pixels "
         "(COCO's '~480 x 640'); the released images are downsampled to a short side of 1500 px; "
         "faces and licence plates are blurred. SA-1B contains only the fully automatic masks.")

MASK_QUALITY = Fact(
    {"iou_above_0.90": 0.94, "iou_above_0.75": 0.97, "inter_annotator_iou": (0.85, 0.91)},
    "§5, Mask quality",
    n="500 randomly sampled images (~50k masks), each automatic mask corrected by professional annotators",
    note="share of (automatic, corrected) pairs whose IoU is above the threshold; inter-annotator consistency "
         "85-91% IoU is the prior work the paper compares with")

# ------------------------------------------------------------------------------------------------- data engine (§4)
DATA_ENGINE = Fact(
    [
        {"stage": "assisted-manual", "images": 120_000, "masks": 4_300_000, "retrained": 6,
         "seconds_per_mask": (34, 14), "masks_per_image": (20, 44),
         "how": "annotators click foreground/background points in a SAM-powered tool, refine with brush and "
                "eraser; the model is retrained on the new masks"},
        {"stage": "semi-automatic", "images": 180_000, "masks": 5_900_000, "retrained": 5,
         "seconds_per_mask": (34, 34), "masks_per_image": (44, 72),
         "how": "confident masks are pre-filled automatically (a box detector trained on stage-1 masks); "
                "annotators add the objects that were missed"},
        {"stage": "fully automatic", "images": 11_000_000, "masks": 1_100_000_000, "retrained": 0,
         "seconds_per_mask": None, "masks_per_image": (100, 100),
         "how": "a 32 x 32 grid of points, three masks per point, kept when confident and stable, NMS"},
    ],
    "§4",
    n="all SA-1B images",
    note="seconds_per_mask and masks_per_image are (start, end) of the stage as the paper states them; the "
         "semi-automatic time (34 s) excludes the pre-filled masks and its 72 masks per image include them; "
         "stage 2 brings the total of human-made masks to 10.2M. 14 s is 6.5x faster than COCO's mask "
         "annotation and 2x slower than boxes drawn with extreme points.")

AMG = Fact(
    {"points_per_side": 32, "crops": 20, "crop_grids": (16, 8), "pred_iou_thresh": 0.88,
     "stability_thresh": 0.95, "stability_offset": 1.0, "nms": 0.7, "max_area_fraction": 0.95,
     "min_region_area": 100, "spurious_components_share": 0.04, "spurious_holes_share": 0.04,
     "amg_model_iterations": 177_656, "amg_model_decoder_layers": 3},
    "§4 (Fully automatic stage), App. B",
    n="the SA-1B generation run",
    note="predicted IoU threshold 88.0 and stability 95.0 as printed (IoU in percent); stability is the IoU of "
         "the masks at logit thresholds -1 and +1; 20 crops from 2x2 and 4x4 windows with 16x16 and 8x8 grids; "
         "about 4% of masks had small spurious components and 4% small holes, removed below 100 px")

# ------------------------------------------------------------------------------------------------- RAI (§6, App. C)
GEOGRAPHY = Fact(
    [
        {"region": "Africa", "countries": 54, "images": 300_000, "masks": 28_000_000,
         "share_sa1b": 0.028, "share_coco": 0.030, "share_open_images": 0.017},
        {"region": "Asia & Oceania", "countries": 70, "images": 3_900_000, "masks": 423_000_000,
         "share_sa1b": 0.362, "share_coco": 0.114, "share_open_images": 0.143},
        {"region": "Europe", "countries": 47, "images": 5_400_000, "masks": 540_000_000,
         "share_sa1b": 0.498, "share_coco": 0.342, "share_open_images": 0.362},
        {"region": "Latin America & Carib.", "countries": 42, "images": 380_000, "masks": 36_000_000,
         "share_sa1b": 0.035, "share_coco": 0.031, "share_open_images": 0.050},
        {"region": "North America", "countries": 4, "images": 830_000, "masks": 80_000_000,
         "share_sa1b": 0.077, "share_coco": 0.483, "share_open_images": 0.428},
        {"region": "high income countries", "countries": 81, "images": 5_800_000, "masks": 598_000_000,
         "share_sa1b": 0.540, "share_coco": 0.891, "share_open_images": 0.875},
        {"region": "middle income countries", "countries": 108, "images": 4_900_000, "masks": 499_000_000,
         "share_sa1b": 0.450, "share_coco": 0.105, "share_open_images": 0.120},
        {"region": "low income countries", "countries": 28, "images": 100_000, "masks": 9_400_000,
         "share_sa1b": 0.009, "share_coco": 0.004, "share_open_images": 0.005},
    ],
    "Table 1",
    n="SA-1B images located from their captions; COCO: 19,562 training images (24%) and Open Images: 493,517 "
      "(18%) located through the Flickr API (App. C)",
    note="the first five rows are regions, the last three income groups (World Bank levels, upper- and "
         "lower-middle merged); shares are of each data set's located images. The paper adds that the "
         "average masks per image is 94-108 across regions and income groups.")

MASKS_PER_IMAGE_REGION = Fact((94, 108), "§6, Geographic and income representation",
                              n="SA-1B, by region and income group",
                              note="range of the average number of masks per image ('not shown' in Table 1)")

FAIRNESS_PEOPLE = Fact(
    [
        {"group": "perceived gender presentation", "value": "feminine", "miou_1": (54.4, 1.7), "miou_3": (90.4, 0.6)},
        {"group": "perceived gender presentation", "value": "masculine", "miou_1": (55.7, 1.7), "miou_3": (90.1, 0.6)},
        {"group": "perceived age group", "value": "older", "miou_1": (62.9, 6.7), "miou_3": (92.6, 1.3)},
        {"group": "perceived age group", "value": "middle", "miou_1": (54.5, 1.3), "miou_3": (90.2, 0.5)},
        {"group": "perceived age group", "value": "young", "miou_1": (54.2, 2.2), "miou_3": (91.2, 0.7)},
        {"group": "perceived skin tone", "value": "1", "miou_1": (52.9, 2.2), "miou_3": (91.0, 0.9)},
        {"group": "perceived skin tone", "value": "2", "miou_1": (51.5, 1.4), "miou_3": (91.1, 0.5)},
        {"group": "perceived skin tone", "value": "3", "miou_1": (52.2, 1.9), "miou_3": (91.4, 0.7)},
        {"group": "perceived skin tone", "value": "4", "miou_1": (51.5, 2.7), "miou_3": (91.7, 1.0)},
        {"group": "perceived skin tone", "value": "5", "miou_1": (52.4, 4.2), "miou_3": (92.5, 1.4)},
        {"group": "perceived skin tone", "value": "6", "miou_1": (56.7, 6.3), "miou_3": (91.2, 2.4)},
    ],
    "Table 2",
    n="gender and age: 3.9k person masks of Open Images matched to MIAP boxes (App. C); skin tone: a "
      "proprietary data set annotated with the Fitzpatrick type (size not given)",
    note="mIoU (percent) of SAM with 1 and 3 points, first point random (simulated interactive segmentation), "
         "as (mean, half-width of the 95% confidence interval). Within each grouping all intervals overlap "
         "except older vs middle.")

FAIRNESS_CLOTHING = Fact(
    [
        {"group": "perceived gender presentation", "value": "feminine", "miou_1": (76.3, 1.1), "miou_3": (90.7, 0.5)},
        {"group": "perceived gender presentation", "value": "masculine", "miou_1": (81.0, 1.2), "miou_3": (92.3, 0.4)},
        {"group": "perceived age group", "value": "older", "miou_1": (81.9, 3.8), "miou_3": (92.8, 1.6)},
        {"group": "perceived age group", "value": "middle", "miou_1": (78.2, 0.8), "miou_3": (91.3, 0.3)},
        {"group": "perceived age group", "value": "young", "miou_1": (77.3, 2.7), "miou_3": (91.5, 0.9)},
    ],
    "Table 6 (App. C)",
    n="6.5k clothing masks of Open Images inside MIAP person boxes",
    note="the one disjoint pair: clothing on people perceived as masculine is segmented better with one point; "
         "the gap closes at 3 points")

# ------------------------------------------------------------------------------------------------- §7.1 points
#: SAM minus RITM, mIoU at one centre point, per data set, as printed on the bars of Fig. 9a.
_FIG9A = [("GTEA", -21.4), ("TrashCan", -15.0), ("DRAM", -6.5), ("PIDRay", -5.8), ("Cityscapes", -2.0),
          ("WoodScape", -0.6), ("IBD", -0.3), ("EgoHOS", 0.8), ("Plittersdorf", 1.5), ("VISOR", 1.8),
          ("NDISPark", 2.7), ("Hypersim", 6.1), ("OVIS", 7.0), ("ADE20K", 7.8), ("iShape", 8.8),
          ("ZeroWaste-f", 9.1), ("STREETS", 17.3), ("LVIS", 18.5), ("NDD20", 21.1), ("TimberSeg", 28.9),
          ("DOORS", 41.1), ("BBBC038v1", 44.7), ("PPDLS", 46.9)]

POINT_VS_RITM = Fact(
    {"delta_by_dataset": dict(_FIG9A), "datasets": 23, "sam_higher": 16, "oracle_higher": 23,
     "max_gain": 47, "human_rating_range": (7, 9)},
    "§7.1 (Results) and Fig. 9a, bar labels",
    n="23 data sets, ~10k masks sampled from each larger one (Table 7); NDISPark: 111 images, 2,577 masks",
    note="delta = SAM's mIoU minus RITM's at one centre point (SAM's most confident of its 3 masks; RITM "
         "HRNet32 IT-M trained on COCO+LVIS). 'sam_higher' is the paper's '16 of the 23'; with the oracle "
         "choice of SAM's 3 masks SAM is above RITM on all 23. Human raters put SAM's single-point masks at "
         "7-9 out of 10 on average.")

POINT_EVAL = Fact(
    {"clicks": (1, 2, 3, 5, 9), "first_click": "the point farthest from the object boundary",
     "next_click": "the point farthest from the boundary of the error region",
     "baselines": ("RITM", "SimpleClick", "FocalClick")},
    "§7.1 and App. D.1 (Point sampling, Evaluation)",
    n="23 data sets",
    note="the per-dataset mIoU averages over objects, the headline averages the 23 per-dataset values. "
         "The paper's curves over 1-9 clicks (Fig. 9c, d) are printed without values: SAM is well above the "
         "baselines at 1 point and the gap closes with more points.")

# ------------------------------------------------------------------------------------------------- §7.2-7.5
EDGES = Fact(
    [
        {"method": "HED", "year": 2015, "ODS": 0.788, "OIS": 0.808, "AP": 0.840, "R50": 0.923, "zero_shot": False},
        {"method": "EDETR", "year": 2022, "ODS": 0.840, "OIS": 0.858, "AP": 0.896, "R50": 0.930, "zero_shot": False},
        {"method": "Sobel filter", "year": 1968, "ODS": 0.539, "OIS": None, "AP": None, "R50": None, "zero_shot": True},
        {"method": "Canny", "year": 1986, "ODS": 0.600, "OIS": 0.640, "AP": 0.580, "R50": None, "zero_shot": True},
        {"method": "Felz-Hutt", "year": 2004, "ODS": 0.610, "OIS": 0.640, "AP": 0.560, "R50": None, "zero_shot": True},
        {"method": "SAM", "year": 2023, "ODS": 0.768, "OIS": 0.786, "AP": 0.794, "R50": 0.928, "zero_shot": True},
    ],
    "Table 3 (§7.2, App. D.2)",
    n="the 200 test images of BSDS500, five human annotations each",
    note="'-' in the paper is None here. HED and EDETR are trained on BSDS500; the others are zero-shot. SAM: "
         "16x16 point grid (768 masks), no IoU or stability filter, NMS, Sobel on the unthresholded mask "
         "probabilities kept on outer boundaries, max, normalise, edge NMS.")

PROPOSALS = Fact(
    [
        {"method": "ViTDet-H", "all": 63.0, "small": 51.7, "med.": 80.8, "large": 87.0, "freq.": 63.1,
         "com.": 63.3, "rare": 58.3},
        {"method": "SAM - single out.", "all": 54.9, "small": 42.8, "med.": 76.7, "large": 74.4, "freq.": 54.7,
         "com.": 59.8, "rare": 62.0},
        {"method": "SAM", "all": 59.3, "small": 45.5, "med.": 81.6, "large": 86.9, "freq.": 59.1, "com.": 63.9,
         "rare": 65.8},
    ],
    "Table 4 (§7.3)",
    n="LVIS v1 validation set, mask AR@1000",
    note="ViTDet-H is trained on LVIS; SAM is zero-shot (64x64 grid, NMS 0.9, no filters, ~900 masks an image)")

INSTANCES = Fact(
    [
        {"method": "ViTDet-H", "COCO AP": 51.0, "COCO APS": 32.0, "COCO APM": 54.3, "COCO APL": 68.9,
         "LVIS AP": 46.6, "LVIS APS": 35.0, "LVIS APM": 58.0, "LVIS APL": 66.3},
        {"method": "SAM", "COCO AP": 46.5, "COCO APS": 30.8, "COCO APM": 51.0, "COCO APL": 61.7,
         "LVIS AP": 44.7, "LVIS APS": 32.5, "LVIS APM": 57.6, "LVIS APL": 65.5},
    ],
    "Table 5 (§7.4)",
    n="COCO and LVIS v1 validation splits, mask AP",
    note="SAM is prompted with ViTDet-H's boxes (one refinement iteration); human raters nevertheless prefer "
         "SAM's masks (Fig. 11)")

TEXT_TO_MASK = Fact(
    {"clip_model": "ViT-L/14@336px", "min_mask_area": 100 ** 2, "iterations": 120_000, "batch": 128,
     "training_masks": "stages 1-2 of the data engine", "box_expansion": (1.0, 2.0), "crop_side": 336,
     "zero_outside_mask_probability": 0.5, "results": "qualitative only (Fig. 12)"},
    "§7.5 and App. D.5",
    n="masks of the first two data-engine stages larger than 100 x 100 px",
    note="trained with CLIP *image* embeddings of mask crops as the first prompt, used at inference with CLIP "
         "*text* embeddings (the two are aligned by CLIP); no text annotations; an extra point often fixes a "
         "wrong pick. The released models have no text input.")

# ------------------------------------------------------------------------------------------------- App. A, F
TRAIN_VIT_H = Fact(
    {"optimizer": "AdamW", "betas": (0.9, 0.999), "warmup": 250, "lr": 8e-4, "iterations": 90_000,
     "lr_steps": (60_000, 86_666), "lr_step_factor": 0.1, "batch_images": 256, "weight_decay": 0.1,
     "drop_path": 0.4, "layer_decay": 0.8, "gpus": 256, "masks_per_gpu": 64, "epochs": 2,
     "max_mask_fraction": 0.9, "augmentation": None, "init": "MAE pre-trained ViT-H"},
    "App. A (Training recipe)",
    n="SA-1B, 11M images",
    note="'~2 SA-1B epochs'; masks covering more than 90% of the image are discarded")

TRAIN_VIT_B = Fact(
    {"iterations": 180_000, "batch_images": 128, "gpus": 128, "lr": 8e-4, "layer_decay": 0.6,
     "weight_decay": 0.1, "drop_path": 0.6, "warmup": 250, "optimizer": "AdamW"},
    "App. A (Training recipe, ViT-B/L variations)",
    n="SA-1B",
    note="only what differs from the ViT-H recipe is stated; warm-up, optimizer and the step schedule are "
         "the default recipe's")

LOSS = Fact({"focal": 20, "dice": 1, "iou_mse": 1.0, "rounds": 11, "sampled_points": 8, "no_point_rounds": 2,
             "box_noise_std": 0.1, "box_noise_max_px": 20},
            "§3 and App. A (Losses, Training algorithm)", n=None,
            note="focal:dice = 20:1; IoU head MSE added with weight 1.0; only the lowest-loss of 3 masks is "
                 "back-propagated; with more than one prompt a 4th output token gives the single mask")

COMPUTE = Fact({"gpus": 256, "gpu": "A100", "hours": 68, "kwh": 6963, "co2_tonnes": 2.8},
               "Table 9 (model card, App. F)", n="the released SAM (ViT-H)")

EFFICIENCY = Fact({"prompt_decoder_ms_browser_cpu": 50, "decoder_share_of_encoder_compute": 0.01},
                  "§1, §3 (Efficiency), App. A (Training algorithm)", n=None,
                  note="prompt encoder + mask decoder '~50 ms in a web browser, on CPU' given a precomputed "
                       "image embedding; the decoder needs 'less than 1% of the image encoder's compute'")

ABLATIONS = Fact({"subset_images": 1_000_000, "subset_share": 0.10, "automatic_only_gap_miou": 0.5,
                  "manual_oversampling": 10},
                 "§7.6, Fig. 13", n="the 23-dataset suite, one centre point",
                 note="1M images (~10% of SA-1B) give results comparable to the full set; training on the "
                      "automatic masks only is ~0.5 mIoU below using all three stages")

LIMITATIONS = Fact(
    ["can miss fine structures, hallucinates small disconnected components at times, and its boundaries are "
     "not as crisp as those of 'zoom-in' methods",
     "dedicated interactive segmentation methods are expected to outperform SAM when many points are given",
     "prompts are processed in real time, but SAM's overall performance is not real-time with a heavy image "
     "encoder",
     "the text-to-mask task is exploratory and not entirely robust",
     "it is unclear how to design simple prompts for semantic and panoptic segmentation",
     "domain-specific tools are expected to outperform SAM in their domains"],
    "§8 (Limitations)", n=None)

FOUNDATION_MODEL = Fact(
    {"definition": "trained on broad data at scale and are adaptable to a wide range of downstream tasks",
     "components": ("task: promptable segmentation", "model: SAM", "data: the data engine and SA-1B"),
     "initialisation": "self-supervised (MAE), but most capabilities come from supervised training"},
    "§1, §8 (Foundation models)", n=None,
    note="the paper quotes the definition of Bommasani et al. 2021")

ZERO_SHOT = Fact(
    {"meaning": "evaluating on data sets and tasks not seen during training, by prompting (as in CLIP)",
     "tasks": ("single point valid mask (§7.1)", "edge detection (§7.2)", "object proposals (§7.3)",
               "instance segmentation (§7.4)", "text-to-mask (§7.5)")},
    "§7 (introduction)", n=None)

# ------------------------------------------------------------------------------------------------- the course
COURSE_DECODER_RUN = Fact(
    {"images": 10, "masks_per_image": 10, "epochs": 3, "batch": 1, "lr": 8e-4, "lr_decay_per_epoch": 0.6,
     "weight_decay": 0.1, "layer_decay": None, "drop_path": None, "encoder": "ViT-B (frozen)",
     "seconds": 20, "gpu": "T4"},
    "course presentation (experiment 1)", n="10 SA-1B images", origin="",
    note="the mask decoder re-initialised and trained on cached ViT-B embeddings: 20 s for 3 epochs on a T4")

COURSE_FINETUNE_RUN = Fact(
    {"epochs": 2, "lr": 8e-4, "weight_decay": 1e-4, "schedule": "constant", "seconds_per_epoch": 120,
     "gpu": "T4", "images": 111},
    "course presentation (experiment 2)", n="NDISPark's 111 daytime training images", origin="",
    note="decoder fine-tuning: about 2 min an epoch on a T4")


def facts() -> Dict[str, Fact]:
    """Every :class:`Fact` of this module by name (for listings and tests)."""
    return {name: value for name, value in globals().items() if isinstance(value, Fact)}


def edge_rows() -> List[Dict[str, Any]]:
    """Table 3 as rows ``{method, ODS, OIS, AP, R50, trained on BSDS}`` with ``None`` for the paper's '-'."""
    return [{"method": r["method"], "ODS": r["ODS"], "OIS": r["OIS"], "AP": r["AP"], "R50": r["R50"],
             "trained on BSDS": not r["zero_shot"]} for r in EDGES.value]


def point_wins() -> Tuple[int, int]:
    """``(data sets where SAM's 1-point mIoU beats RITM's, data sets)`` counted from Fig. 9a's bar labels."""
    deltas = POINT_VS_RITM.value["delta_by_dataset"]
    return sum(1 for d in deltas.values() if d > 0), len(deltas)
