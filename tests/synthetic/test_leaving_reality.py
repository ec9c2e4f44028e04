"""Leaving Reality to Imagination (posneg.synthetic.leaving_reality).

Reference: ``Hritikbansal/generative-robustness`` at commit
``3a61ca8f9813deb540949787394d5233e5825c01``, ``generation/data.py`` (``PromptDataset``: one
uniformly drawn template per item under ``--diversity``, else ``f"a photo of a {x}"``) and
``generation/generate_images_captions.py`` (one generated image per real image, same label).
"""

from __future__ import annotations

import math

import pytest
import torch

from posneg.ood.counteranimal import effective_robustness as ca_effective_robustness
from posneg.synthetic.leaving_reality import (
    CLIP_TEMPLATES,
    LeavingRealityAugmentation,
    effective_robustness,
    generation_plan,
    sample_prompts,
)


def _generate(*, images, labels, prompts, generator):  # type: ignore[no-untyped-def]
    return images * 0.5 + torch.rand(images.shape, generator=generator, dtype=images.dtype)


# ---- formula / reference ---------------------------------------------------------------------


def test_templates_are_the_80_clip_templates() -> None:
    assert len(CLIP_TEMPLATES) == 80 == len(set(CLIP_TEMPLATES))
    assert all(t.count("{}") == 1 for t in CLIP_TEMPLATES)
    assert (
        CLIP_TEMPLATES[0] == "a bad photo of a {}." and CLIP_TEMPLATES[-1] == "a tattoo of the {}."
    )


def test_sampler_covers_all_80_templates_uniformly() -> None:
    # card test 1
    labels = torch.zeros(8000, dtype=torch.long)
    prompts = sample_prompts(labels, ["dog"], generator=torch.Generator().manual_seed(0))
    counts = {t: 0 for t in CLIP_TEMPLATES}
    for p in prompts:
        counts[next(t for t in CLIP_TEMPLATES if t.format("dog") == p)] += 1
    assert min(counts.values()) > 0
    # chi-square against uniform (79 dof): far below the 0.1% critical value ~ 124
    chi2 = sum((c - 100) ** 2 / 100 for c in counts.values())
    assert chi2 < 124


def test_plain_prompt_without_diversity() -> None:
    # PromptDataset: templates = lambda x: f'a photo of a {x}'
    out = sample_prompts(torch.tensor([1, 0]), ["cat", "dog"], diversity=False)
    assert out == ["a photo of a dog", "a photo of a cat"]


def test_effective_robustness_is_counteranimal_renamed() -> None:
    ref_id, ref_shift = [0.6, 0.7, 0.85, 0.9], [0.3, 0.42, 0.6, 0.71]
    ours = effective_robustness(acc_id=[0.8], acc_shift=[0.65], ref_id=ref_id, ref_shift=ref_shift)
    theirs = ca_effective_robustness(
        acc_common=[0.8], acc_counter=[0.65], ref_common=ref_id, ref_counter=ref_shift
    )
    assert torch.equal(ours, theirs)
    # naive logit fit
    lg = [math.log(p / (1 - p)) for p in ref_id]
    ls = [math.log(p / (1 - p)) for p in ref_shift]
    mx, my = sum(lg) / 4, sum(ls) / 4
    a = sum((x - mx) * (y - my) for x, y in zip(lg, ls, strict=True)) / sum(
        (x - mx) ** 2 for x in lg
    )
    pred = 1 / (1 + math.exp(-(a * math.log(0.8 / 0.2) + my - a * mx)))
    assert float(ours[0]) == pytest.approx(0.65 - pred, abs=1e-12)


# ---- properties ------------------------------------------------------------------------------


def test_one_to_one_doubles_with_identical_histograms() -> None:
    # card test 2
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(30, 4, generator=g), torch.randint(0, 5, (30,), generator=g)
    out = LeavingRealityAugmentation()(x, y, generate=_generate, generator=g)
    assert out.images.shape == (60, 4)
    real, fake = out.labels[~out.generated], out.labels[out.generated]
    assert torch.equal(torch.bincount(real, minlength=5), torch.bincount(fake, minlength=5))
    assert torch.equal(out.source[out.generated], torch.arange(30))
    assert torch.equal(out.images[:30], x)
    assert len(out.prompts) == 30


def test_ratio_plan() -> None:
    assert torch.equal(generation_plan(5), torch.arange(5))
    p = generation_plan(10, ratio=2.5, generator=torch.Generator().manual_seed(0))
    assert len(p) == 25 and torch.bincount(p, minlength=10).tolist().count(3) == 5
    assert len(generation_plan(10, ratio=0.0)) == 0


def test_baseline_on_its_own_line_has_zero_er() -> None:
    # card test 3: a reference model itself has ER ~ 0 when the line passes through it
    ref_id, ref_shift = [0.6, 0.75, 0.9], [0.35, 0.5, 0.7]
    er = effective_robustness(
        acc_id=ref_id, acc_shift=ref_shift, ref_id=ref_id, ref_shift=ref_shift
    )
    assert er.abs().max() < 0.02
    line = effective_robustness(acc_id=[0.75], acc_shift=[0.5], ref_id=[0.5, 0.7, 0.9],
                                ref_shift=[0.25, 0.45, 0.65], scale="linear")  # fmt: skip
    assert float(line[0]) == pytest.approx(0.0, abs=1e-12)


def test_determinism_and_global_rng() -> None:
    x, y = torch.ones(6, 2), torch.tensor([0, 1, 2, 0, 1, 2])
    aug = LeavingRealityAugmentation(ratio=1.5)
    state = torch.get_rng_state()
    a = aug(x, y, generate=_generate, generator=torch.Generator().manual_seed(3))
    b = aug(x, y, generate=_generate, generator=torch.Generator().manual_seed(3))
    assert torch.equal(state, torch.get_rng_state())
    assert torch.equal(a.images, b.images) and a.prompts == b.prompts


# ---- errors ----------------------------------------------------------------------------------


def test_errors() -> None:
    x, y = torch.ones(3, 2), torch.tensor([0, 1, 1])
    with pytest.raises(ValueError, match="LeavingRealityAugmentation: ratio must be >= 0"):
        LeavingRealityAugmentation(ratio=-1.0)
    with pytest.raises(ValueError, match="LeavingRealityAugmentation: templates must be"):
        LeavingRealityAugmentation(templates=("no slot",))
    with pytest.raises(TypeError, match="LeavingRealityAugmentation: class_names must be"):
        LeavingRealityAugmentation(class_names="ab")
    with pytest.raises(ValueError, match="LeavingRealityAugmentation: generate must return"):
        LeavingRealityAugmentation()(x, y, generate=lambda **kw: torch.ones(1))
    with pytest.raises(ValueError, match="sample_prompts: labels must index class_names"):
        sample_prompts(torch.tensor([2]), ["a", "b"])
    with pytest.raises(ValueError, match="fit_reference_line: ref_common must not be constant"):
        effective_robustness(acc_id=0.5, acc_shift=0.5, ref_id=[0.5, 0.5], ref_shift=[0.4, 0.6])
    assert "ratio=1.0" in repr(LeavingRealityAugmentation())
