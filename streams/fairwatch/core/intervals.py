"""Intervals for an error rate: fixed-sample binomial intervals and an anytime-valid confidence sequence.

Every function takes numpy arrays (or scalars) of error counts ``errors`` and comparison counts
``n`` and is vectorized over them. Counts may be non-integer: the weighted (Horvitz-Thompson)
estimates enter as *effective counts* (:func:`effective_counts`). With ``n = 0`` every interval is
``[0, 1]``: nothing is known.

References
----------
[^1]: Clopper, C. J. and Pearson, E. S. (1934). The use of confidence or fiducial limits
    illustrated in the case of the binomial. Biometrika, 26(4), 404-413.
[^2]: Brown, L. D., Cai, T. T. and DasGupta, A. (2001). Interval estimation for a binomial
    proportion. Statistical Science, 16(2), 101-133.
[^3]: Kish, L. (1965). Survey Sampling. Wiley (effective sample size of a weighted mean).
[^4]: Korn, E. L. and Graubard, B. I. (1998). Confidence intervals for proportions with small
    expected number of positive counts estimated from survey data. Survey Methodology, 24, 193-201.
[^5]: Parker, J. D. et al. (2017). National Center for Health Statistics data presentation
    standards for proportions. Vital Health Stat 2(175) (effective sample size capped at n).
[^6]: Howard, S. R., Ramdas, A., McAuliffe, J. and Sekhon, J. (2021). Time-uniform, nonparametric,
    nonasymptotic confidence sequences. Annals of Statistics, 49(2), 1055-1080 (conjugate mixtures,
    Ville's inequality).
[^7]: Krichevsky, R. and Trofimov, V. (1981). The performance of universal encoding. IEEE
    Transactions on Information Theory, 27(2), 199-207 (the Beta(1/2, 1/2) mixture).
"""

from __future__ import annotations

import numpy as np
from scipy import special, stats

__all__ = ["clopper_pearson", "jeffreys", "INTERVALS", "effective_counts", "BetaBinomialMixture"]


def _counts(errors, n) -> tuple[np.ndarray, np.ndarray]:
    errors, n = np.broadcast_arrays(np.asarray(errors, dtype=float), np.asarray(n, dtype=float))
    if np.any(errors < 0) or np.any(errors > n):
        raise ValueError("need 0 <= errors <= n")
    return errors, n


def _beta_quantile(q: float, a: np.ndarray, b: np.ndarray, valid: np.ndarray, fallback: float) -> np.ndarray:
    # scipy returns nan for a or b <= 0; feed it harmless parameters where the endpoint is fixed
    safe_a, safe_b = np.where(valid, a, 1.0), np.where(valid, b, 1.0)
    return np.where(valid, stats.beta.ppf(q, safe_a, safe_b), fallback)


def clopper_pearson(errors, n, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Exact (Clopper-Pearson) interval: coverage is at least ``confidence`` for every rate.

    Parameters
    ----------
    errors
        Errors observed (false matches or false non-matches).
    n
        Comparisons.
    confidence
        Two-sided level.

    Examples
    --------
    >>> low, high = clopper_pearson(0, 500)
    >>> print(f"{low:.1f} {high:.5f}")
    0.0 0.00735

    With no error the upper bound is ``1 - (alpha/2)**(1/n)``, about 3.69/n at 95%: the two-sided
    form of the rule of three.

    >>> low, high = clopper_pearson([3, 10], [10, 10])
    >>> print(low.round(4), high.round(4))
    [0.0667 0.6915] [0.6525 1.    ]

    References
    ----------
    Clopper and Pearson (1934) [^1].
    """
    errors, n = _counts(errors, n)
    alpha = 1 - confidence
    low = _beta_quantile(alpha / 2, errors, n - errors + 1, errors > 0, 0.0)
    high = _beta_quantile(1 - alpha / 2, errors + 1, n - errors, errors < n, 1.0)
    return low, high


def jeffreys(errors, n, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Jeffreys interval: equal-tailed quantiles of the Beta(errors + 1/2, n - errors + 1/2) posterior.

    Shorter than Clopper-Pearson with coverage close to nominal on average (not at every rate).
    The lower bound is 0 when ``errors == 0`` and the upper bound 1 when ``errors == n``, the
    endpoint fix of Brown, Cai and DasGupta [^2].

    Examples
    --------
    >>> low, high = jeffreys(0, 500)
    >>> print(f"{low:.1f} {high:.5f}")
    0.0 0.00501

    References
    ----------
    Brown, Cai and DasGupta (2001) [^2], section 4.1.2.
    """
    errors, n = _counts(errors, n)
    alpha = 1 - confidence
    a, b = errors + 0.5, n - errors + 0.5
    low = _beta_quantile(alpha / 2, a, b, errors > 0, 0.0)
    high = _beta_quantile(1 - alpha / 2, a, b, errors < n, 1.0)
    return low, high


INTERVALS = {"clopper-pearson": clopper_pearson, "jeffreys": jeffreys}


def effective_counts(n, errors, w, w_err, w2, w2_err) -> tuple[np.ndarray, np.ndarray]:
    """Effective ``(errors, n)`` of a Horvitz-Thompson weighted rate, for the binomial intervals.

    The weighted rate is the ratio estimator ``p = w_err / w``. Following Korn and Graubard [^4],
    a binomial interval is applied to ``n_eff`` trials with ``p * n_eff`` errors, where ``n_eff``
    is the smaller of two effective sample sizes:

    * the design-based ``p (1 - p) / var(p)``, with ``var(p)`` the linearized (with-replacement)
      variance of the ratio estimator,
      ``sum_i w_i^2 (y_i - p)^2 / w^2 = (w2_err (1 - p)^2 + (w2 - w2_err) p^2) / w^2``.
      It sees the weights of the errors, which matters here: reviewers see few non-matches, so
      false non-matches carry large weights and an estimate blind to that overstates the evidence;
    * Kish's ``w^2 / w2`` [^3] (at most ``n``), which depends on the weights alone and so stays
      stable when the few errors happen to carry small weights.

    Taking the smaller never claims more evidence than either (the cap at ``n`` of [^5] follows).
    When ``p`` is 0 or 1 the variance estimate is 0 and Kish's ``n_eff`` is used alone. When every
    weight is 1 the counts are returned unchanged, so weighted and unweighted intervals agree
    exactly.

    Caveat: with no error observed, the weight an error *would* carry is unknown; if errors are
    sampled with lower inclusion probability than non-errors, no interval from these sums can
    be exact.

    Parameters
    ----------
    n, errors, w, w_err, w2, w2_err
        The six sums of one population (:mod:`fairwatch.core.layout`).

    Examples
    --------
    Unit weights change nothing:

    >>> effective_counts(100, 7, 100, 7, 100, 7)
    (array(7.), array(100.))

    Ten errors with weight 10 among 990 non-errors with weight 1: the rate is 100 / 1090, and
    the ten errors carry about as much evidence as 119 unweighted comparisons would:

    >>> x_eff, n_eff = effective_counts(1000, 10, 1090, 100, 1990, 1000)
    >>> print(f"{x_eff / n_eff:.4f} {n_eff:.1f}")
    0.0917 118.8

    References
    ----------
    Kish (1965) [^3]; Korn and Graubard (1998) [^4]; Parker et al. (2017) [^5].
    """
    n, errors, w, w_err, w2, w2_err = (np.asarray(v, dtype=float) for v in (n, errors, w, w_err, w2, w2_err))
    with np.errstate(divide="ignore", invalid="ignore"):
        p = w_err / w
        kish = w * w / w2
        variance = (w2_err * (1 - p) ** 2 + (w2 - w2_err) * p**2) / (w * w)
        design = p * (1 - p) / variance
        n_eff = np.where((p > 0) & (p < 1), np.minimum(design, kish), kish)
        n_eff = np.where(n > 0, n_eff, 0.0)
        errors_eff = np.where(n > 0, p * n_eff, 0.0)
    # weights are 1 / inclusion_prob >= 1, so these sums equal n only when every weight is 1
    unit = (w == n) & (w2 == n)
    return np.where(unit, errors, errors_eff), np.where(unit, n, n_eff)


class BetaBinomialMixture:
    """Anytime-valid inference on a Bernoulli error rate from running counts ``(errors, n)``.

    For a candidate rate ``p``, the mixture likelihood ratio

    ``M_n(p) = B(a + x, b + n - x) / B(a, b) / (p^x (1 - p)^(n - x))``

    (``x`` errors in ``n`` comparisons, prior ``Beta(a, b)`` over the alternative rates) is a
    nonnegative martingale with ``M_0 = 1`` when ``p`` is the true rate. By Ville's inequality
    ``P(sup_n M_n(p) >= 1/alpha) <= alpha``, so

    * ``{p : M_n(p) < 1/alpha}`` is a confidence sequence: it contains the true rate at *every*
      ``n`` simultaneously with probability at least ``1 - alpha``, however often it is looked
      at, and so does the running intersection of the intervals;
    * ``M_n(p0)`` is an e-value for ``H0: p = p0``; mixing only over rates above (below) ``p0``
      gives an e-process for ``H0: p <= p0`` (``p >= p0``), since each such likelihood ratio is a
      supermartingale under every rate of the null. Reject when it reaches ``1/alpha``.

    The default prior Beta(1/2, 1/2) (Krichevsky-Trofimov [^7]) costs about ``0.5 log n`` nats
    over the best fixed rate whatever the rate, so it needs no tuning for rates from 1e-6 to 0.5.
    The guarantee is exact for unweighted comparisons that are independent given the rate; fed
    weighted effective counts (:func:`effective_counts`) it is an approximation.

    Parameters
    ----------
    prior_a, prior_b
        Parameters of the Beta mixing distribution.

    Examples
    --------
    >>> cs = BetaBinomialMixture()
    >>> low, high = cs.interval(0, 500)
    >>> print(f"{low:.1f} {high:.4f}")
    0.0 0.0133

    Wider than the fixed-sample Clopper-Pearson bound 0.00735: the price of looking after every
    comparison. After 12 false matches in 20,000 comparisons, is the FMR above 1e-4?

    >>> e = np.exp(cs.log_e_value(12, 20_000, 1e-4, alternative="greater"))
    >>> print(f"{e:.0f}", e >= 1 / 0.05)
    561 True

    References
    ----------
    Howard, Ramdas, McAuliffe and Sekhon (2021) [^6]; Krichevsky and Trofimov (1981) [^7].
    """

    ALTERNATIVES = ("two-sided", "greater", "less")

    def __init__(self, prior_a: float = 0.5, prior_b: float = 0.5) -> None:
        if prior_a <= 0 or prior_b <= 0:
            raise ValueError("prior parameters must be positive")
        self.prior_a = prior_a
        self.prior_b = prior_b

    def _log_mixture(self, errors: np.ndarray, n: np.ndarray) -> np.ndarray:
        a, b = self.prior_a, self.prior_b
        return special.betaln(a + errors, b + n - errors) - special.betaln(a, b)

    @staticmethod
    def _log_likelihood(errors, n, p) -> np.ndarray:
        return special.xlogy(errors, p) + special.xlog1py(n - errors, -p)

    def log_e_value(self, errors, n, p0, alternative: str = "two-sided") -> np.ndarray:
        """Log of the mixture martingale against the null rate ``p0``.

        ``alternative`` is ``"two-sided"`` (``H0: p = p0``), ``"greater"`` (``H0: p <= p0``, e.g.
        "the FMR is within target") or ``"less"`` (``H0: p >= p0``, to certify a rate below
        ``p0``). For the one-sided nulls the prior is truncated to the alternative side.
        """
        if alternative not in self.ALTERNATIVES:
            raise ValueError(f"alternative must be one of {self.ALTERNATIVES}, got {alternative!r}")
        errors, n = _counts(errors, n)
        p0 = np.asarray(p0, dtype=float)
        log_m = self._log_mixture(errors, n) - self._log_likelihood(errors, n, p0)
        if alternative == "two-sided":
            return log_m
        a, b = self.prior_a, self.prior_b

        def mass(a_: np.ndarray, b_: np.ndarray) -> np.ndarray:
            # Beta(a_, b_) mass on the alternative side; above p0 it is the lower tail of the
            # mirrored Beta, since betaincc is ten times slower than betainc
            return special.betainc(b_, a_, 1 - p0) if alternative == "greater" else special.betainc(a_, b_, p0)

        # the posterior over the prior mass of the alternative side renormalizes the truncated prior
        with np.errstate(divide="ignore"):
            return log_m + np.log(mass(a + errors, b + n - errors)) - np.log(mass(a, b))

    def interval(self, errors, n, confidence: float = 0.95, iterations: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """Bounds of ``{p : M_n(p) < 1 / (1 - confidence)}``, valid uniformly over ``n``.

        ``log M_n(p)`` is convex in ``p`` with its minimum (at most 0) at ``errors / n``, so the set
        is an interval around the observed rate; each end is found by bisection and rounded
        outwards.
        """
        errors, n = _counts(errors, n)
        # p is inside while the log likelihood exceeds this level
        level = self._log_mixture(errors, n) - np.log(1 / (1 - confidence))
        with np.errstate(invalid="ignore"):
            center = np.where(n > 0, errors / n, 0.5)

        def bisect(inside_end: np.ndarray, outside_end: np.ndarray) -> np.ndarray:
            inside, outside = inside_end.copy(), outside_end.copy()
            for _ in range(iterations):
                middle = (inside + outside) / 2
                is_inside = self._log_likelihood(errors, n, middle) > level
                inside = np.where(is_inside, middle, inside)
                outside = np.where(is_inside, outside, middle)
            return outside

        zeros, ones = np.zeros_like(center), np.ones_like(center)
        low = np.where(self._log_likelihood(errors, n, zeros) > level, 0.0, bisect(center, zeros))
        high = np.where(self._log_likelihood(errors, n, ones) > level, 1.0, bisect(center, ones))
        return low, high


VARIES = -1.0  # stratum_inclusion's answer when a stratum's records had different probabilities


def stratum_inclusion(n, w, w2) -> np.ndarray:
    """Inclusion probability of a verification stratum from its records' count and weight sums.

    ``sum(1/pi) / sum(1/pi^2)`` is ``pi`` when every one of the ``n`` records had the same inclusion
    probability (the two-phase design), which holds exactly when ``(sum 1/pi)^2 = n sum 1/pi^2``
    (Cauchy-Schwarz); otherwise :data:`VARIES`. NaN when the stratum has no verified record.

    >>> float(stratum_inclusion(4, 40.0, 400.0))  # 4 records verified with probability 0.1
    0.1
    >>> float(stratum_inclusion(2, 11.0, 101.0))  # one verified with probability 1, one with 0.1
    -1.0
    """
    n, w, w2 = (np.asarray(v, float) for v in (n, w, w2))
    with np.errstate(divide="ignore", invalid="ignore"):
        pi = np.clip(w / w2, 1e-12, 1.0)
        constant = np.abs(w * w - n * w2) <= 1e-9 * np.maximum(w * w, 1e-300)
    return np.where((n > 0) & (w2 > 0), np.where(constant, pi, VARIES), np.nan)


def verified_share_to_rate(share, error_inclusion, correct_inclusion) -> np.ndarray:
    """The error rate of a population from the error share among its *verified* members.

    An error of the population is verified with probability ``error_inclusion``, a correct
    decision with ``correct_inclusion`` (its decision's stratum), so among verified members the
    error share is ``q = p pe / (p pe + (1 - p) pc)``; this inverts it,
    ``p = q pc / (q pc + (1 - q) pe)``. The map is increasing in ``q``, so an interval for ``q``
    (exact: the verified members are a binomial sample given the design) maps to one for ``p``
    with the same coverage. With equal inclusion probabilities it is the identity.

    >>> # no false non-match among verified genuine comparisons: the bound 0.0007 on the share
    >>> # is 10x larger on the rate when non-matches are verified with probability 0.1
    >>> round(float(verified_share_to_rate(0.0007, 0.1, 1.0)), 5)
    0.00696
    """
    share = np.asarray(share, float)
    pe, pc = np.asarray(error_inclusion, float), np.asarray(correct_inclusion, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        mapped = share * pc / (share * pc + (1 - share) * pe)
    return np.where(pe == pc, share, np.where(share >= 1, 1.0, mapped))

