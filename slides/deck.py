"""The course deck: what each slide says and which run outputs it shows, in the order of the talk.

``python -m tools.slides`` reads ``SLIDES`` and fills in the figures and tables of the latest run. Each slide is
a dict:

- ``title``: the slide's heading.
- ``text``: Markdown written for the course (no numbers from the paper here: those go in ``quoted``).
- ``quoted``: ``[(where in the paper, text), ...]``: facts quoted from the paper, shown as a block that says
  "Quoted from the paper" and where.
- ``figures``: ``["NN/name", ...]``: ``<run>/<NN_notebook>/<name>.png``, embedded in the deck.
- ``tables``: ``["NN/name", ...]``: ``<run>/<NN_notebook>/<name>.md`` (written by ``S.table``).
- ``fallback_table``: Markdown shown when the run has none of the slide's tables (quoted numbers only).
- ``extra``: ``"bench"`` (``runs/bench/speed.json``) or ``"card"`` (the embedded model's card figures).
- ``optional``: drop the slide when its ``extra`` data is missing.

Every figure and table carries a line naming the notebook, model, weights and data that produced it.
"""

PAPER = "Kirillov et al., Segment Anything, ICCV 2023"

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
        "text": "- A *foundation model* is trained once on broad data and adapted to many tasks without "
                "retraining.\n"
                "- Language models reach new tasks **zero-shot** through *prompts*; SAM asks the same of "
                "segmentation.\n"
                "- Three pieces: a **task** (promptable segmentation), a **model** that answers any prompt in "
                "real time, and a **data set** large enough to train it.\n"
                "- The task: given an image and *any* prompt, return a valid mask, even when the prompt is "
                "ambiguous.",
        "quoted": [("§1", "SA-1B is a data set of 1.1B masks on 11M images; the model transfers zero-shot to "
                           "new image distributions and tasks through prompt engineering.")],
    },
    {
        "title": "Prompts: sparse and dense",
        "text": "- **Sparse** prompts: points (positive or negative clicks), boxes, and free-form text.\n"
                "- **Dense** prompts: a mask (for example the previous prediction, fed back as low-res logits).\n"
                "- samkit implements points, boxes and masks; text prompts were an exploratory part of the "
                "paper and their weights were never released.\n"
                "- Below: one click (star) and one box per object on photos the model never saw.",
        "figures": ["05/real_photos"],
    },
    # ------------------------------------------------------------------ data
    {
        "title": "SA-1B: the data set",
        "text": "- Licensed, privacy-protecting photos (faces and licence plates blurred), high resolution.\n"
                "- The masks were made by the data engine (next slide), not drawn one by one by hand.\n"
                "- Its licence forbids redistribution: samkit never ships SA-1B; the notebooks use generated "
                "look-alikes unless you point them at a downloaded copy.",
        "quoted": [("§5", "11M images and 1.1B masks."),
                   ("§5", "99.1% of the masks were generated fully automatically."),
                   ("§1", "400x more masks than any existing segmentation data set.")],
    },
    {
        "title": "The data engine",
        "text": "The model and the data grew together, in three stages:\n\n"
                "1. **Assisted-manual**: annotators click, SAM proposes, annotators correct; the model is "
                "retrained as masks come in.\n"
                "2. **Semi-automatic**: SAM fills in the confident masks, annotators add the ones it missed.\n"
                "3. **Fully automatic**: a regular grid of points, ambiguity-aware masks, kept when confident "
                "and stable.",
        "quoted": [("§4", "Assisted-manual stage: 4.3M masks from 120k images."),
                   ("§4", "Semi-automatic stage: 5.9M more masks on 180k images."),
                   ("§4", "Fully automatic stage: a 32x32 point grid per image, yielding the 1.1B masks of SA-1B.")],
    },
    {
        "title": "How good are the automatic masks?",
        "text": "The paper had professionals correct a sample of automatic masks and measured the IoU between "
                "each mask and its corrected version. Notebook 01 builds the intuition: how much does a "
                "small human correction move the IoU?",
        "quoted": [("§5", "94% of the automatic/corrected pairs have an IoU above 90% (97% above 75%).")],
        "figures": ["01/pair_iou_histogram"],
        "tables": ["01/pairs_above_threshold"],
    },
    # ------------------------------------------------------------------ model
    {
        "title": "The model: three parts",
        "text": "- **Image encoder**: a ViT (MAE pre-trained), run once per image, gives a 64x64 embedding.\n"
                "- **Prompt encoder**: points and boxes become tokens (positional encodings + learned "
                "type embeddings); masks are downsampled by convolutions and added to the embedding.\n"
                "- **Mask decoder**: a two-way transformer between prompt tokens and the image embedding, then "
                "upsampling and per-mask MLPs.\n"
                "- The heavy part runs once; each new prompt only runs the light parts.",
        "quoted": [("§3", "Given a precomputed image embedding, the prompt encoder and mask decoder run in a web "
                          "browser, on CPU, in about 50 ms.")],
        "tables": ["02/parameters"],
    },
    {
        "title": "Image encoder",
        "text": "The image is resized so its long side is the model's input size, normalised and padded; "
                "16x16 patches go through windowed and global attention blocks; a neck maps the result to the "
                "embedding channels.",
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
                "Below, where the tokens look in the image embedding.",
        "figures": ["02/decoder_attention"],
    },
    {
        "title": "Ambiguity-aware: three masks per prompt",
        "text": "One click on a shirt could mean the shirt, the person, or a pocket. SAM predicts **three** masks "
                "(whole, part, subpart) and a predicted IoU for each; the most confident is shown by default.",
        "quoted": [("§3", "With ambiguous prompts the model outputs 3 masks; during training only the mask "
                          "with the lowest loss is back-propagated.")],
        "figures": ["02/three_masks"],
    },
    # ------------------------------------------------------------------ zero-shot evaluation
    {
        "title": "Zero-shot: a single point, a valid mask",
        "text": "The hardest prompt: one point in the middle of an object. Scored against the ground truth "
                "(mIoU) as more clicks are added at the largest error.",
        "quoted": [("§7.1", "Over 23 data sets SAM's single-point mIoU is higher than RITM's on 16 of them; "
                            "with an oracle choosing among its 3 masks it beats RITM on all 23."),
                   ("§7.1", "Human annotators rate SAM's single-point masks higher than RITM's.")],
        "figures": ["05/miou_vs_clicks"],
        "tables": ["05/miou_vs_clicks"],
    },
    {
        "title": "Boxes and everything mode",
        "text": "A box is a less ambiguous prompt than a point. Everything mode prompts a grid of points and "
                "keeps the confident, stable, non-overlapping masks (the data engine's last stage).",
        "figures": ["05/everything_mode"],
        "tables": ["05/miou_boxes"],
    },
    {
        "title": "Zero-shot edge detection",
        "text": "Everything mode with a 16x16 grid, Sobel on each mask's probabilities, outer boundaries only, "
                "edge thinning; scored with the BSDS500 benchmark (ODS, OIS, AP, R50). SAM was never trained "
                "for edges.",
        "tables": ["05/edge_detection"],
        "fallback_table": "| method | source | ODS | OIS | AP | R50 |\n|---|---|---|---|---|---|\n"
                          "| HED | quoted from the paper (Table 3, BSDS500 test) | .788 | .808 | .840 | .923 |\n"
                          "| Canny | quoted from the paper (Table 3, BSDS500 test) | .600 | .640 | .580 | – |\n"
                          "| SAM (ViT-H) | quoted from the paper (Table 3, BSDS500 test) | .768 | .786 | .794 | .928 |\n",
        "figures": ["05/edge_maps"],
    },
    # ------------------------------------------------------------------ training
    {
        "title": "Training method",
        "text": "- Interactive simulation: a first prompt (point or noisy box), then points sampled from the "
                "error region, the previous mask fed back as a dense prompt.\n"
                "- Loss on the best of the three masks; a small head learns to predict each mask's IoU.\n"
                "- The course runs the same recipe at a tiny scale: the table puts its settings beside the "
                "paper's.",
        "quoted": [("appendix A", "Loss: 20 x focal + 1 x dice, plus the MSE between predicted and actual IoU."),
                   ("appendix A", "11 rounds per mask: 1 initial prompt, 8 sampled points, 2 rounds without "
                                  "new points."),
                   ("appendix A", "AdamW, lr 8e-4 with 250 warm-up steps, 90k iterations, batch 256 images.")],
        "tables": ["03/settings"],
    },
    {
        "title": "Experiment 1: a mask decoder from scratch",
        "text": "Keep the trained encoder, re-initialise the mask decoder, train it with the paper's loss and "
                "interactive rounds on cached embeddings.",
        "figures": ["03/loss_curves"],
        "tables": ["03/miou_before_after"],
    },
    {
        "title": "Experiment 1: before and after",
        "text": "The same held-out images and clicks, with the re-initialised decoder (top) and the trained one "
                "(bottom).",
        "figures": ["03/predictions_before_after"],
    },
    {
        "title": "Experiment 2: fine-tuning for parking lots",
        "text": "Fine-tune the decoder on daytime parking-lot images (NDISPark) and test on night images it never "
                "saw: does adapting to a domain help, and does it carry over?",
        "tables": ["04/finetune_settings"],
        "figures": ["04/finetune_curves"],
    },
    {
        "title": "Experiment 2: day vs night",
        "text": "One-click mIoU on held-out day images and on night images, zero-shot and after fine-tuning.",
        "tables": ["04/day_vs_night"],
        "figures": ["04/day_night_predictions"],
    },
    {
        "title": "Where the time goes",
        "text": "The encoder runs once per image; every click only runs the prompt encoder and the decoder.",
        "figures": ["02/timings"],
        "tables": ["02/timings"],
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
                "point) and the mask updates in a fraction of a second, because the embedding is computed once.",
        "figures": ["06/click_three_masks"],
    },
    {
        "title": "Demo: refining with a second click",
        "text": "A negative click removes what was wrongly included; the previous mask is fed back as a prompt.",
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
        "text": "- The image encoder is heavy: the whole model is not real-time; only the decoder is "
                "(see *Where the time goes*).\n"
                "- Dedicated interactive methods can do better when many points are given.\n"
                "- Domain-specific tools can win in their own domain (see experiment 2).\n"
                "- Masks can miss fine structures and boundaries are not always crisp.",
        "quoted": [("§8", "SAM's overall performance is not real-time when a heavy image encoder is used."),
                   ("§8", "Dedicated interactive segmentation methods can outperform SAM when many points are "
                          "provided, and domain-specific tools are expected to outperform it in their domains."),
                   ("§8", "Text-to-mask is exploratory and not entirely robust.")],
    },
]
