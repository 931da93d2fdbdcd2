"""Evaluation over k sampled completions per prompt: per-objective means, avg@k, pass@k, all-objectives rate.

Input: `completions_by_prompt`, a sequence of `(row, completions)` pairs, where `row` is the prompt's dataset row
(a dict with the columns the rewards need, e.g. one element of `task.generate(...)`) and `completions` its
sampled completions (strings or chat messages). A `datasets.Dataset` row iterates as such a dict, so
`zip(ds, samples)` works.

"Satisfied" means the reward reaches its maximum (format 1, accuracy 1, length 1, correctness 3 or 1), except
that for a tool-call ground truth without any call (where ToolRL's correctness is a constant neutral value) it
means not emitting `<tool_call>`. Rewards that return None (not applicable) are left out of every statistic of
that objective.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from varpo.tasks.base import Task


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct: 1 − C(n−c, k) / C(n, k) (Chen et al. 2021)."""
    if not 0 < k <= n or not 0 <= c <= n:
        raise ValueError(f"need 0 < k <= n and 0 <= c <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


@dataclass
class EvalResult:
    """Metrics of one evaluation. Per objective (reward name):

    * `mean`: mean raw reward over all scored completions.
    * `avg_at_k`: mean over prompts of the fraction of that prompt's samples that satisfy the objective
      (the papers' avg@k; for 0/1 rewards with equal k per prompt this equals `mean`).
    * `pass_at_k`: mean over prompts of the unbiased pass@k (with exactly k samples: whether any satisfies).
    `all_objectives`: fraction of completions satisfying every objective at once; `all_objectives_pass_at_k`: the
    same per prompt, pass@k style. `k` is the k of pass@k; `n_samples` the samples per prompt (min over prompts).
    `per_prompt`: per objective, each prompt's fraction of satisfying samples (None where the objective did not
    apply), in prompt order, and under ``"all"`` each prompt's all-objectives fraction — what a prompt-clustered
    standard error needs (`varpo.significance.prompt_cluster_se`).
    """

    n_prompts: int
    n_samples: int
    k: int
    mean: dict[str, float] = field(default_factory=dict)
    avg_at_k: dict[str, float] = field(default_factory=dict)
    pass_at_k: dict[str, float] = field(default_factory=dict)
    all_objectives: float = 0.0
    all_objectives_pass_at_k: float = 0.0
    per_prompt: dict[str, list[float | None]] = field(default_factory=dict)

    def to_dict(self, prefix: str = "eval/", k_label: str | None = None) -> dict[str, float]:
        """Flat metric keys: `eval/<name>/mean`, `eval/<name>/avg@k`, `eval/<name>/pass@k`, `eval/all/...`.

        ``prefix`` replaces ``eval/``; ``k_label`` replaces the number after ``@`` (default: the k used).
        """
        at = str(self.k) if k_label is None else k_label
        out: dict[str, float] = {}
        for name in self.mean:
            out[f"{prefix}{name}/mean"] = self.mean[name]
            out[f"{prefix}{name}/avg@{at}"] = self.avg_at_k[name]
            out[f"{prefix}{name}/pass@{at}"] = self.pass_at_k[name]
        out[f"{prefix}all/rate"] = self.all_objectives
        out[f"{prefix}all/pass@{at}"] = self.all_objectives_pass_at_k
        return out


def evaluate(
    task: Task, completions_by_prompt: Iterable[tuple[Mapping[str, Any], Sequence[Any]]], k: int | None = None
) -> EvalResult:
    """Score every completion with `task`'s rewards and summarise (see module docstring).

    `k` defaults to the smallest number of samples any prompt has; with more samples than k, pass@k uses the
    unbiased estimator. Prompts with no completions are an error.
    """
    funcs = task.reward_funcs
    names = [f.__name__ for f in funcs]
    values: dict[str, list[float]] = {n: [] for n in names}
    per_prompt: list[tuple[int, dict[str, list[bool]], list[bool]]] = []  # (n samples, satisfied, all satisfied)
    for row, completions in completions_by_prompt:
        if len(completions) == 0:
            raise ValueError("every prompt needs at least one completion")
        row = dict(row)
        sat: dict[str, list[bool]] = {n: [] for n in names}
        all_ok = []
        for completion in completions:
            ok_all = True
            for f in funcs:
                v = f.score(completion, **row)
                s = f.satisfied(v, completion, **row)
                if v is not None:
                    values[f.__name__].append(v)
                    sat[f.__name__].append(bool(s))
                    ok_all = ok_all and bool(s)
            all_ok.append(ok_all)
        per_prompt.append((len(completions), sat, all_ok))
    if not per_prompt:
        raise ValueError("nothing to evaluate")
    n_samples = min(n for n, _, _ in per_prompt)
    k = n_samples if k is None else k
    if not 0 < k <= n_samples:
        raise ValueError(f"k must be in [1, {n_samples}] (the fewest samples of any prompt), got {k}")

    def prompt_mean(stat) -> float:
        scored = [x for x in (stat(s, a) for _, s, a in per_prompt) if x is not None]
        return sum(scored) / len(scored) if scored else float("nan")

    def rate(flags: list[bool]) -> float | None:
        return sum(flags) / len(flags) if flags else None

    def passk(flags: list[bool]) -> float | None:
        return pass_at_k(len(flags), sum(flags), min(k, len(flags))) if flags else None

    result = EvalResult(n_prompts=len(per_prompt), n_samples=n_samples, k=k)
    for name in names:
        result.mean[name] = sum(values[name]) / len(values[name]) if values[name] else float("nan")
        result.avg_at_k[name] = prompt_mean(lambda s, a, name=name: rate(s[name]))
        result.pass_at_k[name] = prompt_mean(lambda s, a, name=name: passk(s[name]))
    for name in names:
        result.per_prompt[name] = [rate(s[name]) for _, s, _ in per_prompt]
    result.per_prompt["all"] = [rate(a) for _, _, a in per_prompt]
    all_flags = [flag for _, _, a in per_prompt for flag in a]
    result.all_objectives = sum(all_flags) / len(all_flags)
    result.all_objectives_pass_at_k = prompt_mean(lambda s, a: passk(a))
    return result
