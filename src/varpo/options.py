"""The options every advantage estimator shares, and the parsing of a call's options and weights.

:class:`AdvantageOptions` is validated once (a one-line ``ValueError`` names the field); :func:`parse_options` splits a
call's keyword options into the shared fields and the options the method declares itself
(``register_estimator(..., options={...})``); :func:`parse_weights` checks the component weights.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch
from torch import Tensor

from varpo import registry
from varpo.checks import check_real, is_int
from varpo.numerics import STAT_DTYPE
from varpo.sigma import SigmaEMA

SAW_BASES = ("grpo", "gdpo")
RVPO_VARIANTS = ("softmin", "explicit")


@dataclass(frozen=True)
class AdvantageOptions:
    """Options shared by all estimators (validated once; unknown/invalid values raise a one-line ``ValueError``).

    Attributes:
        eps: added to every std denominator (default 1e-6 as verl; TRL uses 1e-4).
        ddof: std delta degrees of freedom; 1 = unbiased (verl/TRL), 0 = population (the papers' identities).
        names: K component names used in stats keys (default "0", "1", ...).
        sigma_ema: optional :class:`SigmaEMA` (dvao only): shrink per-group σ toward a running mean.
        saw_base: SAW route, "grpo" (weight rewards, group z-score) or "gdpo" (weight z-scores, batch whiten).
        saw_offsets: per-component shift applied before SAW's coefficient of variation (official code: +3 on a
            [-3, 3] correctness reward). CV is not shift-invariant, so this changes the weights.
        rvpo_k: RVPO soft-min temperature k > 0 (k -> 0: mean, i.e. GDPO; k -> inf: min over components).
        rvpo_variant: "softmin" (paper's main form) or "explicit" (mean - β·variance).
        rvpo_beta: β of the explicit variant.
        extra: the options a registered estimator declares itself (``register_estimator(..., options={...})``):
            name -> value, defaults filled in; also readable as attributes (``options.my_opt``).
    """

    eps: float = 1e-6
    ddof: int = 1
    names: tuple[str, ...] | None = None
    sigma_ema: SigmaEMA | None = None
    saw_base: str = "grpo"
    saw_offsets: tuple[float, ...] | None = None
    rvpo_k: float = 1.0
    rvpo_variant: str = "softmin"
    rvpo_beta: float = 0.5
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __getattr__(self, name: str):
        # only reached when normal lookup fails: an estimator's own option
        extra = self.__dict__.get("extra", {})
        if name in extra:
            return extra[name]
        raise AttributeError(f"{type(self).__name__} has no option {name!r}")

    def __post_init__(self) -> None:
        check_real("eps", self.eps, "a finite number >= 0", lambda v: v >= 0)
        if not is_int(self.ddof) or self.ddof not in (0, 1):
            raise ValueError(f"ddof must be the int 0 or 1, got {self.ddof!r}")
        if not isinstance(self.saw_base, str) or self.saw_base not in SAW_BASES:
            raise ValueError(f"saw_base must be one of {SAW_BASES}, got {self.saw_base!r}")
        if not isinstance(self.rvpo_variant, str) or self.rvpo_variant not in RVPO_VARIANTS:
            raise ValueError(f"rvpo_variant must be one of {RVPO_VARIANTS}, got {self.rvpo_variant!r}")
        check_real("rvpo_k", self.rvpo_k, "a finite number > 0", lambda v: v > 0)
        check_real("rvpo_beta", self.rvpo_beta, "a finite number >= 0", lambda v: v >= 0)
        if self.sigma_ema is not None and not isinstance(self.sigma_ema, SigmaEMA):
            raise ValueError(f"sigma_ema must be a varpo.SigmaEMA or None, got {type(self.sigma_ema).__name__}")
        if self.names is not None and not all(isinstance(n, str) for n in as_sequence("names", self.names)):
            raise ValueError(f"names must be a sequence of K strings, got {self.names!r}")
        if self.saw_offsets is not None:
            for v in as_sequence("saw_offsets", self.saw_offsets):
                check_real("saw_offsets", v, "a sequence of K finite numbers", shown=self.saw_offsets)


def as_sequence(name: str, value) -> tuple:
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, Tensor)):
        raise ValueError(f"{name} must be a sequence with one entry per reward component, got {value!r}")
    return tuple(value.tolist() if isinstance(value, Tensor) else value)


#: the options every estimator shares (the fields of AdvantageOptions but ``extra``).
SHARED_OPTIONS: tuple[str, ...] = tuple(f for f in AdvantageOptions.__dataclass_fields__ if f != "extra")


def parse_options(method: str, options: dict, k: int) -> AdvantageOptions:
    """Shared options -> fields; ``method``'s own declared options (defaults filled in) -> ``extra``; any other key
    is a one-line ValueError naming the method and what it accepts."""
    own = registry.estimator_info(method).options
    clash = sorted(set(own) & set(SHARED_OPTIONS))
    if clash:
        raise ValueError(f"advantage method {method!r} declares option(s) {clash} that shadow shared options")
    unknown = sorted(set(options) - set(SHARED_OPTIONS) - set(own))
    if unknown:
        mine = f"its own options: {sorted(own)}" if own else "no options of its own"
        raise ValueError(
            f"unknown advantage option(s) {unknown} for advantage method {method!r} ({mine}); "
            f"shared options: {sorted(SHARED_OPTIONS)}"
        )
    extra = {key: options.pop(key, default) for key, default in own.items()}
    for key in ("names", "saw_offsets"):
        if options.get(key) is not None:
            options[key] = as_sequence(key, options[key])
            if len(options[key]) != k:
                raise ValueError(f"{key} must have K={k} entries, got {len(options[key])}")
    return AdvantageOptions(**options, extra=MappingProxyType(extra))


def parse_weights(weights, k: int, device) -> Tensor:
    if weights is None:
        return torch.full((k,), 1.0 / k, dtype=STAT_DTYPE, device=device)
    try:
        w = torch.as_tensor(weights, dtype=STAT_DTYPE, device=device).flatten()
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"weights must be K={k} numbers, got {weights!r}") from None
    if w.numel() != k:
        raise ValueError(f"weights must have K={k} entries, got {w.numel()}")
    values = w.tolist()  # one device->host transfer; checks on the host
    total = sum(values) if all(math.isfinite(v) for v in values) else math.nan  # inf if the sum overflows
    if not math.isfinite(total) or min(values) < 0 or total <= 0:
        raise ValueError(f"weights must be finite, non-negative, not all zero, with a finite sum; got {values}")
    return w
