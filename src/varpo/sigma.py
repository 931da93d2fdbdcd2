"""Running mean of per-component group std across calls (dvao's optional σ shrinkage), with its checkpoint state."""

from __future__ import annotations

import torch
from torch import Tensor

from varpo.checks import check_real
from varpo.numerics import STAT_DTYPE, safe_div


class SigmaEMA:
    """Running mean of per-component group std across calls, used by ``dvao`` to stabilise small groups.

    Beyond the papers: DVAO names noisy σ estimates at small G as future work. With ``shrink = s`` the dvao
    denominator uses σ̃_gk = (1 - s)·σ_gk + s·σ̄_k, where σ̄_k is an exponential moving average (``decay``) of the
    batch mean of σ_gk over groups where component k has >= 2 samples. ``shrink=0`` recovers eq. 9 exactly.
    A component absent from a whole group stays out of that group's denominator. The engine keeps one instance per
    run and saves :meth:`state_dict` with its checkpoints.
    """

    def __init__(self, decay: float = 0.9, shrink: float = 0.5) -> None:
        check_real("SigmaEMA decay", decay, "a number in [0, 1)", lambda v: 0.0 <= v < 1.0)
        check_real("SigmaEMA shrink", shrink, "a number in [0, 1]", lambda v: 0.0 <= v <= 1.0)
        self.decay, self.shrink = float(decay), float(shrink)
        self.value: Tensor | None = None  # [K] float64

    def update(self, std: Tensor, count: Tensor) -> Tensor:
        """Fold this batch's per-group std ``[P, K]`` into the running mean; returns σ̄ ``[K]``."""
        informative = (count >= 2).to(STAT_DTYPE)  # [P, K]
        n = informative.sum(0)
        batch = safe_div((std * informative).sum(0), n)  # [K]
        if self.value is None or self.value.shape != batch.shape:
            self.value = batch.clone()
        else:
            # Components without any informative group this batch keep their previous value.
            self.value = torch.where(n > 0, self.decay * self.value + (1 - self.decay) * batch, self.value)
        return self.value

    def state_dict(self) -> dict:
        return {
            "decay": self.decay,
            "shrink": self.shrink,
            "value": None if self.value is None else self.value.tolist(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` output; a one-line ``ValueError`` names a missing or invalid key."""
        if not isinstance(state, dict):
            raise ValueError(
                f"SigmaEMA state must be a dict with keys decay, shrink, value; got {type(state).__name__}"
            )
        missing = [key for key in ("decay", "shrink", "value") if key not in state]
        if missing:
            raise ValueError(f"SigmaEMA state is missing key(s) {missing} (expected decay, shrink, value)")
        fresh = SigmaEMA(state["decay"], state["shrink"])  # validates both
        value = state["value"]
        if value is not None:
            try:
                value = torch.tensor(value, dtype=STAT_DTYPE)
            except (TypeError, ValueError, RuntimeError):
                raise ValueError(f"SigmaEMA state value must be a list of numbers or None, got {value!r}") from None
            if value.dim() != 1 or not bool(torch.isfinite(value).all()) or bool((value < 0).any()):
                raise ValueError(f"SigmaEMA state value must be a 1-D list of finite stds >= 0, got {state['value']!r}")
        self.decay, self.shrink, self.value = fresh.decay, fresh.shrink, value
