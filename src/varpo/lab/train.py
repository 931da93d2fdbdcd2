"""Train S seeds of the tabular policy at once with the engines' own ``compute_advantages`` / ``policy_loss`` /
``aggregate_loss``.

One step, per seed (as the TRL engine does it, on-policy): draw ``prompts_per_step`` prompts without replacement,
sample ``group_size`` responses per prompt from π (or from π_ref with ``reference_sampling``), build rewards
``[N, K]`` and group ids ``[N]``, call ``varpo.compute_advantages``, then for ``updates_per_batch`` updates call
``varpo.policy_loss`` on the per-token log-probs and ``varpo.aggregate_loss`` with the batch's own normalizers, and
take one optimizer step. No formula is re-implemented here: the three functions are looked up on the ``varpo``
module at call time, so a monkeypatched ``varpo.compute_advantages`` (or an estimator registered in
``varpo.advantages.ESTIMATORS``) changes the lab's results.

Batching over seeds is exact, never approximate:

* advantages — one call on the stacked batch (groups of different seeds never share an id) when the estimator is
  *group-local*; this is checked on the first batch against per-seed calls (``gdpo``/``rvpo`` batch-whiten and
  ``saw`` uses batch CVs, so they fail the check and run per seed);
* ``policy_loss`` — ``ppo_clip`` is elementwise and ``gvpo`` group-local, so one stacked call;
* ``aggregate_loss`` — each seed's batch is a micro-batch with its own :func:`varpo.loss_scale`; when every
  seed's mask is identical (all responses one length, or gvpo's one "token" per sequence) a single call with
  that scale returns Σ_seeds loss_s exactly, otherwise one call per seed.

Optimizer: SGD by default. Adam normalizes each parameter separately, which in a tabular model means each
(prompt, response, token) — a shared-parameter network does not do that; ``optimizer="adam"`` is available.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

import varpo
from varpo.lab import metrics as lab_metrics
from varpo.lab.env import RewardSpec
from varpo.lab.policy import TabularPolicy

OPTIMIZERS = ("sgd", "adam")


@dataclass(frozen=True)
class LabConfig:
    """One training configuration (config strings equal the engine's function names).

    Attributes:
        method: advantage estimator (``varpo.METHODS`` or any name registered in ``ESTIMATORS``).
        weights: objective weights w (default: the spec's, else uniform).
        options: extra ``compute_advantages`` options (eps, ddof, saw_base, rvpo_k, ...; not sigma_ema).
        policy_loss: ``ppo_clip`` or ``gvpo``; ``loss_options`` go to it (clip_low, clip_high, beta, gvpo_beta).
        aggregation: ``varpo.AGGREGATIONS`` mode; ``alpha`` = vl_norm's α; M = the spec's maximum length.
        reference_sampling: sample from π_ref (the initial policy) and use it as the old policy every step
            (GVPO Thm 3.1 with π_s = π_θ'); default on-policy (π_old = π_θ at the start of the step).
    """

    method: str = "grpo"
    weights: tuple[float, ...] | None = None
    options: dict = field(default_factory=dict)
    policy_loss: str = "ppo_clip"
    loss_options: dict = field(default_factory=dict)
    aggregation: str = "token_mean"
    alpha: float = 1.0
    prompts_per_step: int = 8
    group_size: int = 8
    steps: int = 50
    lr: float = 10.0
    optimizer: str = "sgd"
    updates_per_batch: int = 1
    reference_sampling: bool = False
    record_every: int = 1

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if "sigma_ema" in self.options:
            raise ValueError("options.sigma_ema is stateful across calls and is not supported by the lab")
        for name in ("prompts_per_step", "group_size", "steps", "updates_per_batch", "record_every"):
            if int(getattr(self, name)) < (2 if name == "group_size" else 1):
                raise ValueError(f"{name} must be >= {2 if name == 'group_size' else 1}, got {getattr(self, name)!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")


@dataclass
class History:
    """Recorded trajectory of S seeds (numpy, float64).

    ``steps [R]``; ``reward``/``satisfied`` ``[R, S, K]`` exact expectations under π over all prompts;
    ``all_rate [R, S]``; per training step: ``weights [T, K]`` (the estimator's effective weights, mean over
    seeds), ``adv_sq [T]`` (mean A², mean over seeds), ``adv_max [T]`` (max |A| over seeds).
    """

    names: tuple[str, ...]
    steps: np.ndarray
    reward: np.ndarray
    satisfied: np.ndarray
    all_rate: np.ndarray
    weights: np.ndarray
    adv_sq: np.ndarray
    adv_max: np.ndarray
    policy: TabularPolicy
    seconds: float = 0.0


BatchHook = Callable[[int, Tensor, Tensor, Tensor], None]


def _group_ids(seeds: int, prompts: int, group: int) -> tuple[Tensor, Tensor]:
    """Per-seed group ids ``[N]`` and stacked ids ``[S*N]`` (unique across seeds)."""
    local = torch.arange(prompts).repeat_interleave(group)  # [N]
    stacked = (torch.arange(seeds).unsqueeze(1) * prompts + local).reshape(-1)
    return local, stacked


class AdvantageCaller:
    """Calls ``varpo.compute_advantages`` stacked over seeds when that equals per-seed calls (checked once)."""

    def __init__(self, cfg: LabConfig, weights, names) -> None:
        self.cfg, self.weights, self.names = cfg, weights, names
        self.stacked: bool | None = None

    def _call(self, rewards: Tensor, ids: Tensor):
        return varpo.compute_advantages(
            rewards, ids, self.cfg.method, weights=self.weights, names=self.names, **self.cfg.options
        )

    def __call__(self, rewards: Tensor, local: Tensor, stacked: Tensor) -> tuple[Tensor, list[dict]]:
        """``rewards [S, N, K]`` -> (advantages ``[S, N]`` float64, list of stats dicts)."""
        s, n, k = rewards.shape
        if self.stacked is None:
            per = [self._call(rewards[i], local) for i in range(s)]
            adv_per = torch.stack([o.advantages for o in per]).double()
            if s == 1:
                self.stacked = False
                return adv_per, [o.stats for o in per]
            joint = self._call(rewards.reshape(s * n, k), stacked).advantages.double().reshape(s, n)
            # float32 rounding only: a looser tolerance would stack a batch-level estimator (saw) that is merely close
            self.stacked = bool(torch.allclose(joint, adv_per, atol=1e-7, rtol=1e-6))
            return adv_per, [o.stats for o in per]
        if self.stacked:
            out = self._call(rewards.reshape(s * n, k), stacked)
            return out.advantages.double().reshape(s, n), [out.stats]
        per = [self._call(rewards[i], local) for i in range(s)]
        return torch.stack([o.advantages for o in per]).double(), [o.stats for o in per]


def _aggregate(cfg: LabConfig, per_token: Tensor, mask: Tensor, seeds: int, uniform: bool, max_length: int) -> Tensor:
    """Σ over seeds of each seed's ``varpo.aggregate_loss`` with that seed's own normalizers."""
    n = per_token.shape[0] // seeds
    if uniform:
        scale = varpo.loss_scale(mask[:n], alpha=cfg.alpha)
        return varpo.aggregate_loss(
            per_token, mask, cfg.aggregation, max_length=max_length, alpha=cfg.alpha, scale=scale
        )
    parts = [
        varpo.aggregate_loss(
            per_token[i * n : (i + 1) * n],
            mask[i * n : (i + 1) * n],
            cfg.aggregation,
            max_length=max_length,
            alpha=cfg.alpha,
        )
        for i in range(seeds)
    ]
    return torch.stack(parts).sum()


class Trainer:
    """Holds S seeds' policy, optimizer and RNG; :meth:`step` runs one training step."""

    def __init__(self, spec: RewardSpec, cfg: LabConfig, seeds: int, seed: int = 0) -> None:
        p, y, k = spec.shape
        if cfg.prompts_per_step > p:
            raise ValueError(
                f"prompts_per_step={cfg.prompts_per_step} exceeds the spec's {p} prompts (lab allocate: "
                "--prompts-per-step; a lab YAML: train.prompts_per_step)"
            )
        self.spec, self.cfg, self.seeds = spec, cfg, seeds
        self.policy = TabularPolicy(spec, seeds)
        self.ref_theta = self.policy.theta.detach().clone()
        self.ref_logp = torch.log_softmax(spec.init_logits.to(torch.float64), -1)  # [P, Y]
        opt = torch.optim.SGD if cfg.optimizer == "sgd" else torch.optim.Adam
        self.opt = opt([self.policy.theta], lr=cfg.lr)
        self.gen = torch.Generator().manual_seed(seed)
        weights = cfg.weights if cfg.weights is not None else spec.weights
        self.weights = None if weights is None else torch.tensor(weights, dtype=torch.float64)
        self.advantages = AdvantageCaller(cfg, self.weights, list(spec.names))
        self.local_ids, self.stacked_ids = _group_ids(seeds, cfg.prompts_per_step, cfg.group_size)
        self.uniform = cfg.policy_loss == "gvpo" or bool((spec.lengths == spec.lengths[0, 0]).all())
        self.max_length = spec.max_length

    def sample(self) -> tuple[Tensor, Tensor]:
        """Prompt and response indices ``[S, N]`` of one step's batch."""
        s, (p, y, _) = self.seeds, self.spec.shape
        pb, g = self.cfg.prompts_per_step, self.cfg.group_size
        prompt = torch.rand(s, p, generator=self.gen).argsort(-1)[:, :pb]  # [S, Pb]
        if self.cfg.reference_sampling:
            probs = torch.softmax(self.spec.init_logits.to(torch.float64), -1)[prompt]  # [S, Pb, Y]
        else:
            probs = self.policy.probs().gather(1, prompt.unsqueeze(-1).expand(s, pb, y))
        resp = torch.multinomial(probs.reshape(s * pb, y), g, replacement=True, generator=self.gen)
        return prompt.unsqueeze(-1).expand(s, pb, g).reshape(s, pb * g), resp.reshape(s, pb * g)

    def batch(self, hook: BatchHook | None = None, step: int = 0) -> dict:
        """Sample one batch and compute its advantages and old/reference log-probs."""
        pidx, ridx = self.sample()
        rewards = self.spec.rewards[pidx, ridx]  # [S, N, K]
        adv, stats = self.advantages(rewards, self.local_ids, self.stacked_ids)
        if hook is not None:
            hook(step, rewards, self.local_ids, adv)
        with torch.no_grad():
            old_theta = self.ref_theta if self.cfg.reference_sampling else self.policy.theta
            old_lp, _ = self.policy.token_logprobs(pidx, ridx, old_theta)
            use_ref = float(self.cfg.loss_options.get("beta", 0.0)) > 0
            ref_lp = self.policy.token_logprobs(pidx, ridx, self.ref_theta)[0] if use_ref else None
        return dict(pidx=pidx, ridx=ridx, adv=adv, stats=stats, old_lp=old_lp, ref_lp=ref_lp)

    def loss(self, b: dict) -> Tensor:
        """Σ over seeds of each seed's aggregated policy loss on batch ``b`` (differentiable in θ)."""
        cfg = self.cfg
        lp, mask = self.policy.token_logprobs(b["pidx"], b["ridx"])  # [S, N, T]
        t = lp.shape[-1]
        kwargs = dict(
            logprobs=lp.reshape(-1, t),
            old_logprobs=b["old_lp"].reshape(-1, t),
            advantages=b["adv"].reshape(-1),
            mask=mask.reshape(-1, t),
            **cfg.loss_options,
        )
        if cfg.policy_loss == "gvpo":
            kwargs.update(group_ids=self.stacked_ids, group_size=cfg.group_size)
        elif b["ref_lp"] is not None:
            kwargs["ref_logprobs"] = b["ref_lp"].reshape(-1, t)
        per_token, _ = varpo.policy_loss(cfg.policy_loss, **kwargs)
        agg_mask = torch.ones_like(per_token) if cfg.policy_loss == "gvpo" else kwargs["mask"]
        return _aggregate(cfg, per_token, agg_mask, self.seeds, self.uniform, self.max_length)

    def step(self, hook: BatchHook | None = None, step: int = 0) -> tuple[Tensor, list[dict]]:
        """One training step; returns (advantages ``[S, N]``, the estimator's stats dicts)."""
        b = self.batch(hook, step)
        for _ in range(self.cfg.updates_per_batch):
            loss = self.loss(b)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
        return b["adv"], b["stats"]


def gradient_draws(spec: RewardSpec, cfg: LabConfig, draws: int, seed: int = 0, theta: Tensor | None = None) -> Tensor:
    """``draws`` independent one-batch gradient estimates on the same policy (initial, or ``theta [P, Y, T]``).

    Returns ``[D, P·Y·T]``: ∇_θ of the aggregated loss of one freshly sampled batch per draw (sign: ascent
    direction, i.e. minus the loss gradient), through the shared functions exactly as :meth:`Trainer.step`.
    """
    tr = Trainer(spec, cfg, draws, seed)
    if theta is not None:
        with torch.no_grad():
            tr.policy.theta.copy_(theta.expand_as(tr.policy.theta))
    loss = tr.loss(tr.batch())
    (grad,) = torch.autograd.grad(loss, tr.policy.theta)
    return -grad.reshape(draws, -1)


def objective_gradient(spec: RewardSpec, weights=None, theta: Tensor | None = None) -> Tensor:
    """Exact ∇_θ J, J = mean_x Σ_y π(y|x) Σ_k w̄_k r_k(x, y), at the initial policy or ``theta [P, Y, T]``."""
    pol = TabularPolicy(spec, 1)
    if theta is not None:
        with torch.no_grad():
            pol.theta.copy_(theta.unsqueeze(0))
    k = spec.shape[2]
    w = torch.full((k,), 1.0 / k, dtype=torch.float64) if weights is None else torch.as_tensor(weights).double()
    value = (torch.softmax(pol.seq_logits(), -1)[0] * (spec.rewards @ (w / w.sum()))).sum(-1).mean()
    (grad,) = torch.autograd.grad(value, pol.theta)
    return grad.reshape(-1)


def train(
    spec: RewardSpec,
    cfg: LabConfig,
    seeds: int = 64,
    seed: int = 0,
    hook: BatchHook | None = None,
) -> History:
    """Run ``cfg.steps`` steps for ``seeds`` independent seeds; see :class:`History`."""
    import time

    start = time.perf_counter()
    tr = Trainer(spec, cfg, seeds, seed)
    names = spec.names
    rec_steps, rewards, sats, alls = [], [], [], []
    weights, adv_sq, adv_max = [], [], []

    def record(i: int) -> None:
        probs = tr.policy.probs()
        rec_steps.append(i)
        rewards.append(lab_metrics.expected(probs, spec.rewards).numpy())
        sats.append(lab_metrics.expected(probs, spec.satisfied.to(torch.float64)).numpy())
        alls.append(lab_metrics.all_objectives_rate(probs, spec.satisfied).numpy())

    record(0)
    for i in range(cfg.steps):
        _, stats = tr.step(hook, i)
        weights.append([np.mean([st.get(f"weight/{n}", np.nan) for st in stats]) for n in names])
        adv_sq.append(np.mean([st.get("adv_sq_mean", np.nan) for st in stats]))
        adv_max.append(np.max([st.get("adv_max_abs", np.nan) for st in stats]))
        if (i + 1) % cfg.record_every == 0 or i + 1 == cfg.steps:
            record(i + 1)
    return History(
        names=names,
        steps=np.asarray(rec_steps),
        reward=np.stack(rewards),
        satisfied=np.stack(sats),
        all_rate=np.stack(alls),
        weights=np.asarray(weights, dtype=np.float64).reshape(cfg.steps, len(names)),
        adv_sq=np.asarray(adv_sq),
        adv_max=np.asarray(adv_max),
        policy=tr.policy,
        seconds=time.perf_counter() - start,
    )
