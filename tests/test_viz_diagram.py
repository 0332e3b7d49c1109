"""dmf2mel.viz.diagram: the model's picture is drawn from its configuration and counts its real parameters."""

from __future__ import annotations

import dataclasses

import pytest

from dmf2mel import viz
from dmf2mel.models.dmf2mel import DMF2Mel, DMF2MelConfig
from dmf2mel.viz import diagram as arch
from dmf2mel.viz.style import PREDICTED_COLOR, TRUE_COLOR


def box_texts(fig) -> dict[str, str]:
    """Each box's annotation text by its bold title."""
    texts = [a.text for a in fig.layout.annotations if a.text]
    return {text.split("</b>")[0].removeprefix("<b>"): text for text in texts}


def box_colours(fig) -> list[str]:
    return [shape.line.color for shape in fig.layout.shapes]


@pytest.mark.parametrize(
    "config",
    [
        DMF2MelConfig.small(),
        DMF2MelConfig.paper(),
        DMF2MelConfig.small(share_hams=False, share_convmamba=False, share_first_cross_attention=False),
        DMF2MelConfig.small(use_dcfam=False, use_mamba=False),
    ],
    ids=["small", "paper", "unshared", "ablated"],
)
def test_the_parts_partition_the_models_parameters(config):
    model = DMF2Mel(config)
    counts = arch.part_parameters(model)
    assert set(counts) == set(arch.PART_MODULES)
    assert sum(counts.values()) == sum(p.numel() for p in model.parameters())
    assert counts["head"] == config.d_model * config.n_mels + config.n_mels


def test_shared_repeats_count_once_and_unshared_ones_each_time():
    shared = arch.part_parameters(DMF2Mel(DMF2MelConfig.small(n_hams_repeats=3, share_hams=True)))
    unshared = arch.part_parameters(DMF2Mel(DMF2MelConfig.small(n_hams_repeats=3, share_hams=False)))
    assert unshared["hams"] == 3 * shared["hams"] and unshared["stem"] == shared["stem"]


def test_the_boxes_say_what_the_configuration_says():
    small, paper = DMF2MelConfig.small(), DMF2MelConfig.paper()
    small_boxes, paper_boxes = box_texts(viz.architecture(small)), box_texts(viz.architecture(paper))
    assert "1 pass" in small_boxes["convMamba"] and "residual on 1 of 1" in small_boxes["convMamba"]
    assert f"× {paper.n_convmamba_repeats}, one shared block" in paper_boxes["convMamba"]
    assert f"residual on {paper.n_convmamba_repeats - 1} of {paper.n_convmamba_repeats}" in paper_boxes["convMamba"]
    assert (
        f"× {paper.n_dcfam_repeats}" in paper_boxes["DC-FAM"] and f"× {paper.n_hams_repeats}" in paper_boxes["HAMS-Net"]
    )
    assert f"{paper.n_cross_layers} cross-attentions" in paper_boxes["Fusion"]
    assert f"Linear {paper.d_model}→{paper.n_mels}" in paper_boxes["Head"]
    total = sum(p.numel() for p in DMF2Mel(paper).parameters())
    assert f"{total:,} parameters" in viz.architecture(paper).layout.title.text


def test_switched_off_parts_are_drawn_as_what_they_are():
    config = dataclasses.replace(DMF2MelConfig.small(), use_dcfam=False, use_mamba=False, head="single")
    boxes = box_texts(viz.architecture(config))
    assert "identity (use_dcfam=False)" in boxes["DC-FAM"] and "<i>0 parameters</i>" in boxes["DC-FAM"]
    assert "no BiMamba" in boxes["convMamba"] and "broadcast" in boxes["Head"]


@pytest.mark.parametrize(
    ("highlight", "lit"),
    [("dcfam", {"DC-FAM"}), ("convmamba", {"convMamba"}), ("splinemap", {"Stem", "Fusion"})],
)
def test_the_highlighted_part_is_in_colour_and_the_rest_faded(highlight, lit):
    fig = viz.architecture(highlight=highlight)
    titles = list(box_texts(fig))
    colours = dict(zip(titles, box_colours(fig)))
    parts = {"Stem", "HAMS-Net", "DC-FAM", "Fusion", "convMamba", "Head"}
    assert {title for title in parts if colours[title] == PREDICTED_COLOR} == lit
    assert all(colours[title] == arch._FADED for title in parts - lit)


def test_no_highlight_draws_the_whole_model_in_colour():
    colours = dict(zip(box_texts(fig := viz.architecture()), box_colours(fig)))
    assert {colours[t] for t in ("Stem", "HAMS-Net", "DC-FAM", "Fusion", "convMamba", "Head")} == {TRUE_COLOR}


def test_an_unknown_part_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="highlight: expected one of stem, hams, dcfam.*got 'mamba'"):
        viz.architecture(highlight="mamba")
