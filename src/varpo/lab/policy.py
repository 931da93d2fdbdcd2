"""Tabular token-level softmax policy over a spec's finite response sets, batched over S independent seeds.

Parameterization: response y of prompt x has L_y tokens; each token has its own logit θ_{x,y,t} (``[S, P, Y, T]``,
T = max length, masked beyond L_y). The sequence logit is s_{x,y} = Σ_t θ_{x,y,t} and

    π(y | x) = softmax_y(s_{x,·}),   log π(y_t | y_<t, x) := θ_{x,y,t} - log Z_x / L_y,

so Σ_t log π(y_t | y_<t, x) = log π(y | x) exactly (the normalizer is spread evenly over the response's tokens).
Token-level aggregation is then meaningful: a length-L response's gradient touches L parameters, so
‖∇ log π(y)‖² grows ≈ linearly with L (VL Norm §2.2's Var(g_i) ∝ L_i arises from the parameterization, it is not
injected), and token_mean / seq_mean_token_mean / ... weight responses by their lengths exactly as in an LLM.

What this does not model: parameters shared across prompts and responses (function approximation,
generalization); every prompt/response pair is learned separately.
"""

from __future__ import annotations

import torch
from torch import Tensor

from varpo.lab.env import RewardSpec


class TabularPolicy:
    """S copies (seeds) of a token-level tabular policy; ``theta [S, P, Y, T]`` is a leaf tensor."""

    def __init__(self, spec: RewardSpec, seeds: int, dtype: torch.dtype = torch.float64) -> None:
        p, y, _ = spec.shape
        t = spec.max_length
        self.spec = spec
        self.lengths = spec.lengths  # [P, Y]
        self.mask = (torch.arange(t) < spec.lengths.unsqueeze(-1)).to(dtype)  # [P, Y, T]
        init = spec.init_logits.to(dtype) / spec.lengths.to(dtype)  # [P, Y] spread over tokens
        theta = init.unsqueeze(-1).expand(p, y, t) * self.mask
        self.theta = theta.unsqueeze(0).repeat(seeds, 1, 1, 1).requires_grad_(True)  # [S, P, Y, T]

    @property
    def seeds(self) -> int:
        return self.theta.shape[0]

    def seq_logits(self, theta: Tensor | None = None) -> Tensor:
        theta = self.theta if theta is None else theta
        return (theta * self.mask).sum(-1)  # [S, P, Y]

    def log_probs(self) -> Tensor:
        """log π(y | x) ``[S, P, Y]`` (differentiable)."""
        return torch.log_softmax(self.seq_logits(), -1)

    def probs(self) -> Tensor:
        with torch.no_grad():
            return torch.softmax(self.seq_logits(), -1)  # [S, P, Y]

    def token_logprobs(
        self, prompt_idx: Tensor, resp_idx: Tensor, theta: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Per-token log-probs of sampled responses.

        Args:
            prompt_idx, resp_idx: ``[S, N]`` indices of each seed's N sampled (prompt, response) pairs.
            theta: parameters to use instead of the current ones (e.g. the reference policy's).

        Returns:
            ``(logprobs [S, N, T], mask [S, N, T])``; Σ_t logprobs·mask = log π(y | x).
        """
        theta = self.theta if theta is None else theta
        logits = self.seq_logits(theta)  # [S, P, Y]
        log_z = torch.logsumexp(logits, -1)  # [S, P]
        s = torch.arange(self.seeds).unsqueeze(1)
        length = self.lengths[prompt_idx, resp_idx].to(self.theta.dtype)  # [S, N]
        tok = theta[s, prompt_idx, resp_idx]  # [S, N, T]
        mask = self.mask[prompt_idx, resp_idx]  # [S, N, T]
        lp = (tok - (log_z[s, prompt_idx] / length).unsqueeze(-1).to(tok.dtype)) * mask
        return lp, mask
