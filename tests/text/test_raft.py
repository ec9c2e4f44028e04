"""RAFT selection and SFT data, against LMFlow's raft_aligner.py (OptimalScale/LMFlow,
src/lmflow/pipeline/raft_aligner.py, collection_strategy version, read at 5047f2f and later
snapshots): ``_get_batch_dataset_local`` keeps ``np.argmax(rewards)`` per prompt unless it is
``-INF``; ``_get_batch_dataset_top`` keeps ``np.argsort(r)[::-1][:int(n * alpha)]``;
``group_texts`` concatenates and chunks with ``labels = input_ids``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from posneg.text.raft import (
    DISCARDED_REWARD,
    IGNORE_INDEX,
    RAFTSelector,
    build_sft_batch,
    pack_texts,
    raft_iteration,
    samples_per_prompt,
    select_best_of_k,
    select_top_fraction,
)


def _lmflow_local(rewards: np.ndarray, discard: np.ndarray) -> list[tuple[int, int]]:
    """Transcription of the per-prompt loop of ``_get_batch_dataset_local``."""
    kept = []
    for i in range(rewards.shape[0]):
        r = list(rewards[i])
        for kk in range(len(r)):
            if discard[i, kk]:
                r[kk] = DISCARDED_REWARD
        idx = int(np.argmax(r))
        if r[idx] != DISCARDED_REWARD:
            kept.append((i, idx))
    return kept


def test_local_matches_lmflow_with_ties_and_discards() -> None:
    g = np.random.default_rng(0)
    r = g.integers(0, 3, size=(20, 5)).astype(np.float64)  # many ties
    d = g.random((20, 5)) < 0.3
    d[3] = True  # a prompt with every sample discarded
    sel = select_best_of_k(torch.from_numpy(r), discarded=torch.from_numpy(d))
    assert list(zip(sel.prompt.tolist(), sel.sample.tolist(), strict=True)) == _lmflow_local(r, d)


def test_top_matches_lmflow_order() -> None:
    g = np.random.default_rng(1)
    r = g.integers(0, 4, size=12).astype(np.float64)
    for alpha in (0.2, 0.5, 1.0):
        official = np.argsort(r, kind="stable")[::-1][: int(len(r) * alpha)]
        got = select_top_fraction(torch.from_numpy(r), top_fraction=alpha)
        assert got.tolist() == official.tolist()
        # numpy's default sort keeps the same kept multiset of rewards
        default = np.argsort(r)[::-1][: int(len(r) * alpha)]
        assert sorted(r[default]) == sorted(r[got.numpy()])


def test_formula_naive_loop() -> None:
    r = torch.randn(7, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    sel = select_best_of_k(r)
    for m in range(7):
        best = max(range(4), key=lambda k: (float(r[m, k]), -k))
        assert int(sel.sample[m]) == best


def test_properties_kept_mean_at_least_batch_mean_and_counts() -> None:
    r = torch.rand(50, 8, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    sel = select_best_of_k(r)
    assert sel.prompt.numel() == 50
    assert r[sel.prompt, sel.sample].mean() >= r.mean()
    top = select_top_fraction(r[:, 0], top_fraction=0.2)
    assert top.numel() == int(50 * 0.2)
    assert r[top, 0].mean() >= r[:, 0].mean()
    # K = 1 (alpha = 1): self-distillation, every sample kept
    one = select_best_of_k(r[:, :1])
    assert one.sample.eq(0).all() and one.prompt.numel() == 50
    assert samples_per_prompt(0.125) == 8 and samples_per_prompt(0.2) == 5


def test_module_top_over_all_samples() -> None:
    r = torch.tensor([[0.1], [0.9], [0.5], [0.7]])
    sel = RAFTSelector("top", top_fraction=0.5)(r)
    assert sel.prompt.tolist() == [1, 3] and sel.sample.tolist() == [0, 0]
    assert "strategy='top'" in repr(RAFTSelector("top", top_fraction=0.5))


def test_sft_batch_masking_official_vs_fork() -> None:
    b = build_sft_batch([[5, 6], [7]], [[8, 9], [10, 11, 12]], pad_id=0)
    assert b.input_ids.tolist() == [[5, 6, 8, 9], [7, 10, 11, 12]]
    assert b.labels.tolist() == b.input_ids.tolist()  # official: labels = input_ids
    m = build_sft_batch([[5, 6], [7]], [[8], [10, 11, 12]], pad_id=0, mask_prompt=True)
    assert m.labels.tolist() == [
        [IGNORE_INDEX, IGNORE_INDEX, 8, IGNORE_INDEX],
        [IGNORE_INDEX, 10, 11, 12],
    ]
    assert m.attention_mask.tolist() == [[1, 1, 1, 0], [1, 1, 1, 1]]


def test_pack_texts_is_group_texts() -> None:
    texts = [[1, 2, 3], [4, 5], [6, 7, 8, 9]]
    assert pack_texts(texts, block_size=4) == [[1, 2, 3, 4], [5, 6, 7, 8]]  # remainder dropped
    assert pack_texts([[1, 2]], block_size=4) == [[1, 2]]  # shorter than a block: kept


def test_raft_iteration_on_a_tiny_gpt2() -> None:
    transformers = pytest.importorskip("transformers")
    conf = transformers.GPT2Config(vocab_size=12, n_positions=16, n_embd=16, n_layer=1, n_head=2)
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(conf)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    prompts = [[1, 2], [3, 4], [5, 6]]
    g = torch.Generator().manual_seed(0)

    def generate(ps, k):  # type: ignore[no-untyped-def]
        return [torch.randint(0, 12, (3,), generator=g).tolist() for _ in range(len(ps) * k)]

    def reward(ps, rs):  # type: ignore[no-untyped-def]
        return torch.tensor([float(sum(x % 2 == 0 for x in r)) for r in rs])

    def train(ps, rs):  # type: ignore[no-untyped-def]
        from posneg.text.raft import sft_step

        return sft_step(model, opt, build_sft_batch(ps, rs, pad_id=0, mask_prompt=True))

    res = raft_iteration(
        prompts,
        generate=generate,
        reward=reward,
        train=train,
        selector=RAFTSelector(top_fraction=0.25),
    )
    assert len(res.kept_prompts) == 3 and res.kept_reward >= res.batch_reward
    assert np.isfinite(res.train_loss)


def test_errors() -> None:
    with pytest.raises(ValueError, match="select_best_of_k: rewards must be a non-empty"):
        select_best_of_k(torch.zeros(3))
    with pytest.raises(ValueError, match="select_best_of_k: rewards contain NaN"):
        select_best_of_k(torch.tensor([[float("nan")]]))
    with pytest.raises(ValueError, match="discarded must be a bool tensor"):
        select_best_of_k(torch.zeros(2, 2), discarded=torch.zeros(2, 2))
    with pytest.raises(ValueError, match="select_top_fraction: top_fraction must be in"):
        select_top_fraction(torch.zeros(3), top_fraction=0.0)
    with pytest.raises(ValueError, match="RAFTSelector: strategy must be one of"):
        RAFTSelector("best")
    with pytest.raises(ValueError, match="build_sft_batch: prompt_ids and response_ids"):
        build_sft_batch([[1]], [], pad_id=0)
    with pytest.raises(ValueError, match="pack_texts: block_size must be >= 1"):
        pack_texts([[1]], block_size=0)
    with pytest.raises(TypeError, match="raft_iteration: selector must be a RAFTSelector"):
        raft_iteration([1], generate=None, reward=None, train=None, selector=None)  # type: ignore[arg-type]


def test_raft_iteration_discard_and_logged_reward() -> None:
    prompts = [0, 1]
    responses = {0: [5, 9, 7, 1], 1: [2, 4, 6, 8]}  # 4 samples per prompt (alpha = 0.25)

    def generate(ps, k):  # type: ignore[no-untyped-def]
        return [x for p in ps for x in responses[p][:k]]

    res = raft_iteration(
        prompts,
        generate=generate,
        reward=lambda ps, rs: torch.tensor([float(x) for x in rs]),
        train=lambda ps, rs: 0.0,
        selector=RAFTSelector(top_fraction=0.25),
        discard=lambda p, r: p == 1 or r == 9,  # every sample of prompt 1 dropped
    )
    assert res.kept_prompts == [0] and res.kept_responses == [7]
    assert res.policy_reward == (5 + 2) / 2  # sample 0 of each prompt, as LMFlow logs
