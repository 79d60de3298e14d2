"""Seed groups of a sweep: the jobs that differ only by `seed` are one configuration, summarised by n, mean,
sample std and a 95% Student-t confidence interval of each metric; Welch's t-test says which configurations
cannot be told apart from the best one."""
from __future__ import annotations

import math
import statistics

CONFIDENCE = 0.95
ALPHA = 0.05  # Welch's t-test: p >= ALPHA means "cannot be told apart from the best"
NO_CONFIDENCE = ("One run per configuration: no confidence interval or test can be given. Sweep seeds as well "
                 "(seeds=3, or seed=1,2,3) to get them.")


def is_seed(override: str) -> bool:
    return override.lstrip("+~").split("=", 1)[0] == "seed"


def configuration(job: dict, varying: set[str]) -> str:
    """The overrides that tell the job's configuration from the others', its seed left out."""
    return " ".join(o for o in job["overrides"] if o in varying and not is_seed(o))


def group(jobs: list[dict], varying: set[str]) -> dict[str, list[dict]]:
    """{configuration: its jobs}, in the order the configurations first appear."""
    groups: dict[str, list[dict]] = {}
    for job in jobs:
        groups.setdefault(configuration(job, varying), []).append(job)
    return groups


def describe(values: list[float]) -> dict:
    """n, mean, sample std (n-1) and the 95% t interval mean +- t(0.975, n-1) * std / sqrt(n); None where
    n is too small (no std for one value, no interval without a std)."""
    from scipy import stats

    n = len(values)
    mean = statistics.fmean(values) if n else None
    std = statistics.stdev(values) if n >= 2 else None
    half = stats.t.ppf((1 + CONFIDENCE) / 2, n - 1) * std / math.sqrt(n) if std is not None else None
    return {"n": n, "mean": mean, "std": std, "ci_low": None if half is None else mean - half,
            "ci_high": None if half is None else mean + half}


def welch_p(a: list[float], b: list[float]) -> float | None:
    """Two-sided p-value of Welch's t-test (unequal variances); None with fewer than 2 values on a side."""
    if len(a) < 2 or len(b) < 2:
        return None
    if statistics.stdev(a) == statistics.stdev(b) == 0:  # the test is undefined: identical runs per side
        return 1.0 if statistics.fmean(a) == statistics.fmean(b) else 0.0
    from scipy import stats

    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def verdict(p: float | None) -> str:
    """tied: cannot be told apart from the best at ALPHA; untested: fewer than 2 runs on a side."""
    return "untested (n < 2)" if p is None else "tied" if p >= ALPHA else "worse"
