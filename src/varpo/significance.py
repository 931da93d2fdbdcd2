"""One statistical standard for every published claim: exact tests for small n, Holm within a claim, clustered s.e.

The project's rule (docs/claims.md, "How claims are decided"): a difference is **established** when its
pre-registered test gives a two-sided p < ``ALPHA`` = 0.05 *after* Holm's step-down correction over the claim's
pre-registered metrics (the family). With fewer than 10 independent units the test is exact — a sign-flip test on
paired differences, a two-sample permutation test on unit outcomes, Fisher's exact test on counts — never a normal
or t approximation. Every null is reported with its minimum detectable effect (MDE) at 80 % power.

Units and clustering. A unit is what was replicated independently: a seed (with its own warm start) in the testbed
and the demo, a world in the lab. Held-out rates are means over prompts, and samples of one prompt are correlated,
so a run's sampling s.e. is the prompt-clustered one (`prompt_cluster_se`: the s.d. over prompts of the per-prompt
rate / sqrt(P)). Over units, `unit_se` takes the larger of the between-unit s.e. (which holds every source of noise)
and the pooled within-unit prompt-clustered s.e. (so that a few units agreeing by chance cannot claim more precision
than the evaluation sample allows).

Pure Python (no scipy): Student's t and the beta quantiles come from the regularized incomplete beta function
(continued fraction, Numerical Recipes 6.4).
"""

from __future__ import annotations

import itertools
import math
import random
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace

ALPHA = 0.05
POWER = 0.8
EXACT_LIMIT = 200_000  # enumerate every relabelling up to this many; beyond, a seeded Monte Carlo of MC_DRAWS
MC_DRAWS = 100_000
_TIE = 1e-12  # relative tolerance when comparing a relabelling's statistic with the observed one (float sums)


# ----------------------------------------------------------------------------------------------- distributions


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz), Numerical Recipes eq. 6.4.5."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def beta_cdf(x: float, a: float, b: float) -> float:
    """Regularized incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def beta_quantile(q: float, a: float, b: float) -> float:
    """x with I_x(a, b) = q (bisection to 1e-12)."""
    lo, hi = 0.0, 1.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if beta_cdf(mid, a, b) < q:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def t_sf2(t: float, df: float) -> float:
    """Two-sided tail P(|T| >= |t|) of Student's t with ``df`` degrees of freedom."""
    if not math.isfinite(t):
        return 0.0
    return beta_cdf(df / (df + t * t), df / 2.0, 0.5)


def t_quantile(p: float, df: float) -> float:
    """The p-quantile of Student's t (p in (0, 1))."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    if p == 0.5:
        return 0.0
    tail = 2 * min(p, 1 - p)  # two-sided tail of |t|
    lo, hi = 0.0, 1.0
    while t_sf2(hi, df) > tail:
        hi *= 2.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if t_sf2(mid, df) > tail:
            lo = mid
        else:
            hi = mid
    x = (lo + hi) / 2
    return x if p > 0.5 else -x


# ----------------------------------------------------------------------------------------------- estimates


def t_interval(values: Sequence[float], level: float = 1 - ALPHA) -> tuple[float, float]:
    """Mean and the t half-width at ``level`` over independent ``values`` (inf with fewer than 2)."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.inf
    se = statistics.stdev(values) / math.sqrt(len(values))
    return mean, t_quantile(0.5 + level / 2, len(values) - 1) * se


def prompt_cluster_se(per_prompt: Sequence[float | None]) -> float:
    """s.e. of a run's held-out rate, prompts as clusters: s.d. (ddof 1) of per-prompt rates / sqrt(P).

    ``per_prompt`` holds each prompt's rate over its k samples (None: the objective did not apply). A rate over P
    prompts x k samples is the mean of the P per-prompt rates, and prompts are the independent units of the
    evaluation, so this is the cluster-robust (CR0-like, ddof 1) s.e.; it is >= the binomial one when samples of a
    prompt agree. NaN with fewer than 2 scored prompts.
    """
    xs = [float(x) for x in per_prompt if x is not None and math.isfinite(x)]
    if len(xs) < 2:
        return math.nan
    return statistics.stdev(xs) / math.sqrt(len(xs))


def unit_se(means: Sequence[float], within_se: Sequence[float] | None = None) -> float:
    """s.e. of the mean over independent units: max(between-unit s.e., pooled within-unit s.e.).

    between = s.d.(means, ddof 1) / sqrt(S); within = sqrt(sum_s se_s^2) / S (the s.e. the evaluation samples alone
    would give). With one unit only ``within`` is available. Non-finite ``within_se`` entries are ignored.
    """
    s = len(means)
    if s == 0:
        return math.nan
    between = statistics.stdev(means) / math.sqrt(s) if s > 1 else math.nan
    ws = [w for w in (within_se or []) if math.isfinite(w)]
    within = math.sqrt(sum(w * w for w in ws)) / s if ws and len(ws) == s else math.nan
    candidates = [x for x in (between, within) if math.isfinite(x)]
    return max(candidates) if candidates else math.nan


def mde(se: float, df: float | None = None, alpha: float = ALPHA, power: float = POWER) -> float:
    """Minimum detectable effect of a two-sided test at ``alpha`` with ``power``: (q_{1-a/2} + q_power) x se.

    Quantiles of t with ``df`` (normal when None). For exact tests this is the usual large-sample guide; also check
    `min_p_*`: with few units an exact test may be unable to reach ``alpha`` at any effect size.
    """
    if not math.isfinite(se):
        return math.inf
    if df is None:
        nd = statistics.NormalDist()
        return (nd.inv_cdf(1 - alpha / 2) + nd.inv_cdf(power)) * se
    return (t_quantile(1 - alpha / 2, df) + t_quantile(power, df)) * se


# ----------------------------------------------------------------------------------------------- exact tests


def _two_sided_count(stats: Iterable[float], observed: float) -> tuple[int, int]:
    """(relabellings whose |statistic| reaches the observed one, relabellings)."""
    bound = abs(observed) * (1 - _TIE) - _TIE
    hits = total = 0
    for s in stats:
        total += 1
        hits += abs(s) >= bound
    return hits, total


def sign_flip_test(diffs: Sequence[float]) -> float:
    """Exact two-sided p of the paired sign-flip (randomization) test on the mean of ``diffs``.

    Under H0 each unit's difference is symmetric about 0; every one of the 2^n sign patterns is equally likely.
    Smallest attainable p: 2 / 2^n (0.125 with 4 pairs, 0.0625 with 5, 0.031 with 6). Seeded Monte Carlo past
    2^n > EXACT_LIMIT.
    """
    d = [float(x) for x in diffs]
    n = len(d)
    if n == 0:
        return 1.0
    observed = sum(d)
    if 2**n <= EXACT_LIMIT:
        stats = (sum(s * x for s, x in zip(signs, d)) for signs in itertools.product((1, -1), repeat=n))
        hits, total = _two_sided_count(stats, observed)
        return hits / total
    rng = random.Random(0)
    stats = (sum(x if rng.random() < 0.5 else -x for x in d) for _ in range(MC_DRAWS))
    hits, total = _two_sided_count(stats, observed)
    return (hits + 1) / (total + 1)


def permutation_test(a: Sequence[float], b: Sequence[float]) -> float:
    """Exact two-sided p of the two-sample permutation test on mean(a) - mean(b).

    Under H0 (the label does not matter) every split of the pooled units into groups of len(a) and len(b) is equally
    likely. Smallest attainable p: 2 / C(n_a + n_b, n_a) (0.029 with 4 + 4). When runs of the two groups share a
    warm start pairwise (positively correlated pairs), the test is conservative. Seeded Monte Carlo past EXACT_LIMIT.
    """
    xa, xb = [float(x) for x in a], [float(x) for x in b]
    pooled = xa + xb
    na, n = len(xa), len(pooled)
    if na == 0 or na == n:
        return 1.0
    total_sum = sum(pooled)

    def stat(group_sum: float) -> float:
        return group_sum / na - (total_sum - group_sum) / (n - na)

    observed = stat(sum(xa))
    if math.comb(n, na) <= EXACT_LIMIT:
        stats = (stat(sum(pooled[i] for i in idx)) for idx in itertools.combinations(range(n), na))
        hits, total = _two_sided_count(stats, observed)
        return hits / total
    rng = random.Random(0)
    stats = (stat(sum(rng.sample(pooled, na))) for _ in range(MC_DRAWS))
    hits, total = _two_sided_count(stats, observed)
    return (hits + 1) / (total + 1)


def fisher_exact(k1: int, n1: int, k2: int, n2: int) -> float:
    """Two-sided p of Fisher's exact test for k1/n1 vs k2/n2 (sum of tables no more likely than the observed)."""
    if not (0 <= k1 <= n1 and 0 <= k2 <= n2):
        raise ValueError(f"counts out of range: {k1}/{n1}, {k2}/{n2}")
    k, n = k1 + k2, n1 + n2

    def prob(x: int) -> float:
        return math.comb(n1, x) * math.comb(n2, k - x) / math.comb(n, k)

    observed = prob(k1)
    lo, hi = max(0, k - n2), min(k, n1)
    return min(1.0, sum(p for p in (prob(x) for x in range(lo, hi + 1)) if p <= observed * (1 + 1e-9)))


def clopper_pearson(k: int, n: int, level: float = 1 - ALPHA) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval for a binomial proportion k/n."""
    if not 0 <= k <= n or n <= 0:
        raise ValueError(f"need 0 <= k <= n and n > 0, got k={k}, n={n}")
    a = (1 - level) / 2
    lo = 0.0 if k == 0 else beta_quantile(a, k, n - k + 1)
    hi = 1.0 if k == n else beta_quantile(1 - a, k + 1, n - k)
    return lo, hi


def min_p_sign_flip(n: int) -> float:
    """Smallest two-sided p a sign-flip test on n pairs can give."""
    return min(1.0, 2.0 / 2**n)


def min_p_permutation(n_a: int, n_b: int) -> float:
    """Smallest two-sided p a two-sample permutation test can give."""
    return min(1.0, 2.0 / math.comb(n_a + n_b, n_a))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error control), in the input order.

    p_(i) sorted ascending: adjusted_(i) = max_{j <= i} min(1, (m - j + 1) p_(j)).
    """
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    out = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out


# ----------------------------------------------------------------------------------------------- one result row


@dataclass(frozen=True)
class Result:
    """One tested comparison, with the fields every claim prints (testbed claims.py, `varpo lab claim`, the demo).

    ``estimate`` ± ``se`` (95 % interval ``low``..``high``) over ``n`` units; ``test`` names the test and ``p`` its
    two-sided p; ``p_holm`` the Holm-adjusted p within the claim's family (``family`` metrics); ``mde`` the minimum
    detectable effect at 80 % power; ``established`` = p_holm < ALPHA.
    """

    metric: str
    estimate: float
    se: float
    low: float
    high: float
    n: int
    test: str
    p: float
    p_holm: float = math.nan
    family: int = 1
    mde: float = math.nan
    established: bool = False

    FIELDS = ("metric", "estimate", "se", "95% CI", "n", "test", "p", "p_holm", "family", "MDE", "verdict")

    def verdict(self) -> str:
        if self.established:
            return "established (+)" if self.estimate > 0 else "established (-)"
        return f"not established (MDE {self.mde:.3f})" if math.isfinite(self.mde) else "not established"

    def cells(self) -> list[str]:
        return [
            self.metric,
            f"{self.estimate:+.3f}",
            f"{self.se:.3f}",
            f"[{self.low:+.3f}, {self.high:+.3f}]",
            str(self.n),
            self.test,
            f"{self.p:.3g}",
            f"{self.p_holm:.3g}",
            str(self.family),
            f"{self.mde:.3f}",
            self.verdict(),
        ]

    def to_dict(self) -> dict:
        return {**asdict(self), "verdict": self.verdict()}


def paired(metric: str, diffs: Sequence[float], within_se: Sequence[float] | None = None) -> Result:
    """Paired differences over units: mean ± `unit_se`, t interval, exact sign-flip p, MDE (t with n-1 df)."""
    d = [float(x) for x in diffs]
    n = len(d)
    mean = statistics.fmean(d) if d else math.nan
    se = unit_se(d, within_se)
    q = t_quantile(1 - ALPHA / 2, n - 1) if n > 1 else math.inf
    return Result(metric, mean, se, mean - q * se, mean + q * se, n, "sign-flip (exact)", sign_flip_test(d),
                  mde=mde(se, n - 1 if n > 1 else None))  # fmt: skip


def two_sample(
    metric: str,
    a: Sequence[float],
    b: Sequence[float],
    a_within_se: Sequence[float] | None = None,
    b_within_se: Sequence[float] | None = None,
) -> Result:
    """mean(a) - mean(b) over independent units: s.e. from `unit_se` per group, Welch-style df, exact permutation p."""
    xa, xb = [float(x) for x in a], [float(x) for x in b]
    sa, sb = unit_se(xa, a_within_se), unit_se(xb, b_within_se)
    est = statistics.fmean(xa) - statistics.fmean(xb)
    se = math.hypot(sa, sb)
    df = max(len(xa) + len(xb) - 2, 1)
    q = t_quantile(1 - ALPHA / 2, df)
    return Result(metric, est, se, est - q * se, est + q * se, len(xa) + len(xb), "permutation (exact)",
                  permutation_test(xa, xb), mde=mde(se, df))  # fmt: skip


def holm_family(results: Sequence[Result]) -> list[Result]:
    """The claim's family: Holm-adjust every result's p over all of them and set ``established``."""
    adjusted = holm([r.p for r in results])
    return [
        replace(r, p_holm=q, family=len(results), established=bool(q < ALPHA and math.isfinite(r.estimate)))
        for r, q in zip(results, adjusted, strict=True)
    ]


def table(results: Sequence[Result]) -> str:
    """The results as a Markdown table with the standard fields."""
    lines = ["| " + " | ".join(Result.FIELDS) + " |", "|" + "---|" * len(Result.FIELDS)]
    lines += ["| " + " | ".join(r.cells()) + " |" for r in results]
    return "\n".join(lines)
