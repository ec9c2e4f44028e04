"""sentence-transformers' ``util.mine_hard_negatives`` on posneg's miner: a Dataset in, one out.

:func:`mine_hard_negatives` takes what sentence-transformers' function of that name takes (a
``datasets.Dataset`` of (anchor, positive) pairs, a model, the same keyword names) and returns a
``datasets.Dataset`` with the same columns, rows in the same order, and the same negatives for the
same settings (up to ties between equal scores): the parity is tested in
``tests/mining/test_st_compat.py`` against the installed sentence-transformers. The mining itself
is :func:`posneg.mining.mine.mine`. ``datasets`` is imported only when the function is called.

How the names map:

- ``absolute_margin`` (and its deprecated name ``margin``) is posneg's ``margin``;
  ``relative_margin`` and ``max_score`` are the same filters.
- ``sampling_strategy="top"`` is ``"top"``; ``"random"`` draws uniformly without replacement
  among the same candidates as sentence-transformers (its first ``range_max - range_min``
  survivors), from ``generator`` instead of Python's global ``random``, so the draws themselves
  differ for the same seed. (``posneg mine --sampling random`` is posneg's ``uniform``: uniform
  among every survivor in posneg's window.) ``"softmax"`` is posneg's own.
- ``output_format="triplet"`` / ``"n-tuple"`` (posneg's ``"triplets"`` / ``"nway"`` too).
- The window. sentence-transformers retrieves the ``range_max + P + 1`` best-scoring documents
  (``P``: the most pairs any anchor has), removes positives, the anchor's own text and filtered
  candidates, and takes the survivors ``range_min .. range_max - 1``. Here the same
  ``range_max + P + 1`` documents are posneg's window (``range_max' = range_max + P``, at most
  the corpus size minus one), so for ``range_min=0`` both see the same candidates and ``"top"``
  picks the same negatives. ``range_min`` is posneg's: it skips the first ``range_min`` *ranks*
  of the full ranking (positives included), where sentence-transformers skips the first
  ``range_min`` *surviving candidates*. ``range_max=None`` is resolved as sentence-transformers
  does (``range_min + num_negatives + P``, or ``range_min + 10 * num_negatives + P`` when a
  margin or ``max_score`` is set).

Deliberate differences (each shown by a test in ``tests/mining/test_st_compat.py``):

- ``range_min > 0`` counts ranks, not survivors (above).
- Several positives per anchor: the margins are measured from the anchor's *best* positive score;
  sentence-transformers uses the smallest (a stricter filter). With one positive they agree.
- A column name that is not in the dataset is an error; sentence-transformers silently falls
  back to the first (second) column.
- Not supported (a ``TypeError`` names them): ``cross_encoder`` (use
  :func:`~posneg.mining.mine.mine`'s ``rescore``), ``min_score``, ``include_positives``,
  ``labeled-pair``/``labeled-list`` outputs, prompts, ``use_faiss`` / ``use_multi_process`` /
  ``faiss_batch_size`` / ``cache_folder`` (posneg's exact search and encoder do that work;
  :func:`posneg.mining.pipeline.mine_files` caches embeddings). ``verbose`` is accepted and
  ignored (pass ``progress=True`` for bars).

Example:
    >>> import torch
    >>> from datasets import Dataset
    >>> from posneg.mining.encode import load_encoder
    >>> from posneg.mining.st_compat import mine_hard_negatives
    >>> def letters(texts):  # letter counts as a 26-D embedding
    ...     return torch.tensor([[t.count(c) for c in "abcdefghijklmnopqrstuvwxyz"]
    ...                          for t in texts]).float()
    >>> pairs = Dataset.from_dict({"query": ["sort lists", "read files", "parse json"],
    ...                            "answer": ["sort a list", "read a file", "parse a json text"]})
    >>> out = mine_hard_negatives(pairs, load_encoder(letters, name="letters"), num_negatives=1)
    >>> out.column_names, len(out)
    (['query', 'answer', 'negative'], 3)
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch

from posneg import _rng
from posneg._progress import ProgressCallback, check_progress
from posneg.mining.encode import TextEncoder, encode, load_encoder
from posneg.mining.mine import Sampling, mine

if TYPE_CHECKING:
    from datasets import Dataset

__all__ = ["HardNegativeOptions", "mine_hard_negatives"]

_FN = "mine_hard_negatives"
_FORMATS = {"triplet": "triplet", "triplets": "triplet", "n-tuple": "n-tuple", "nway": "n-tuple"}
_SAMPLINGS = {"top": "top", "random": "uniform", "uniform": "uniform", "softmax": "softmax"}
#: sentence-transformers options that posneg does not take, with what to do instead.
_UNSUPPORTED = {
    "cross_encoder": "rescore with posneg.mining.mine(rescore=..., rescore_threshold=...)",
    "min_score": "posneg has no lower score bound",
    "include_positives": "positives are never negatives in posneg",
    "query_prompt_name": "prefix the texts yourself or wrap the model in a callable",
    "query_prompt": "prefix the texts yourself or wrap the model in a callable",
    "corpus_prompt_name": "prefix the texts yourself or wrap the model in a callable",
    "corpus_prompt": "prefix the texts yourself or wrap the model in a callable",
    "use_faiss": "posneg.mining.mine takes index=FaissIndex(...)",
    "use_multi_process": "pass a TextEncoder on the device you want",
    "faiss_batch_size": "posneg searches in bounded chunks by itself",
    "cache_folder": "posneg.mining.pipeline.mine_files caches embeddings (cache_dir)",
    "as_triplets": "use output_format",
}


@dataclass(frozen=True)
class HardNegativeOptions:
    """The mining options of :func:`mine_hard_negatives`, under sentence-transformers' names.

    Attributes:
        num_negatives: negatives per anchor (>= 1).
        range_min: ranks skipped at the top of the full ranking (>= 0; posneg's meaning).
        range_max: sentence-transformers' ``range_max`` (> ``range_min``); None: resolved as
            sentence-transformers does.
        max_score: drop candidates scoring above this.
        absolute_margin: drop candidates with ``score > positive_score - absolute_margin``.
        relative_margin: drop candidates with
            ``score > positive_score - |positive_score| * relative_margin``.
        sampling_strategy: ``top``, ``random`` (or ``uniform``: drawn from the same candidates as
            sentence-transformers' ``random``) or ``softmax``.
        output_format: ``triplet`` or ``n-tuple`` (``triplets``/``nway`` accepted).
        output_scores: add a ``scores`` column ([positive, negative...] scores).
        batch_size: texts per forward pass when ``model`` is a name or a SentenceTransformer.
        margin: the deprecated sentence-transformers name of ``absolute_margin``.
        verbose: accepted for compatibility and ignored.
        temperature: softmax temperature (> 0; ``softmax`` only).

    Raises:
        ValueError: naming ``mine_hard_negatives`` and the option, for a value out of range or an
            unknown choice.
        TypeError: a wrongly typed value.
    """

    num_negatives: int = 3
    range_min: int = 0
    range_max: int | None = None
    max_score: float | None = None
    absolute_margin: float | None = None
    relative_margin: float | None = None
    sampling_strategy: str = "top"
    output_format: str = "triplet"
    output_scores: bool = False
    batch_size: int = 32
    margin: float | None = None
    verbose: bool = True
    temperature: float = 1.0

    def __post_init__(self) -> None:
        for name in ("num_negatives", "batch_size"):
            _set(self, name, _int(name, getattr(self, name), minimum=1))
        _set(self, "range_min", _int("range_min", self.range_min, minimum=0))
        if self.range_max is not None:
            _set(self, "range_max", _int("range_max", self.range_max, minimum=1))
            if self.range_min >= self.range_max:
                raise ValueError(
                    f"{_FN}: range_min must be smaller than range_max; got range_min="
                    f"{self.range_min}, range_max={self.range_max}"
                )
            if self.num_negatives > self.range_max - self.range_min:
                raise ValueError(
                    f"{_FN}: num_negatives={self.num_negatives} does not fit in the "
                    f"{self.range_max - self.range_min} candidates range_min={self.range_min} "
                    f"to range_max={self.range_max} leave"
                )
        for name in ("max_score", "absolute_margin", "relative_margin", "margin"):
            value = getattr(self, name)
            if value is not None:
                _set(self, name, _real(name, value, nonnegative=name != "max_score"))
        if self.margin is not None:
            if self.absolute_margin is not None and self.absolute_margin != self.margin:
                raise ValueError(
                    f"{_FN}: margin={self.margin} (the deprecated name) and absolute_margin="
                    f"{self.absolute_margin} differ; give absolute_margin only"
                )
            _set(self, "absolute_margin", self.margin)
        _set(self, "sampling_strategy", _pick("sampling_strategy", self.sampling_strategy))
        _set(self, "output_format", _pick("output_format", self.output_format))
        for name in ("output_scores", "verbose"):
            if not isinstance(getattr(self, name), bool):
                kind = type(getattr(self, name)).__name__
                raise TypeError(f"{_FN}: {name} must be a bool; got {kind}")
        temperature = _real("temperature", self.temperature, nonnegative=True)
        if not temperature > 0:
            raise ValueError(f"{_FN}: temperature must be > 0; got {temperature}")
        _set(self, "temperature", temperature)

    @property
    def sampling(self) -> Sampling:
        """posneg's name of the sampling rule."""
        return cast(Sampling, _SAMPLINGS[self.sampling_strategy])

    def resolved_range_max(self, max_positives: int) -> int:
        """sentence-transformers' ``range_max``, its default resolved as sentence-transformers
        does for anchors with at most ``max_positives`` pairs."""
        if self.range_max is not None:
            return self.range_max
        filtered = (
            self.absolute_margin is not None
            or self.relative_margin is not None
            or self.max_score is not None
        )
        return self.range_min + self.num_negatives * (10 if filtered else 1) + max_positives


def _set(obj: HardNegativeOptions, name: str, value: Any) -> None:
    object.__setattr__(obj, name, value)


def _int(name: str, value: Any, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{_FN}: {name} must be an integer; got {type(value).__name__}")
    if int(value) < minimum:
        raise ValueError(f"{_FN}: {name} must be >= {minimum}; got {int(value)}")
    return int(value)


def _real(name: str, value: Any, *, nonnegative: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{_FN}: {name} must be a number; got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{_FN}: {name} must be finite; got {value}")
    if nonnegative and value < 0:
        raise ValueError(f"{_FN}: {name} must be >= 0; got {value}")
    return value


def _pick(name: str, value: Any) -> str:
    known = _SAMPLINGS if name == "sampling_strategy" else _FORMATS
    if not isinstance(value, str) or value not in known:
        hint = ""
        if value in ("labeled-pair", "labeled-list"):
            hint = " (sentence-transformers' labeled formats are not supported)"
        raise ValueError(
            f"{_FN}: {name} must be one of {', '.join(repr(k) for k in known)}; got {value!r}{hint}"
        )
    return known[value] if name == "output_format" else value


def _options(options: HardNegativeOptions | None, given: dict[str, Any]) -> HardNegativeOptions:
    """``options`` or the keyword options, checked (unknown and unsupported names refused)."""
    for name in given:
        if name in _UNSUPPORTED:
            raise TypeError(
                f"{_FN}: sentence-transformers' option {name!r} is not supported by posneg "
                f"({_UNSUPPORTED[name]}); see docs/mining.md, 'Coming from sentence-transformers'"
            )
    known = {f.name for f in fields(HardNegativeOptions)}
    unknown = sorted(set(given) - known)
    if unknown:
        raise TypeError(f"{_FN}: unexpected keyword argument(s) {', '.join(map(repr, unknown))}")
    if options is not None:
        if not isinstance(options, HardNegativeOptions):
            raise TypeError(
                f"{_FN}: options must be a HardNegativeOptions; got {type(options).__name__}"
            )
        if given:
            raise TypeError(f"{_FN}: give options= or keyword options, not both")
        return options
    return HardNegativeOptions(**given)


def _encoder(model: Any, batch_size: int) -> TextEncoder:
    """A :class:`TextEncoder` from a TextEncoder, a model name or folder, a SentenceTransformer
    (anything with ``encode``) or a callable."""
    if isinstance(model, TextEncoder):
        return model
    if isinstance(model, (str, Path)):
        return load_encoder(model, batch_size=batch_size)
    st_encode = getattr(model, "encode", None)
    if callable(st_encode):

        def embed(texts: list[str]) -> torch.Tensor:
            out = st_encode(
                texts,
                batch_size=batch_size,
                convert_to_tensor=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
            return torch.as_tensor(out).detach().float().cpu()

        # the model batches by itself (batch_size): hand it whole shards
        return load_encoder(embed, batch_size=1 << 20)
    if callable(model):
        return load_encoder(model)
    raise TypeError(
        f"{_FN}: model must be a SentenceTransformer, a TextEncoder, a model name or folder, or "
        f"a callable; got {type(model).__name__}"
    )


def _texts(name: str, values: Sequence[Any]) -> list[str]:
    out = list(values)
    for i, text in enumerate(out):
        if not isinstance(text, str):
            raise TypeError(f"{_FN}: {name}[{i}] must be a str; got {type(text).__name__}")
    return out


def _column(dataset: Any, given: str | None, default: int, name: str) -> str:
    columns = list(dataset.column_names)
    if given is None:
        if len(columns) <= default:
            raise ValueError(
                f"{_FN}: the dataset has {len(columns)} column(s); {name} needs column "
                f"{default + 1} (or name it)"
            )
        return str(columns[default])
    if given not in columns:
        raise ValueError(f"{_FN}: {name}={given!r} is not a column of the dataset ({columns})")
    return given


@dataclass(frozen=True)
class _Pairs:
    """Unique anchors, the deduplicated corpus (extra corpus first, then positives), positives."""

    queries: list[str]
    corpus: list[str]
    positives: list[list[int]]
    own: list[int]
    max_pairs: int


def _pairs(anchors: list[str], positives: list[str], extra: list[str]) -> _Pairs:
    corpus = list(dict.fromkeys(extra + positives))
    row = {text: i for i, text in enumerate(corpus)}
    order: dict[str, int] = {}
    pos: list[list[int]] = []
    count: dict[str, int] = {}
    for anchor, positive in zip(anchors, positives, strict=True):
        q = order.setdefault(anchor, len(order))
        if q == len(pos):
            pos.append([])
        count[anchor] = count.get(anchor, 0) + 1
        if row[positive] not in pos[q]:
            pos[q].append(row[positive])
    queries = list(order)
    return _Pairs(
        queries=queries,
        corpus=corpus,
        positives=pos,
        own=[row.get(q, -1) for q in queries],
        max_pairs=max(count.values()),
    )


def mine_hard_negatives(
    dataset: Dataset,
    model: Any,
    *,
    anchor_column_name: str | None = None,
    positive_column_name: str | None = None,
    corpus: Sequence[str] | None = None,
    options: HardNegativeOptions | None = None,
    generator: torch.Generator | None = None,
    progress: bool | ProgressCallback = False,
    **st_options: Any,
) -> Dataset:
    """Add mined hard negatives to (anchor, positive) pairs, as sentence-transformers does.

    Args:
        dataset: a ``datasets.Dataset`` of (anchor, positive) text pairs; pairs with the same
            anchor are one query with several positives.
        model: a ``SentenceTransformer``, a :class:`~posneg.mining.encode.TextEncoder`, a model
            name or folder (:func:`~posneg.mining.encode.load_encoder`, offline) or a callable
            mapping texts to an (N, D) tensor. Embeddings are L2-normalised; scores are cosine.
        anchor_column_name: the anchor column (default: the first column).
        positive_column_name: the positive column (default: the second column).
        corpus: more candidate documents besides the positives (texts).
        options: all mining options as one :class:`HardNegativeOptions` (or give them as
            keywords).
        generator: random source of ``random`` / ``uniform`` and ``softmax`` sampling.
        progress: ``True`` for tqdm bars (when installed), or a ``(desc, done, total)`` callback.
        **st_options: the fields of :class:`HardNegativeOptions` under sentence-transformers'
            names (``num_negatives``, ``range_min``, ``range_max``, ``max_score``,
            ``absolute_margin``, ``relative_margin``, ``sampling_strategy``, ``output_format``,
            ``output_scores``, ``batch_size``, ``margin``, ``verbose``, ``temperature``).

    Returns:
        A ``datasets.Dataset``: ``triplet``: columns (anchor, positive, ``negative``), one row per
        (pair, negative found); ``n-tuple``: (anchor, positive, ``negative_1`` ..
        ``negative_n``), one row per pair whose anchor got all ``n`` negatives. The anchor and
        positive columns keep the input's names; ``output_scores`` adds ``scores``
        ([positive score, negative score(s)]). Rows follow the first appearance of each anchor,
        its positives in order, negatives best first.

    Raises:
        ImportError: ``datasets`` is not installed (``pip install 'posneg[mining]'``).
        TypeError: a sentence-transformers option posneg does not support (named), an unknown
            keyword, a dataset that is not a ``datasets.Dataset``, non-text values, a bad model.
        ValueError: an empty dataset, a column not in the dataset, an option out of range.
    """
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - datasets comes with the [mining] extra
        raise ImportError(f"{_FN} needs the datasets package: pip install datasets") from exc
    opts = _options(options, st_options)
    check_progress(_FN, progress)
    if not isinstance(dataset, datasets.Dataset):
        raise TypeError(f"{_FN}: dataset must be a datasets.Dataset; got {type(dataset).__name__}")
    if len(dataset) == 0:
        raise ValueError(f"{_FN}: the dataset is empty; give at least one (anchor, positive) pair")
    anchor_col = _column(dataset, anchor_column_name, 0, "anchor_column_name")
    positive_col = _column(dataset, positive_column_name, 1, "positive_column_name")
    if anchor_col == positive_col:
        raise ValueError(f"{_FN}: the anchor and positive columns are both {anchor_col!r}")
    if corpus is not None and (
        isinstance(corpus, (str, bytes)) or not isinstance(corpus, Sequence)
    ):
        raise TypeError(f"{_FN}: corpus must be a list of str; got {type(corpus).__name__}")
    data = _pairs(
        _texts(anchor_col, dataset[anchor_col]),
        _texts(positive_col, dataset[positive_col]),
        [] if corpus is None else _texts("corpus", corpus),
    )

    encoder = _encoder(model, opts.batch_size)
    corpus_emb = encode(data.corpus, encoder, progress=progress, desc="encoding corpus")
    query_emb = encode(data.queries, encoder, progress=progress, desc="encoding queries")
    n_docs = len(data.corpus)
    st_range_max = opts.resolved_range_max(data.max_pairs)
    range_max = min(st_range_max + data.max_pairs, n_docs - 1)
    if opts.range_min > range_max:
        raise ValueError(
            f"{_FN}: range_min={opts.range_min} is outside the corpus ({n_docs} documents)"
        )
    width = range_max - opts.range_min + 1
    uniform = opts.sampling == "uniform"
    # "random": sentence-transformers draws among its first range_max - range_min survivors;
    # they are what "top" returns for that many negatives, and the draw is made from them here.
    wanted = min(st_range_max - opts.range_min, width) if uniform else opts.num_negatives
    mined = mine(
        query_emb,
        corpus_emb,
        data.positives,
        num_negatives=min(wanted, width),
        range_min=opts.range_min,
        range_max=range_max,
        max_score=opts.max_score,
        margin=opts.absolute_margin,
        relative_margin=opts.relative_margin,
        own_document=data.own,
        sampling="top" if uniform else opts.sampling,
        temperature=opts.temperature,
        generator=generator,
        progress=progress,
    )
    ids, scores = mined.ids, mined.scores
    if uniform:
        ids, scores = _draw(ids, scores, opts.num_negatives, generator)
    columns = _rows(data, ids, scores, query_emb, corpus_emb, opts)
    names = {"anchor": anchor_col, "positive": positive_col}
    return datasets.Dataset.from_dict({names.get(k, k): v for k, v in columns.items()})


def _draw(
    ids: torch.Tensor, scores: torch.Tensor, n: int, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` of each row's valid candidates (``ids >= 0``) uniformly without replacement, kept
    in rank order; rows with fewer keep all they have (padded with -1 / NaN)."""
    key = _rng.uniform(tuple(ids.shape), device=ids.device, generator=generator)
    key = torch.where(ids >= 0, key, torch.tensor(-math.inf, device=ids.device))
    k = min(n, int(ids.shape[1]))
    top, pick = torch.topk(key, k, dim=1)
    pick = torch.where(top > -math.inf, pick, int(ids.shape[1]))
    pick = torch.sort(pick, dim=1).values  # rank order, pads last
    filled = pick < ids.shape[1]
    safe = pick.clamp(max=int(ids.shape[1]) - 1)
    return (
        torch.where(filled, ids.gather(1, safe), -1),
        torch.where(filled, scores.gather(1, safe), math.nan),
    )


def _rows(
    data: _Pairs,
    ids: torch.Tensor,
    scores: torch.Tensor,
    query_emb: torch.Tensor,
    corpus_emb: torch.Tensor,
    opts: HardNegativeOptions,
) -> dict[str, list[Any]]:
    """The output columns (``anchor``/``positive`` renamed by the caller)."""
    n = opts.num_negatives
    triplet = opts.output_format == "triplet"
    cols: dict[str, list[Any]] = {"anchor": [], "positive": []}
    if triplet:
        cols["negative"] = []
    else:
        cols.update({f"negative_{j}": [] for j in range(1, n + 1)})
    if opts.output_scores:
        cols["scores"] = []
    id_rows, score_rows = ids.tolist(), scores.tolist()
    for q, (row, srow) in enumerate(zip(id_rows, score_rows, strict=True)):
        found = [(d, s) for d, s in zip(row, srow, strict=True) if d >= 0]
        if not triplet and len(found) < n:
            continue
        for p in data.positives[q]:
            pos_score = float(query_emb[q] @ corpus_emb[p])
            if triplet:
                for d, s in found:
                    cols["anchor"].append(data.queries[q])
                    cols["positive"].append(data.corpus[p])
                    cols["negative"].append(data.corpus[d])
                    if opts.output_scores:
                        cols["scores"].append([pos_score, s])
                continue
            cols["anchor"].append(data.queries[q])
            cols["positive"].append(data.corpus[p])
            for j, (d, _) in enumerate(found, start=1):
                cols[f"negative_{j}"].append(data.corpus[d])
            if opts.output_scores:
                cols["scores"].append([pos_score, *(s for _, s in found)])
    return cols
