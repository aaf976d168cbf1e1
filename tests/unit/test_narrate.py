"""samkit.narrate: the sentence said is the one the numbers call for, degenerate results included."""
from __future__ import annotations

from samkit import narrate


def test_training_that_did_not_learn_says_so():
    text = narrate.decoder_training(before=0.018, after=0.018, upper=0.40, before_confident=0.01,
                                    after_confident=0.012, upper_confident=0.35, steps=30, n_masks=40,
                                    loss_first=2.6, loss_last=1.3, area_before=0.9, area_after=0.95,
                                    area_objects=0.02)
    assert "not learned" in text and "0%" in text and "0.400" in text and "loss fell" in text
    assert "cover 95% of the image" in text
    good = narrate.decoder_training(before=0.02, after=0.30, upper=0.40, before_confident=0.01, after_confident=0.29,
                                    upper_confident=0.35, steps=300, n_masks=40, loss_first=2.0, loss_last=0.4,
                                    area_before=0.9, area_after=0.05, area_objects=0.02)
    assert "not learned" not in good and "recovered **74%**" in good
    flat = narrate.decoder_training(before=0.39, after=0.39, upper=0.40, before_confident=0.3, after_confident=0.3,
                                    upper_confident=0.3, steps=3, n_masks=4, loss_first=1.0, loss_last=0.99,
                                    area_before=0.1, area_after=0.1, area_objects=0.05)
    assert "cannot show" in flat and "barely moved" in flat


def test_clicks_rising_falling_flat():
    n = [1, 2, 3, 5, 9]
    assert "raise it" in narrate.clicks("a", n, [0.5] * 5, [0.3, 0.4, 0.5, 0.6, 0.7], 10)
    assert "**lower** it" in narrate.clicks("a", n, [0.5] * 5, [0.7, 0.6, 0.5, 0.5, 0.4], 10)
    assert "about where it was" in narrate.clicks("a", n, [0.5] * 5, [0.5, 0.49, 0.5, 0.51, 0.5], 10)
    assert "not at every step" in narrate.clicks("a", n, [0.5] * 5, [0.5, 0.4, 0.6, 0.6, 0.7], 10)


def test_box_worth():
    n = [1, 2, 3, 5, 9]
    assert "less than one click" in narrate.box_vs_clicks("a", 0.3, n, [0.5, 0.6, 0.7, 0.8, 0.9])
    assert "about 3 clicks" in narrate.box_vs_clicks("a", 0.65, n, [0.5, 0.6, 0.7, 0.8, 0.9])
    assert "more than 9 clicks" in narrate.box_vs_clicks("a", 0.95, n, [0.5, 0.6, 0.7, 0.8, 0.9])
    falling = narrate.box_vs_clicks("coins", 0.942, n, [0.931, 0.93, 0.92, 0.91, 0.905])
    assert "do not raise the mIoU" in falling and "simply the better prompt" in falling and "worth" not in falling
    # a click count that reads the same as the box to three decimals has reached it
    assert "at **5 clicks**" in narrate.box_vs_clicks("a", 0.9372, n, [0.7, 0.92, 0.923, 0.9366, 0.935])


def test_refined_says_what_the_cut_changed():
    n = [1, 2, 3, 5, 9]
    plain = [0.4, 0.5, 0.55, 0.6, 0.6]
    text = narrate.refined("photos", n, plain, [0.45, 0.55, 0.6, 0.66, 0.7], 0.59, 0.73)
    assert "0.590 → **0.730**" in text and "helps with every prompt" in text
    assert "worse with every prompt" in narrate.refined("photos", n, plain, [0.3, 0.4, 0.5, 0.5, 0.5], 0.6, 0.5)
    mixed = narrate.refined("photos", n, plain, [0.39, 0.5, 0.55, 0.6, 0.61], 0.59, 0.73)
    assert "helps most with the box" in mixed


def test_everything_mode_with_no_mask_names_the_filter():
    text = narrate.everything("tiny", "embedded", ["coins"], kept=[0], candidates=[3072], max_iou=[0.5],
                              max_stability=[0.8], passing_iou=[0], passing_stability=[0], relaxed=[130])
    assert "No mask passes" in text and "Both filters" in text and "130" in text
    text = narrate.everything("tiny", "embedded", ["coins"], kept=[0], candidates=[3072], max_iou=[0.95],
                              max_stability=[0.5], passing_iou=[307], passing_stability=[0], relaxed=[130])
    assert "stability filter alone" in text
    assert "No mask" not in narrate.everything("b", "official", ["coins"], kept=[40], candidates=[3072],
                                               max_iou=[0.99], max_stability=[0.99], passing_iou=[922],
                                               passing_stability=[1229], relaxed=[200])


def test_stability_empty_at_plus_one_explains_the_zero():
    text = narrate.stability("tiny", "embedded", predicted_iou=0.24, score=0.0, max_logit=0.56, area_minus=46374,
                             area_zero=5340, area_plus=0)
    assert "**empty**" in text and "0.56" in text and "0.000" in text
    keep = narrate.stability("vit_b", "official", predicted_iou=0.97, score=0.98, max_logit=12.0, area_minus=1000,
                             area_zero=990, area_plus=980)
    assert "would keep" in keep


def test_edges_explain_zeros_and_baselines_above_the_model():
    text = narrate.edges(["Sobel", "Canny", "SAM (tiny)"], ods=[0.8, 0.6, 0.4], ois=[0.8, 0.6, 0.4],
                         ap=[0.8, 0.0, 0.3], r50=[0.9, 0.5, 0.0], levels=[200, 2, 50], n_images=3, real=False,
                         model="tiny")
    assert "Canny's AP is 0 because its map is binary" in text
    assert "SAM (tiny)'s R50 is 0 because its precision never reaches 50%" in text
    assert "Sobel and Canny score above SAM (tiny)" in text and "not comparable" in text


def test_finetune_branches_and_ambiguity():
    assert "carried over" in narrate.finetune(0.3, 0.4, 0.2, 0.25, 200, 100)
    assert "stayed with the daytime" in narrate.finetune(0.3, 0.4, 0.2, 0.2, 200, 100)
    assert "**worse**" in narrate.finetune(0.35, 0.31, 0.18, 0.18, 4, 2)
    same = narrate.ambiguity("tiny", "embedded", [0.95, 0.97, 0.96], [0.2, 0.2, 0.2], [100, 101, 99], [0.99] * 3)
    assert "same mask three times" in same
    near = narrate.ambiguity("tiny", "embedded", [0.73, 0.89, 0.8], [0.5, 0.45, 0.45], [223, 306, 274], [1.0] * 3)
    assert "**nearly the same mask three times**" in near and "nested answers" not in near
    two = narrate.ambiguity("tiny", "embedded", [0.3, 0.95, 0.35], [0.4, 0.4, 0.4], [100, 104, 400], [0.95] * 3)
    assert "Two of them are nearly the same mask" in two and "IoU 0.30" in two
    nested = narrate.ambiguity("vit_b", "official", [0.2, 0.1, 0.5], [0.9, 0.8, 0.7], [50, 200, 800], [0.95, 0.9, 0.97])
    assert "nested" in nested and "not nested" not in nested


def test_ambiguity_names_the_outlined_object_the_masks_miss():
    """Nested masks that are all pieces of the clicked person are not called subpart, part and whole."""
    args = ("tiny", "embedded", [0.2, 0.1, 0.5], [0.5, 0.4, 0.4], [50, 200, 800], [0.95, 0.9, 0.97])
    pieces = narrate.ambiguity(*args, outlined=[("astronaut", [0.05, 0.2, 0.3]), ("face", [0.7, 0.3, 0.1])])
    assert "the whole is missing" in pieces and "none of them is the whole astronaut" in pieces
    assert "**three different, nested answers**" not in pieces
    assert "the face: best IoU 0.70 (mask 1)" in pieces
    whole = narrate.ambiguity(*args, outlined=[("astronaut", [0.05, 0.2, 0.8])])
    assert "**three different, nested answers**" in whole and "the astronaut: best IoU 0.80 (mask 3)" in whole


def test_paper_readouts_are_computed_from_the_tables():
    assert "16 of 23" in narrate.vs_ritm() and "PPDLS" in narrate.vs_ritm()
    assert "older vs middle" in narrate.fairness()
    assert "Europe and Asia & Oceania" in narrate.geography()


def test_timing_explains_a_predict_faster_than_its_decoder():
    slow = narrate.timing("tiny", "cpu", encoder_s=0.128, decoder_s=0.027, predict_s=0.020)
    assert "keeps what depends only on the image" in slow
    plain = narrate.timing("tiny", "cpu", encoder_s=0.128, decoder_s=0.015, predict_s=0.020)
    assert "keeps what depends only on the image" not in plain
    assert "is within the paper's" in plain


def test_click_summary_mentions_the_cut_only_when_on():
    assert "Cut along edges" not in narrate.click_summary("tiny", "embedded")
    assert "Cut along edges" in narrate.click_summary("tiny", "embedded", refine=True)


def test_limitations_name_the_data_set_of_each_click_gain():
    text = narrate.limitations("tiny", "cpu", encoder_s=0.1, click_s=0.01, max_clicks=9,
                               click_gains={"coins (real)": -0.026, "photos, hand-drawn masks (real)": 0.237})
    assert "from 1 to 9 clicks" in text
    assert "by +23.7 points on *photos, hand-drawn masks (real)*; -2.6 points on *coins (real)*" in text
    swapped = {"photos, hand-drawn masks (real)": 0.237, "coins (real)": -0.026}
    assert narrate.limitations("tiny", "cpu", encoder_s=0.1, click_s=0.01, click_gains=swapped) == text
    assert "Many clicks" not in narrate.limitations("tiny", "cpu", encoder_s=0.1, click_s=0.01)


def test_a_loss_that_fell_only_through_focal_is_not_called_fitting():
    kw = dict(before=0.028, after=0.021, upper=0.646, before_confident=0.027, after_confident=0.021,
              upper_confident=0.623, steps=30, n_masks=40, loss_first=3.0, loss_last=1.3, area_before=0.29,
              area_after=1.0, area_objects=0.021)
    collapsed = narrate.decoder_training(**kw, dice_first=0.94, dice_last=0.95, train_iou_last=0.0)
    assert "only through its focal term" in collapsed and "learns to fit" not in collapsed
    assert "IoU 0.000" in collapsed and "covers 100% of the image" in collapsed
    fitted = narrate.decoder_training(**kw, dice_first=0.94, dice_last=0.40, train_iou_last=0.55)
    assert "learns to fit" in fitted and "focal term" not in fitted


def test_everything_mode_where_each_filter_passes_some_but_none_both():
    kw = dict(kept=[0, 0], candidates=[3072, 3072], max_iou=[0.887, 0.903], max_stability=[0.9503, 0.93],
              passing_iou=[2, 5], passing_stability=[1, 0], relaxed=[40, 50])
    text = narrate.everything("tiny", "embedded", ["coins", "coffee"], **kw, passing_both=[0, 0])
    assert "7 have a predicted IoU above" in text and "1 a stability of at least" in text
    assert "no candidate passes both" in text and "alone rejects" not in text
    assert "3 candidates pass both" in narrate.everything("tiny", "embedded", ["coins", "coffee"], **kw,
                                                          passing_both=[3, 0])


def test_edges_say_when_an_ap_covers_only_part_of_its_curve():
    kw = dict(ods=[0.6, 0.61, 0.5, 0.77], ois=[0.6, 0.62, 0.5, 0.78], ap=[0.556, 0.214, 0.129, 0.7],
              r50=[0.8, 0.8, 0.7, 0.9], levels=[200, 8, 6, 200], n_images=3, real=False, model="tiny")
    methods = ["Sobel", "Canny", "Felz-Hutt", "SAM (tiny)"]
    text = narrate.edges(methods, **kw, recall_from=[0.01, 0.48, 0.73, 0.02])
    assert "Canny's at 0.48; Felz-Hutt's at 0.73" in text and "not comparable with the AP" in text
    assert "Sobel's at" not in text and "zero-shot baselines" in text
    assert "few levels" not in narrate.edges(methods, **kw, recall_from=[0.01, 0.05, 0.1, 0.02])
