"""Spec strings of the bench flags: parsing, the keys a flag accepts, building a unit from a spec.

A spec is ``key`` or ``key:arg=value,arg=value`` (``hcl:beta=1.0,tau_plus=0.1``):
:func:`parse_spec` and :func:`parse_specs` read it into a :class:`Spec`; a :class:`SpecParser`
names the keys one flag accepts (registry keys of :mod:`posneg.registry`, aliases such as ``ft``
resolved to the registry key, plus the recipe's own *baselines* such as ``none``, declared
explicitly); :func:`build` turns a spec into a unit and reports a bad argument as the unit's own
``ValueError``/``TypeError`` text, prefixed with the flag and the spec.

Every user mistake raises :class:`UsageError` (an :class:`posneg._io.InputError`, so a
``ValueError``), which the CLI prints as one line with exit code 2. Everything here is
re-exported by :mod:`posneg.bench._harness`, where benches import it from.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from posneg import registry
from posneg._io import InputError

__all__ = [
    "Spec",
    "SpecParser",
    "UsageError",
    "build",
    "load_technique",
    "parse_spec",
    "parse_specs",
]

R = TypeVar("R")


class UsageError(InputError):
    """A user mistake (bad spec, bad value, unreadable file): the CLI prints one line, exits 2."""


@dataclass(frozen=True)
class Spec:
    """A parsed technique spec: a key and keyword arguments."""

    key: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def label(self) -> str:
        """The spec written back as text (used as the row name in tables)."""
        if not self.kwargs:
            return self.key
        args = ",".join(f"{k}={v}" for k, v in self.kwargs.items())
        return f"{self.key}:{args}"


def _parse_value(text: str) -> Any:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def _normal(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def parse_spec(text: str, known: Iterable[str], aliases: Mapping[str, str] | None = None) -> Spec:
    """Parse ``name`` or ``name:arg=value,arg=value``; numbers, booleans and None are converted.

    Args:
        text: the spec.
        known: the accepted keys.
        aliases: other spellings -> key (``{"ft": "feature_transform"}``).

    Raises:
        UsageError: unknown name, a missing ``=``, an empty or repeated argument.
    """
    known = list(known)
    name, _, rest = text.strip().partition(":")
    name = _normal(name)
    name = (aliases or {}).get(name, name)
    if name not in known:
        raise UsageError(f"unknown technique {name!r} in spec {text!r}; known: {', '.join(known)}")
    kwargs: dict[str, Any] = {}
    if rest.strip():
        for part in rest.split(","):
            k, eq, v = part.partition("=")
            k = k.strip()
            if not eq or not k or not v.strip():
                raise UsageError(f"bad argument {part!r} in spec {text!r}: expected name=value")
            if k in kwargs:
                raise UsageError(f"argument {k!r} given twice in spec {text!r}")
            kwargs[k] = _parse_value(v.strip())
    return Spec(name, kwargs)


def parse_specs(
    texts: Sequence[str],
    known: Iterable[str],
    *,
    flag: str,
    what: str,
    aliases: Mapping[str, str] | None = None,
) -> list[Spec]:
    """Parse a repeatable spec flag: at least one spec, each valid, no spec given twice.

    Raises:
        UsageError: naming ``flag`` (``--objective``) for an empty list or a repeated spec, or
            from :func:`parse_spec` for a bad one.
    """
    if not texts:
        raise UsageError(f"{flag}: give at least one {what}")
    known = list(known)
    specs = [parse_spec(text, known, aliases) for text in texts]
    labels = [s.label() for s in specs]
    for lab in labels:
        if labels.count(lab) > 1:
            raise UsageError(f"{flag}: {lab!r} given twice")
    return specs


@dataclass(frozen=True)
class SpecParser:
    """The keys one bench flag accepts, read from the registry plus the recipe's baselines.

    Attributes:
        flag: the CLI flag (``--objective``), first word of every message.
        what: the noun of the flag (``objective``).
        keys: accepted keys in table order. Every key is a registry key unless it is listed in
            ``baselines``; a registry alias (``ft``) is accepted and becomes its key.
        baselines: the recipe's own entries that are not techniques (``none``, ``random``).

    Raises:
        ValueError: at construction, for a key that is neither a registry key nor a baseline
            (a recipe bug: the catalogue and the bench would disagree).

    Example:
        >>> p = SpecParser("--objective", "objective", ("dcl", "feature_transform"))
        >>> [s.label() for s in p.parse(["dcl:temperature=0.2", "ft"])]
        ['dcl:temperature=0.2', 'feature_transform']
    """

    flag: str
    what: str
    keys: tuple[str, ...]
    baselines: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for key in self.keys:
            if key in self.baselines:
                continue
            try:
                tech = registry.get(key)
            except KeyError:
                raise ValueError(
                    f"SpecParser({self.flag}): {key!r} is neither a registry key nor a declared "
                    "baseline"
                ) from None
            if tech.key != key:
                raise ValueError(
                    f"SpecParser({self.flag}): {key!r} is an alias; use the registry key "
                    f"{tech.key!r}"
                )
        for key in self.baselines:
            if key not in self.keys:
                raise ValueError(f"SpecParser({self.flag}): baseline {key!r} is not in keys")

    def aliases(self) -> dict[str, str]:
        """Registry aliases of the accepted keys (``{"ft": "feature_transform"}``)."""
        out: dict[str, str] = {}
        for key in self.keys:
            if key not in self.baselines:
                out.update({a: key for a in registry.get(key).aliases if a not in self.keys})
        return out

    def parse(self, texts: Sequence[str]) -> list[Spec]:
        """Parse the flag's values (see :func:`parse_specs`)."""
        return parse_specs(texts, self.keys, flag=self.flag, what=self.what, aliases=self.aliases())

    def technique(self, key: str) -> registry.Technique | None:
        """The registry entry of ``key``, or ``None`` for a baseline."""
        return None if key in self.baselines else registry.get(key)

    def available(self) -> tuple[str, ...]:
        """The keys usable in this installation: baselines, and techniques whose module imports."""
        out = []
        for key in self.keys:
            tech = self.technique(key)
            try:
                if tech is not None:
                    tech.load()
            except (ImportError, AttributeError):
                continue
            out.append(key)
        return tuple(out)

    def where(self, spec: Spec) -> str:
        """``--objective 'hcl:beta=2'``: the prefix of messages about one spec."""
        return f"{self.flag} {spec.label()!r}"


def load_technique(key: str, where: str) -> Any:
    """The registered class of ``key``; a missing optional module becomes a UsageError."""
    try:
        return registry.get(key).load()
    except (KeyError, ImportError, AttributeError):
        raise UsageError(f"{where}: {key} is not available in this installation") from None


def build(
    factory: Callable[..., R],
    spec: Spec,
    where: str,
    *,
    defaults: Mapping[str, Any] | None = None,
    forced: Mapping[str, Any] | None = None,
    reason: str = "",
) -> R:
    """Call ``factory(**{**defaults, **spec.kwargs, **forced})``; errors become one line.

    Args:
        factory: the unit's constructor (or a closure passing positional arguments).
        spec: the parsed spec.
        where: message prefix, usually ``SpecParser.where(spec)``.
        defaults: arguments the bench sets unless the spec gives them.
        forced: arguments the bench always sets; a spec may not give them.
        reason: why the bench sets ``forced`` (``the backbone width``), for the message.

    Raises:
        UsageError: a forced argument in the spec, or the unit's own ValueError/TypeError text.
    """
    forced = dict(forced or {})
    for name in forced:
        if name in spec.kwargs:
            why = f" ({reason})" if reason else ""
            raise UsageError(f"{where}: {name} is set by the bench{why}")
    kwargs = {**(defaults or {}), **spec.kwargs, **forced}
    try:
        return factory(**kwargs)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"{where}: {exc}") from None
