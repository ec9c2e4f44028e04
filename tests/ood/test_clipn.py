"""Card tests of posneg.ood.clipn against naive float64 loops and the official code's behaviour.

Official code: xmed-lab/CLIPN at commit e465074, ``src/open_clip/loss.py`` (``ClipLoss.forward``,
``image_text_binary_opposite_loss``, ``text_semantic_opposite_loss``), ``src/open_clip/model.py``
(``encode_text``), ``src/classification.py`` (``merge_yes_no_feature``) and
``src/zero_shot_infer.py`` (``cal_all_metric``).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from posneg.ood.clipn import (
    CLIPNLoss,
    CLIPNNoPrompt,
    CLIPNScore,
    add_no_prompt,
    atd_score,
    clipn_logits,
    clipn_loss,
    ctw_score,
    itbo_loss,
    merge_templates,
    tso_loss,
)


def _unit(g: torch.Generator, *shape: int) -> torch.Tensor:
    return F.normalize(torch.randn(*shape, generator=g, dtype=torch.float64), dim=-1)


def _naive_itbo(i, t, t_no, tau):  # double loop, float64
    n = i.shape[0]
    yes = no = 0.0
    for a in range(n):
        for b in range(n):
            s = tau * sum(float(i[a, k] * t[b, k]) for k in range(i.shape[1]))
            s_no = tau * sum(float(i[a, k] * t_no[b, k]) for k in range(i.shape[1]))
            m = max(s, s_no)
            p_yes = math.exp(s - m) / (math.exp(s - m) + math.exp(s_no - m))
            if a == b:
                yes += -math.log(p_yes)
            else:
                no += -math.log(1.0 - p_yes)
    return yes / n, no / (n * n - n)


def _official_itbo(i, t, t_no, tau):
    """loss.py as released (the multi-GPU, local_loss=False branch, where the math is defined)."""
    logits_per_image = tau * i @ t.T
    logits_per_image_no = tau * i @ t_no.T
    eyes = torch.eye(i.shape[0], dtype=i.dtype)
    yes_no = torch.cat([logits_per_image.unsqueeze(-1), logits_per_image_no.unsqueeze(-1)], -1)
    yes_no = F.softmax(yes_no, dim=-1)
    n = yes_no.shape[0]
    binary = eyes * yes_no[:, :, 0] + (1 - eyes) * yes_no[:, :, 1]
    loss_bin = -torch.log(binary)
    return (eyes * loss_bin).view(-1).sum() / n, ((1 - eyes) * loss_bin).view(-1).sum() / (n**2 - n)


def test_itbo_matches_naive_double_loop() -> None:
    g = torch.Generator().manual_seed(1)
    i, t, t_no = _unit(g, 4, 5), _unit(g, 4, 5), _unit(g, 4, 5)
    yes, no = itbo_loss(image_features=i, text_features=t, text_features_no=t_no, logit_scale=7.0)
    ref_yes, ref_no = _naive_itbo(i, t, t_no, 7.0)
    assert yes.item() == pytest.approx(ref_yes, rel=1e-12)
    assert no.item() == pytest.approx(ref_no, rel=1e-12)


def test_itbo_matches_released_code_on_moderate_logits() -> None:
    g = torch.Generator().manual_seed(2)
    i, t, t_no = _unit(g, 6, 8), _unit(g, 6, 8), _unit(g, 6, 8)
    ours = itbo_loss(image_features=i, text_features=t, text_features_no=t_no, logit_scale=10.0)
    theirs = _official_itbo(i, t, t_no, 10.0)
    torch.testing.assert_close(torch.stack(ours), torch.stack(theirs), rtol=1e-12, atol=1e-12)


def test_itbo_is_finite_where_released_log_softmax_overflows() -> None:
    # deliberate difference: softplus of the logit gap vs -log(softmax), which gives inf
    i = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    t, t_no = i.clone(), -i  # s_ii = tau, s^no_ii = -tau: a wrong "no" would be hugely penalised
    tau = 1000.0
    theirs = torch.stack(_official_itbo(i, t_no, t, tau))  # swapped: p_ii[yes] underflows to 0
    ours = torch.stack(
        itbo_loss(image_features=i, text_features=t_no, text_features_no=t, logit_scale=tau)
    )
    assert not bool(torch.isfinite(theirs).all())  # inf, and 0 * inf = nan in its mask product
    assert bool(torch.isfinite(ours).all())
    assert ours[0].item() == pytest.approx(2 * tau)


def test_itbo_limits_and_normalisers() -> None:
    # s_ii >> s^no_ii and s^no_ij >> s_ij: loss near 0; swapped: large
    i = torch.eye(3, dtype=torch.float64)
    t = i.clone()
    t_no = F.normalize(1.0 - torch.eye(3, dtype=torch.float64), dim=1)
    yes, no = itbo_loss(image_features=i, text_features=t, text_features_no=t_no, logit_scale=100.0)
    assert yes.item() < 1e-20 and no.item() < 1e-20
    yes2, no2 = itbo_loss(
        image_features=i, text_features=t_no, text_features_no=t, logit_scale=100.0
    )
    assert yes2.item() > 50 and no2.item() > 50
    # all logits equal: every -log p = log 2, so both normalisers give exactly log 2
    z = torch.zeros(5, 4, dtype=torch.float64)
    z[:, 0] = 1.0
    yes3, no3 = itbo_loss(image_features=z, text_features=z, text_features_no=z, logit_scale=3.0)
    assert yes3.item() == pytest.approx(math.log(2)) and no3.item() == pytest.approx(math.log(2))


def test_tso_values_on_the_card() -> None:
    g = torch.Generator().manual_seed(3)
    t = _unit(g, 5, 6)
    same = tso_loss(text_features=t, text_features_no=t)
    assert same.item() == pytest.approx(2 - math.sqrt(1e-4))  # 1.99
    opposite = tso_loss(text_features=t, text_features_no=-t)
    assert opposite.item() == pytest.approx(2 - math.sqrt(4.0001))  # slightly below 0
    assert opposite.item() < 0
    cos = tso_loss(text_features=t, text_features_no=-t, mode="cosine")
    assert cos.item() == pytest.approx(0.0, abs=1e-12)
    # naive loop
    t_no = _unit(g, 5, 6)
    ref = sum(2 - math.sqrt(2 - 2 * float(t[j] @ t_no[j]) + 1e-4) for j in range(5)) / 5
    assert tso_loss(text_features=t, text_features_no=t_no).item() == pytest.approx(ref, rel=1e-12)


def test_total_is_half_the_sum_without_infonce() -> None:
    g = torch.Generator().manual_seed(4)
    i, t, t_no = _unit(g, 4, 3), _unit(g, 4, 3), _unit(g, 4, 3)
    yes, no = itbo_loss(image_features=i, text_features=t, text_features_no=t_no, logit_scale=5.0)
    tso = tso_loss(text_features=t, text_features_no=t_no)
    total = CLIPNLoss()(i, t, t_no, torch.tensor(5.0, dtype=torch.float64))
    assert total.item() == pytest.approx(0.5 * (yes + no + tso).item(), rel=1e-12)
    same = clipn_loss(
        image_features=i, text_features=t, text_features_no=t_no, logit_scale=5.0, weight=0.5
    )
    assert same.item() == pytest.approx(total.item())


def test_only_the_no_side_gets_gradient() -> None:
    g = torch.Generator().manual_seed(5)
    i, t = _unit(g, 4, 3), _unit(g, 4, 3)
    no_raw = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    loss = CLIPNLoss()(i.detach(), t.detach(), F.normalize(no_raw, dim=1), 10.0)
    loss.backward()
    assert no_raw.grad is not None and no_raw.grad.abs().sum() > 0
    # the yes side and the image side are frozen (no requires_grad): nothing flows there
    assert not i.requires_grad and not t.requires_grad


def test_prompt_is_added_per_position_train_draw_and_eval_mean() -> None:
    emb = torch.randn(6, 4, 3, dtype=torch.float64)
    prompts = torch.randn(2, 5, 3, dtype=torch.float64)
    ev = add_no_prompt(emb, prompts, train=False)
    torch.testing.assert_close(ev, emb + prompts[:, :4].mean(0))
    g = torch.Generator().manual_seed(0)
    tr = add_no_prompt(emb, prompts, train=True, generator=g)
    choices = [prompts[0, :4], prompts[1, :4], prompts[:, :4].mean(0)]
    for n in range(6):  # every row got one of the K + 1 = 3 prompts
        assert any(torch.allclose(tr[n] - emb[n], c) for c in choices)
    idx = torch.randint(0, 3, (6,), generator=torch.Generator().manual_seed(0))
    for n in range(6):
        torch.testing.assert_close(tr[n] - emb[n], choices[int(idx[n])])


def test_prompt_module_zero_init_and_grad() -> None:
    m = CLIPNNoPrompt(context_length=4, width=3, num_prompts=2)
    emb = torch.randn(5, 4, 3)
    torch.testing.assert_close(m(emb, generator=torch.Generator().manual_seed(0)), emb)
    m(emb, generator=torch.Generator().manual_seed(0)).sum().backward()
    assert m.prompt.grad is not None and m.prompt.grad.abs().sum() > 0
    assert "num_prompts=2" in repr(m)


def test_merge_templates_as_merge_yes_no_feature() -> None:
    g = torch.Generator().manual_seed(6)
    f = torch.randn(3, 2, 4, generator=g, dtype=torch.float64)
    total = torch.zeros(2, 4, dtype=torch.float64)
    for k in range(3):
        total += F.normalize(f[k], dim=-1)
    torch.testing.assert_close(merge_templates(f), F.normalize(total, dim=-1))


def _naive_scores(i, w, w_no, tau):
    ctw, atd = [], []
    for a in range(i.shape[0]):
        x = i[a] / i[a].norm()
        lg = [tau * float(x @ (w[c] / w[c].norm())) for c in range(w.shape[0])]
        lg_no = [tau * float(x @ (w_no[c] / w_no[c].norm())) for c in range(w.shape[0])]
        m = max(lg)
        p = [math.exp(v - m) for v in lg]
        p = [v / sum(p) for v in p]
        q = [1 / (1 + math.exp(lg_no[c] - lg[c])) for c in range(len(lg))]
        ctw.append(1 - q[lg.index(m)])
        atd.append(1 - sum(qc * pc for qc, pc in zip(q, p, strict=True)))
    return torch.tensor(ctw, dtype=torch.float64), torch.tensor(atd, dtype=torch.float64)


def test_ctw_atd_match_naive_loops_and_cal_all_metric() -> None:
    g = torch.Generator().manual_seed(7)
    i = torch.randn(6, 5, generator=g, dtype=torch.float64)
    w, w_no = _unit(g, 3, 5), _unit(g, 3, 5)
    kw = {"image_features": i, "text_features": w, "text_features_no": w_no, "logit_scale": 8.0}
    ctw_ref, atd_ref = _naive_scores(i, w, w_no, 8.0)
    torch.testing.assert_close(ctw_score(**kw), ctw_ref)
    torch.testing.assert_close(atd_score(**kw), atd_ref)
    # cal_all_metric (ID-high scores); ours are 1 - those
    logits, logits_no = clipn_logits(**kw)
    idex = torch.argmax(logits, -1).unsqueeze(-1)
    yesno = torch.softmax(torch.cat([logits.unsqueeze(-1), logits_no.unsqueeze(-1)], -1), -1)[
        ..., 0
    ]
    torch.testing.assert_close(1 - torch.gather(yesno, 1, idex).squeeze(1), ctw_score(**kw))
    torch.testing.assert_close(1 - (yesno * torch.softmax(logits, -1)).sum(1), atd_score(**kw))


def test_atd_properties() -> None:
    g = torch.Generator().manual_seed(8)
    i = torch.randn(20, 4, generator=g, dtype=torch.float64)
    w, w_no = _unit(g, 3, 4), _unit(g, 3, 4)
    kw = {"image_features": i, "text_features": w, "text_features_no": w_no}
    atd = atd_score(**kw, logit_scale=5.0)
    assert bool(((atd >= 0) & (atd <= 1)).all())
    logits, logits_no = clipn_logits(**kw, logit_scale=5.0)
    q_max = torch.sigmoid(logits - logits_no).amax(1)
    assert bool((1 - atd <= q_max + 1e-12).all())  # sum_c q_c p_c <= max_c q_c
    # p one-hot (huge scale on distinct classes): ATD == CTW
    big = {"logit_scale": 1e4}
    torch.testing.assert_close(atd_score(**kw, **big), ctw_score(**kw, **big), atol=1e-6, rtol=0)
    # higher = more OOD: an image on its "no" head scores above one on its "yes" head
    s = CLIPNScore(rule="ctw", logit_scale=10.0)(torch.cat([w[:1], w_no[:1]]), w, w_no)
    assert s[1] > s[0]


def test_errors_name_function_and_argument() -> None:
    x = torch.randn(3, 4)
    with pytest.raises(ValueError, match=r"itbo_loss: .*text_features"):
        itbo_loss(
            image_features=x, text_features=torch.randn(3, 5), text_features_no=x, logit_scale=1.0
        )
    with pytest.raises(ValueError, match="itbo_loss: the batch needs N >= 2"):
        itbo_loss(
            image_features=x[:1], text_features=x[:1], text_features_no=x[:1], logit_scale=1.0
        )
    with pytest.raises(ValueError, match="tso_loss: mode"):
        tso_loss(text_features=x, text_features_no=x, mode="l1")
    with pytest.raises(ValueError, match="CLIPNScore: rule"):
        CLIPNScore(rule="msp")
    with pytest.raises(ValueError, match="add_no_prompt: embeddings"):
        add_no_prompt(torch.randn(2, 9, 3), torch.zeros(2, 8, 3), train=False)
    with pytest.raises(TypeError, match="add_no_prompt: train"):
        add_no_prompt(torch.randn(2, 8, 3), torch.zeros(2, 8, 3), train=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="ctw_score: image_features"):
        ctw_score(image_features=x.long(), text_features=x, text_features_no=x)
    with pytest.raises(ValueError, match="CLIPNLoss: weight"):
        CLIPNLoss(weight=0.0)
