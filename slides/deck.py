"""The course deck: what each slide says and which run outputs it shows, in the order of the talk.

``python -m tools.slides`` reads ``SLIDES`` and fills in the figures, tables and sentences of a course run. Each
slide is a dict:

- ``title``: the slide's heading.
- ``text``: Markdown written for the course, with no result in it: measured results come from the run
  (``claims``, ``tables``, ``figures``) and the paper's numbers from :mod:`samkit.paper` (``quoted``).
- ``quoted``: ``[(where in the paper, text), ...]``: facts from the paper, shown as a block that says "Quoted from
  the paper" and where; every number in them is formatted from :mod:`samkit.paper`, the module the notebooks
  and the model card cite.
- ``claims``: ``["NN/function", ...]``: the sentences notebook NN wrote with ``samkit.narrate.<function>`` from
  the numbers of the run (``<run>/<NN_notebook>/claims.json``).
- ``figures``: ``["NN/name", ...]``: ``<run>/<NN_notebook>/<name>.png``, shown right of the text.
- ``tables``: ``["NN/name", ...]``: ``<run>/<NN_notebook>/<name>.md`` (written by ``S.table``).
- ``fallback_table``: Markdown shown when the run has none of the slide's tables (quoted numbers only).
- ``extra``: ``"bench"`` (``runs/bench/speed.json``) or ``"card"`` (the embedded model's card figures).
- ``paper_tables``: the slide's tables hold only the paper's numbers (notebooks write them from
  :mod:`samkit.paper`): their source line says so instead of naming a run's model and data.
- ``optional``: drop the slide when its ``extra`` data is missing, or (without ``extra``) when a sentence or
  figure it names is not in the run.

Every figure and table carries a line naming the notebook, model, weights and data that produced it.
"""
from samkit import paper as P

PAPER = P.PAPER

_sa1b = P.SA1B.value
_q = P.MASK_QUALITY.value
_stages = {r["stage"]: r for r in P.DATA_ENGINE.value}
_amg = P.AMG.value
_wins, _total = P.point_wins()
_edges = {r["method"]: r for r in P.EDGES.value}
_h = P.TRAIN_VIT_H.value
_b = P.TRAIN_VIT_B.value
_loss = P.LOSS.value
_course = P.COURSE_DECODER_RUN.value
_fine = P.COURSE_FINETUNE_RUN.value
_geo = {r["region"]: r for r in P.GEOGRAPHY.value}
_t2m = P.TEXT_TO_MASK.value


def _m(x: float) -> str:
    return f"{x / 1e6:.1f}M" if x < 1e9 else f"{x / 1e9:.1f}B"


SLIDES = [
    {
        "title": "Segment Anything",
        "text": "A hands-on course on Meta's Segment Anything Model (SAM) with **samkit**: a re-implementation "
                "of the model, its predictor and its training loop, and six notebooks that run on a laptop.",
        "title_slide": True,
    },
    # ------------------------------------------------------------------ introduction
    {
        "title": "Foundation models, for segmentation",
        "text": "- A *foundation model* is trained on broad data at scale and adapted to many tasks.\n"
                "- Language models reach new tasks **zero-shot** through *prompts*; SAM asks the same of "
                "segmentation: evaluated on data and tasks it never saw, by prompting it.\n"
                "- Three pieces: a **task** (promptable segmentation), a **model** that answers any prompt in "
                "real time, and the **data** to train it (the data engine, SA-1B).",
        "quoted": [("§8", f"Foundation models are models that are '{P.FOUNDATION_MODEL.value['definition']}' "
                          "(quoting Bommasani et al.)."),
                   ("§1", f"SA-1B: {_m(_sa1b['masks'])} masks on {_sa1b['images'] / 1e6:.0f}M licensed, "
                          "privacy-respecting images.")],
    },
    {
        "title": "Zero-shot, in the paper's experiments",
        "tables": ["02/zero_shot_tasks"], "paper_tables": True,
        "claims": ["02/zero_shot_overview"],
    },
    {
        "title": "Prompts: sparse and dense",
        "text": "- **Sparse** prompts: points (positive or negative clicks), boxes, and free-form text.\n"
                "- **Dense** prompts: a mask (for example the previous prediction, fed back as low-res logits).\n"
                "- Right: one click (star) and one box per object on photos held out from training.",
        "figures": ["05/real_photos"],
    },
    {
        "title": "Text prompts: an exploratory experiment",
        "text": "No text annotations were used: CLIP aligns image and text embeddings, so SAM was trained with the "
                "CLIP *image* embedding of each mask's crop as its first prompt, and given a CLIP *text* embedding "
                "at inference. The released models (and samkit) have no text input.",
        "quoted": [("§7.5, App. D.5", f"CLIP {_t2m['clip_model']}; masks larger than 100 x 100 px from the first "
                                      f"two data-engine stages; {_t2m['iterations']:,} iterations, batch "
                                      f"{_t2m['batch']}; results shown as examples only (Fig. 12).")],
        "tables": ["02/text_prompts"], "paper_tables": True,
    },
    # ------------------------------------------------------------------ data
    {
        "title": "SA-1B: the data set",
        "text": "- Licensed, privacy-protecting photos (faces and licence plates blurred), high resolution.\n"
                "- The released masks were all made by the data engine's last, automatic stage.\n"
                "- Its licence forbids redistribution: samkit never ships SA-1B; the notebooks use generated "
                "look-alikes unless you point them at a downloaded copy.",
        "quoted": [("§5", f"{_sa1b['images'] / 1e6:.0f}M images and {_m(_sa1b['masks'])} masks, "
                          f"~{_sa1b['masks_per_image']} masks per image."),
                   ("§5", f"{100 * _sa1b['automatic_share']:.1f}% of the masks were generated fully automatically."),
                   ("§5", f"{_sa1b['masks_vs_open_images']}x more masks and {_sa1b['images_vs_open_images']}x more "
                          "images than Open Images, the largest data set before it.")],
    },
    {
        "title": "SA-1B beside the course's generated scenes",
        "tables": ["01/sa1b_numbers"],
        "claims": ["01/sa1b_scale"],
    },
    {
        "title": "The data engine",
        "text": "The model and the data grew together, in three stages:\n\n"
                "1. **assisted-manual**: annotators click, SAM proposes, the model is retrained;\n"
                "2. **semi-automatic**: confident masks are pre-filled, annotators add the rest;\n"
                "3. **fully automatic**: a point grid, confident and stable masks kept, NMS.",
        "quoted": [("§4", f"Assisted-manual: {_m(_stages['assisted-manual']['masks'])} masks from "
                          f"{_stages['assisted-manual']['images'] / 1e3:.0f}k images; "
                          "{} → {} s per mask.".format(*_stages["assisted-manual"]["seconds_per_mask"])),
                   ("§4", f"Semi-automatic: {_m(_stages['semi-automatic']['masks'])} more masks on "
                          f"{_stages['semi-automatic']['images'] / 1e3:.0f}k images; "
                          "{} → {} masks per image.".format(*_stages["semi-automatic"]["masks_per_image"])),
                   ("§4, App. B", f"Fully automatic: a {_amg['points_per_side']}x{_amg['points_per_side']} grid, "
                                  f"predicted IoU > {_amg['pred_iou_thresh']}, stability ≥ {_amg['stability_thresh']}, "
                                  f"NMS {_amg['nms']}: {_m(_stages['fully automatic']['masks'])} masks.")],
    },
    {
        "title": "The data engine, simulated",
        "text": "The three stages on generated scenes, with a simulated annotator (clicks stand in for time).",
        "claims": ["05/data_engine"],
        "figures": ["05/data_engine"],
    },
    {
        "title": "How good are the automatic masks?",
        "text": "Professionals corrected a sample of automatic masks; the IoU of each pair was measured. "
                "Notebook 01 simulates such corrections.",
        "quoted": [("§5", f"{100 * _q['iou_above_0.90']:.0f}% of the automatic/corrected pairs have an IoU above 90% "
                          f"({100 * _q['iou_above_0.75']:.0f}% above 75%); 500 images, ~50k masks.")],
        "claims": ["01/pair_agreement"],
        "figures": ["01/pair_iou_histogram"],
    },
    {
        "title": "Responsible AI: who is in the data, who is segmented well",
        "text": "Table 1: where SA-1B's images were taken, beside COCO and Open Images. Table 2: SAM's mIoU on "
                "people by perceived gender presentation, age and skin tone, with 1 and 3 points.",
        "quoted": [("Table 1", f"Europe {100 * _geo['Europe']['share_sa1b']:.1f}% and Asia & Oceania "
                               f"{100 * _geo['Asia & Oceania']['share_sa1b']:.1f}% of SA-1B's images; Africa "
                               f"{100 * _geo['Africa']['share_sa1b']:.1f}%.")],
        "figures": ["01/responsible_ai"],
    },
    {
        "title": "Responsible AI: the two tables, read out",
        "claims": ["01/geography", "01/fairness"],
    },
    # ------------------------------------------------------------------ model
    {
        "title": "The model: three parts",
        "text": "- **Image encoder**: a ViT (MAE pre-trained), run once per image.\n"
                "- **Prompt encoder**: points and boxes become tokens (positional encodings + learned type "
                "embeddings); masks are downsampled by convolutions and added to the embedding.\n"
                "- **Mask decoder**: a two-way transformer between prompt tokens and the image embedding, then "
                "upsampling and per-mask MLPs.",
        "quoted": [("§3", f"Given a precomputed image embedding, the prompt encoder and mask decoder run in a web "
                          f"browser, on CPU, in ~{P.EFFICIENCY.value['prompt_decoder_ms_browser_cpu']} ms.")],
        "tables": ["02/parameters"],
    },
    {
        "title": "Image encoder",
        "claims": ["02/encoder_shapes"],
        "tables": ["02/encoder_shapes"],
    },
    {
        "title": "Prompt encoder",
        "text": "Coordinates are encoded with random Fourier features: a fixed random projection followed by "
                "sin and cos, so that nearby points get similar codes at several scales.",
        "figures": ["02/fourier_features"],
    },
    {
        "title": "Mask decoder",
        "text": "Output tokens and prompt tokens attend to each other and to the image (two-way attention). "
                "Right: where the tokens look in the image embedding.",
        "figures": ["02/decoder_attention"],
    },
    {
        "title": "Ambiguity-aware: three masks per prompt",
        "text": "A click on a shirt could mean the shirt or the person: SAM answers with **three** masks and a "
                "predicted IoU for each.",
        "quoted": [("§3", "With one ambiguous prompt the model outputs 3 masks; in training only the mask with "
                          "the lowest loss is back-propagated.")],
        "claims": ["02/ambiguity"],
        "figures": ["02/three_masks"],
    },
    # ------------------------------------------------------------------ zero-shot evaluation
    {
        "title": "Zero-shot: a single point, a valid mask",
        "text": "The hardest prompt: one point in the middle of an object, then clicks at the largest error.",
        "quoted": [("§7.1, Fig. 9a", f"SAM's one-point mIoU is above RITM's on {_wins} of the {_total} data sets; "
                                     "with an oracle choosing among its 3 masks, on all of them.")],
        "figures": ["05/miou_vs_clicks"],
    },
    {
        "title": "mIoU vs clicks in this run",
        "claims": ["05/clicks"],
        "tables": ["05/miou_vs_clicks"],
    },
    {
        "title": "Boxes",
        "claims": ["05/box_vs_clicks"],
        "tables": ["05/miou_boxes"],
    },
    {
        "title": "The embedded model: masks cut along the photo's edges",
        "text": "Offline, the course runs a small model trained on generated scenes only. GrabCut, seeded by its "
                "mask, fits colour models of the object and its surroundings for one photo (`refine=True`; not "
                "part of SAM).",
        "claims": ["05/refined"],
        "figures": ["05/real_photos_cut"],
        "optional": True,
    },
    {
        "title": "Everything mode",
        "text": "A grid of points, three masks each, kept when confident and stable, duplicates removed: the data "
                "engine's last stage.",
        "claims": ["05/everything"],
        "figures": ["05/everything_mode"],
    },
    {
        "title": "Zero-shot edge detection",
        "text": "Everything mode with a 16x16 grid, Sobel on each mask's probabilities, outer boundaries only, "
                "edge thinning; scored with the BSDS500 benchmark (ODS, OIS, AP, R50). SAM was never trained "
                "for edges. The paper's Table 3 and this run's measurement, apart.",
        "tables": ["05/edge_detection_paper"], "paper_tables": True,
    },
    {
        "title": "Zero-shot edge detection, measured here",
        "tables": ["05/edge_detection"],
        "claims": ["05/edges"],
    },
    {
        "title": "Edge maps",
        "figures": ["05/edge_maps"],
    },
    # ------------------------------------------------------------------ training
    {
        "title": "Training method",
        "text": "- Interactive simulation: a first prompt (point or noisy box), then points sampled from the "
                "error region, the previous mask fed back as a dense prompt.\n"
                "- Loss on the best of the three masks; a small head learns to predict each mask's IoU.",
        "quoted": [("App. A", f"Loss: {_loss['focal']} x focal + {_loss['dice']} x dice, plus the MSE between "
                              "predicted and actual IoU."),
                   ("App. A", f"ViT-B: {_b['iterations']:,} iterations of {_b['batch_images']} images, lr {_b['lr']:g}, "
                              f"layer decay {_b['layer_decay']}, drop path {_b['drop_path']}, wd {_b['weight_decay']}."),
                   ("course", f"Experiment 1: {_course['images']} images, {_course['epochs']} epochs, batch "
                              f"{_course['batch']}, lr {_course['lr']:g} x {_course['lr_decay_per_epoch']} per epoch, "
                              f"wd {_course['weight_decay']}, no layer decay, no drop path.")],
    },
    {
        "title": "Training settings: the paper, the course, this run",
        "claims": ["03/training_settings"],
        "tables": ["03/settings"],
    },
    {
        "title": "Focal vs dice, on a worked example",
        "claims": ["03/loss_example"],
        "figures": ["03/loss_example"],
    },
    {
        "title": "Experiment 1: a mask decoder from scratch",
        "text": "Keep the trained encoder, re-initialise the mask decoder, train it with the paper's loss and "
                "interactive rounds on cached embeddings.",
        "quoted": [("course", f"{_course['seconds']} s for {_course['epochs']} epochs on a {_course['gpu']}.")],
        "claims": ["03/course_time"],
        "figures": ["03/loss_curves"],
    },
    {
        "title": "Experiment 1: what the decoder learned",
        "claims": ["03/decoder_training"],
        "tables": ["03/miou_before_after"],
    },
    {
        "title": "Experiment 1: before and after",
        "text": "The same held-out images and clicks: the re-initialised decoder, the one trained here, and the "
                "original decoder (the upper bound).",
        "figures": ["03/predictions_before_after"],
    },
    {
        "title": "Experiment 2: fine-tuning for parking lots",
        "text": "Fine-tune the decoder on daytime parking-lot images (NDISPark) and test on night images it never "
                "saw: does adapting to a domain help, and does it carry over?",
        "quoted": [("Fig. 9a", f"NDISPark: SAM {P.POINT_VS_RITM.value['delta_by_dataset']['NDISPark']:+.1f} mIoU "
                               "over RITM at one point.")],
        "claims": ["04/zero_shot_parking"],
        "tables": ["04/zero_shot"],
    },
    {
        "title": "Experiment 2: fine-tuning",
        "quoted": [("course", f"About {_fine['seconds_per_epoch'] // 60} min an epoch on a {_fine['gpu']}.")],
        "claims": ["04/course_time"],
        "figures": ["04/finetune_curves"],
    },
    {
        "title": "Experiment 2: day vs night",
        "claims": ["04/finetune"],
        "tables": ["04/day_vs_night"],
        "figures": ["04/day_night_predictions"],
    },
    {
        "title": "Where the time goes",
        "text": "The encoder runs once per image; every click only runs the prompt encoder and the decoder.",
        "claims": ["02/timing"],
        "figures": ["02/timings"],
    },
    {
        "title": "Speed: samkit vs the official code",
        "text": "`make bench` times the official package and samkit on the same machine, with the same weights.",
        "extra": "bench",
        "optional": True,
    },
    # ------------------------------------------------------------------ demo
    {
        "title": "Demo: click to segment",
        "text": "Notebook 06 is the live demo: click on an image (shift+click or right click for a negative "
                "point) and the mask updates at once, because the embedding is computed once.",
        "figures": ["06/click_three_masks"],
    },
    {
        "title": "Demo: refining with a second click",
        "text": "A negative click (here on the mask's pixel farthest from the first click) tells the model what is "
                "not the object; the previous mask is fed back as a prompt. Right: the model's new mask, and the same "
                "cut along the photo's edges.",
        "figures": ["06/click_refined"],
    },
    {
        "title": "The course's embedded model",
        "text": "Without a download the notebooks use samkit's tiny teaching model, trained on generated "
                "scenes. Its model card's figures:",
        "extra": "card",
        "optional": True,
    },
    # ------------------------------------------------------------------ conclusion
    {
        "title": "Conclusion",
        "text": "- Promptable segmentation turns one model into many tools: interactive annotation, "
                "everything mode, edges, and components of larger systems.\n"
                "- The data engine is as much the contribution as the model: a model that helps label its own "
                "training data.\n"
                "- The design (heavy encoder once, light decoder per prompt) is what makes interaction fast.\n"
                "- The course reproduced the training recipe at a small scale and measured its parts.",
    },
    {
        "title": "Limitations",
        "quoted": [("§8", text) for text in P.LIMITATIONS.value],
        "claims": ["05/limitations"],
    },
]
