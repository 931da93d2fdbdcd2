"""Deliberately naive loop implementations of every published formula (the test oracle).

Written independently of ``varpo.stats``: plain Python floats, dicts of groups, one sample at a time. Slow on
purpose; only used in tests. Semantics for missing rewards (non-finite) match the library's documented choice:
excluded from the component's group statistics, deviation 0.
"""

from __future__ import annotations

import math
from collections import defaultdict


def _std(values: list[float], ddof: int) -> float:
    n = len(values)
    if n - ddof <= 0:
        return 0.0
    mu = sum(values) / n
    return math.sqrt(sum((v - mu) ** 2 for v in values) / (n - ddof))


def _div(a: float, b: float) -> float:
    return a / b if b != 0 else 0.0


def _whiten(x: list[float], rows: list[bool], eps: float, ddof: int) -> list[float]:
    vals = [v for v, ok in zip(x, rows) if ok]
    if not vals:
        return [0.0] * len(x)
    mu = sum(vals) / len(vals)
    sd = _std(vals, ddof)
    return [_div(v - mu, sd + eps) if ok else 0.0 for v, ok in zip(x, rows)]


def oracle_advantages(
    rewards,
    group_ids,
    method,
    weights=None,
    eps=1e-6,
    ddof=1,
    saw_base="grpo",
    saw_offsets=None,
    rvpo_k=1.0,
    rvpo_variant="softmin",
    rvpo_beta=0.5,
):
    n, k = len(rewards), len(rewards[0])
    w = [1.0 / k] * k if weights is None else [float(x) for x in weights]
    valid = [[math.isfinite(rewards[i][j]) for j in range(k)] for i in range(n)]
    scorable = [any(valid[i]) for i in range(n)]
    groups = defaultdict(list)
    for i, g in enumerate(group_ids):
        groups[g].append(i)
    mu, sd = {}, {}
    for g, members in groups.items():
        for j in range(k):
            vals = [rewards[i][j] for i in members if valid[i][j]]
            mu[g, j] = sum(vals) / len(vals) if vals else 0.0
            sd[g, j] = _std(vals, ddof)
    dev = [[rewards[i][j] - mu[group_ids[i], j] if valid[i][j] else 0.0 for j in range(k)] for i in range(n)]
    z = [[_div(dev[i][j], sd[group_ids[i], j] + eps) for j in range(k)] for i in range(n)]

    def rc(wt):  # reward combination + group z-score
        c = [sum(wt[j] * dev[i][j] for j in range(k)) for i in range(n)]
        out = [0.0] * n
        for members in groups.values():
            cs = [c[i] for i in members if scorable[i]]
            cnt = len(cs)
            s = math.sqrt(sum(v * v for v in cs) / (cnt - ddof)) if cnt - ddof > 0 else 0.0
            for i in members:
                out[i] = _div(c[i], s + eps)
        return out

    def acomb(wt):
        return [sum(wt[j] * z[i][j] for j in range(k)) for i in range(n)]

    if method == "grpo":
        adv = rc(w)
    elif method == "dr_grpo":
        adv = [sum(w[j] * dev[i][j] for j in range(k)) for i in range(n)]
    elif method == "ac":
        adv = acomb(w)
    elif method == "gdpo":
        adv = _whiten(acomb(w), scorable, eps, ddof)
    elif method == "dvao":
        adv = []
        for i in range(n):
            g = group_ids[i]
            den = sum(w[j] * sd[g, j] for j in range(k))
            adv.append(_div(sum(w[j] * dev[i][j] for j in range(k)), den + eps))
    elif method == "saw":
        cv = []
        for j in range(k):
            off = 0.0 if saw_offsets is None else saw_offsets[j]
            vals = [rewards[i][j] + off for i in range(n) if valid[i][j]]
            m = sum(vals) / len(vals) if vals else 0.0
            cv.append(_std(vals, ddof) / (abs(m) + 1e-8))  # the official CV eps (not eps)
        tot = sum(w[j] * cv[j] for j in range(k))
        wp = [_div(sum(w) * w[j] * cv[j], tot) for j in range(k)]
        if sum(wp) == 0:
            adv = [0.0] * n
        elif saw_base == "grpo":
            adv = rc(wp)
        else:
            adv = _whiten(acomb(wp), scorable, eps, ddof)
    elif method == "rvpo":
        wb = [x / sum(w) for x in w]
        x = []
        for i in range(n):
            if rvpo_variant == "softmin":
                terms = [math.log(wb[j]) - rvpo_k * z[i][j] for j in range(k) if wb[j] > 0]
                top = max(terms)
                x.append(-(top + math.log(sum(math.exp(t - top) for t in terms))) / rvpo_k)
            else:
                m = sum(wb[j] * z[i][j] for j in range(k))
                x.append(m - rvpo_beta * sum(wb[j] * (z[i][j] - m) ** 2 for j in range(k)))
        adv = _whiten(x, scorable, eps, ddof)
    else:
        raise ValueError(method)
    return [a if scorable[i] else 0.0 for i, a in enumerate(adv)]
