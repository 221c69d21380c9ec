"""Independent oracles the tests and benchmarks compare fairwatch against."""

from __future__ import annotations

import itertools
from collections import defaultdict
import json
import math

import jsonschema
import numpy as np
from referencing import Registry, Resource
from scipy import stats

from fairwatch.testing.stack import REPO


def alert_validator() -> jsonschema.Draft202012Validator:
    return contract_validator("alert")


def contract_validator(name: str) -> jsonschema.Draft202012Validator:
    """The JSON Schema of ``schemas/<name>.schema.json`` (its references to common.schema.json resolved)."""
    schemas = {n: json.loads((REPO / "schemas" / n).read_text()) for n in (f"{name}.schema.json", "common.schema.json")}
    registry = Registry().with_resources([(s["$id"], Resource.from_contents(s)) for s in schemas.values()])
    return jsonschema.Draft202012Validator(schemas[f"{name}.schema.json"], registry=registry,
                                           format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def expected_rate(spec: dict, attributes: dict, group: tuple[str, str], boost: dict[tuple[str, str], float]) -> float:
    """Proportion-weighted mean of base x factors over the cells of ``group``, cell by cell."""
    names = list(attributes)
    num = den = 0.0
    for labels in itertools.product(*(attributes[a] for a in names)):
        cell = dict(zip(names, labels))
        if group != ("*", "*") and cell[group[0]] != group[1]:
            continue
        weight = math.prod(attributes[a][cell[a]] for a in names)
        rate = spec["base"] * math.prod(spec["factors"].get(a, {}).get(cell[a], 1.0) for a in names)
        rate *= math.prod(f for (a, l), f in boost.items() if cell[a] == l)
        num += weight * rate
        den += weight
    return num / den


def two_phase_strata(rng, runs, impostors, fmr, genuine, fnmr, pi):
    """The rows of :func:`two_phase_rows` split by decision: (the verified matches' rows, the
    verified non-matches' rows), float64[runs, 12] each, whose sum is those rows."""
    fm = rng.binomial(impostors, fmr, runs)
    fnm = rng.binomial(genuine, fnmr, runs)
    inm_v = rng.binomial(impostors - fm, pi)  # verified impostor non-matches
    fnm_v = rng.binomial(fnm, pi)  # verified false non-matches
    gm_v = genuine - fnm  # genuine matches, all verified
    zero = np.zeros(np.shape(fm))
    matches = np.stack([fm, fm, fm, fm, fm, fm, gm_v, zero, gm_v, zero, gm_v, zero], axis=1).astype(float)
    non_matches = np.stack([inm_v, zero, inm_v / pi, zero, inm_v / pi**2, zero,
                            fnm_v, fnm_v, fnm_v / pi, fnm_v / pi, fnm_v / pi**2, fnm_v / pi**2], axis=1)
    return matches, non_matches


def two_phase_rows(rng, runs, impostors, fmr, genuine, fnmr, pi):
    """``runs`` counts rows (float64[runs, 12]) of one group under a two-phase design, drawn with
    numpy: true FMR / FNMR, every match verified, each non-match verified with probability ``pi``."""
    matches, non_matches = two_phase_strata(rng, runs, impostors, fmr, genuine, fnmr, pi)
    return matches + non_matches


def noisy_review_rows(rng, runs, impostors, fmr, genuine, fnmr, pi, error, review_share):
    """``runs`` counts rows (float64[runs, 12]) of one group whose reviewers are wrong with
    probability ``error`` (either way), drawn with numpy: every match verified, each non-match with
    probability ``pi``, and a share ``review_share`` of the verified events of each stratum reviewed
    again independently. Returns the rows and, per stratum (matches, non-matches), the double-reviewed
    pairs and their disagreements (int[runs] each)."""
    fm = rng.binomial(impostors, fmr, runs)
    fnm = rng.binomial(genuine, fnmr, runs)
    matches_imp, matches_gen = fm, genuine - fnm  # true impostor / genuine among the matches
    non_imp = rng.binomial(impostors - fm, pi)  # verified non-matches, by truth
    non_gen = rng.binomial(fnm, pi)
    # labels: each verified event flips with probability `error`
    flip = lambda n: rng.binomial(n, error)  # noqa: E731
    m_imp_as_gen, m_gen_as_imp = flip(matches_imp), flip(matches_gen)
    n_imp_as_gen, n_gen_as_imp = flip(non_imp), flip(non_gen)
    a = matches_imp - m_imp_as_gen + m_gen_as_imp  # matches labelled impostor
    c = matches_imp + matches_gen - a  # matches labelled genuine
    b = non_imp - n_imp_as_gen + n_gen_as_imp  # non-matches labelled impostor
    f = non_imp + non_gen - b  # non-matches labelled genuine
    rows = np.zeros((runs, 12))
    rows[:, :6] = np.stack([a + b, a, a + b / pi, a, a + b / pi**2, a], axis=1)
    rows[:, 6:] = np.stack([c + f, f, c + f / pi, f / pi, c + f / pi**2, f / pi**2], axis=1)
    reviews = []
    for verified in (matches_imp + matches_gen, non_imp + non_gen):
        pairs = rng.binomial(verified, review_share)
        # two independent verdicts disagree with probability 2 e (1 - e), whatever the truth
        reviews.append((pairs, rng.binomial(pairs, 2 * error * (1 - error))))
    return rows, reviews


# ---- score curves: a brute-force sweep over (score, weight) records ------------------------------


def sweep_sums(records: list[tuple[float, float]], t: float, errors_above: bool) -> tuple[float, ...]:
    """(n, errors, w, w_err, w2, w2_err) of (score, weight) records at threshold t, by a loop: the
    errors are the records with score >= t (``errors_above``, false matches) or score < t."""
    n = errors = w = w_err = w2 = w2_err = 0.0
    for score, weight in records:
        error = score >= t if errors_above else score < t
        n += 1
        w += weight
        w2 += weight * weight
        if error:
            errors += 1
            w_err += weight
            w2_err += weight * weight
    return n, errors, w, w_err, w2, w2_err


def sweep_interval(sums: tuple[float, ...], confidence: float = 0.95) -> tuple[float, float, float]:
    """Rate and Clopper-Pearson bounds on the effective counts (Korn-Graubard: the smaller of the
    design-based and Kish's effective sizes; the counts themselves when every weight is 1)."""
    n, errors, w, w_err, w2, w2_err = sums
    if n == 0:
        return math.nan, 0.0, 1.0
    p = w_err / w
    if w == n and w2 == n:
        x, m = errors, n
    else:
        kish = w * w / w2
        if 0 < p < 1:
            variance = (w2_err * (1 - p) ** 2 + (w2 - w2_err) * p * p) / (w * w)
            m = min(p * (1 - p) / variance, kish)
        else:
            m = kish
        x = p * m
    alpha = 1 - confidence
    low = 0.0 if x <= 0 else stats.beta.ppf(alpha / 2, x, m - x + 1)
    high = 1.0 if x >= m else stats.beta.ppf(1 - alpha / 2, x + 1, m - x)
    return p, float(low), float(high)


def sweep_threshold(candidates: list[float], impostors, genuine, target: float, confidence: float = 0.95) -> dict:
    """The threshold for an intended FMR (fairwatch.core.score_curves) by trying every candidate in
    turn: ``impostors`` and ``genuine`` (None: unknown) are (score, weight) records."""
    at = {t: sweep_interval(sweep_sums(impostors, t, True), confidence) for t in candidates}
    point = next((t for t in candidates if at[t][0] <= target), None)
    low = next((t for t in candidates if at[t][1] <= target), None)
    high = next((t for i, t in enumerate(candidates) if all(at[u][2] <= target for u in candidates[i:])), None)
    if high is None:
        return {"status": "too_little_evidence"}
    found = {"status": "found", "threshold": point, "low": low, "high": high, "fmr": at[point][0],
             "fmr_low": at[point][1], "fmr_high": at[point][2]}
    if genuine is not None:
        found.update(fnmr=sweep_interval(sweep_sums(genuine, point, False), confidence)[0],
                     fnmr_low=sweep_interval(sweep_sums(genuine, low, False), confidence)[1],
                     fnmr_high=sweep_interval(sweep_sums(genuine, high, False), confidence)[2])
    return found


def final_verdicts(outcome_lines) -> dict[str, dict]:
    """event_id -> the verdict that counts, from outcome JSON lines (bytes or str): the primary
    verdict of the highest revision (independent reviews never count), first delivered on a tie."""
    latest: dict[str, dict] = {}
    for line in outcome_lines:
        o = json.loads(line)
        if o.get("review", "primary") == "primary" and (
                o["event_id"] not in latest or o["revision"] > latest[o["event_id"]]["revision"]):
            latest[o["event_id"]] = o
    return latest


def verified_error(event: dict, verdict: dict) -> bool:
    """Whether a verified comparison (raw event and verdict dicts) is an error: a match of an
    impostor; a non-match of a genuine comparison, where for a search with a candidate list the
    mate counts as found only when the verdict names it at a rank listed at or above the threshold."""
    if verdict["truth"] == "impostor":
        return event["decision"] == "match"
    if "candidates" in event:
        above = sum(c["score"] >= event["threshold"] for c in event["candidates"])
        return not (verdict.get("mate_rank") and 1 <= verdict["mate_rank"] <= above)
    return event["decision"] == "non_match"


def group_cells(subject: dict[str, str], intersections=()) -> list[tuple[str, str]]:
    """The (attribute, group) cells a subject is counted in: the overall row, each label, and each
    intersection of attributes the subject carries (joined as the layout joins them)."""
    from fairwatch.core.layout import INTERSECTION_SEP, OVERALL

    cells = [(OVERALL, OVERALL), *subject.items()]
    cells += [(INTERSECTION_SEP.join(c), INTERSECTION_SEP.join(subject[a] for a in c))
              for c in intersections if all(a in subject for a in c)]
    return cells


def cluster_variances(rows: list[tuple[str, bool, float]]) -> tuple[float, float, int, int]:
    """(var with clusters as units, var with comparisons as units, clusters, comparisons); an
    unkeyed comparison is a cluster of its own."""
    w_total = sum(w for _, _, w in rows)
    p = sum(w for _, y, w in rows if y) / w_total
    units: dict = defaultdict(float)
    for i, (cluster, y, w) in enumerate(rows):
        units[cluster or f"#{i}"] += w * (y - p)
    k, n = len(units), len(rows)
    clustered = k / (k - 1) * sum(u * u for u in units.values()) / w_total**2 if k > 1 else 0.0
    alone = n / (n - 1) * sum((w * (y - p)) ** 2 for _, y, w in rows) / w_total**2 if n > 1 else 0.0
    return clustered, alone, k, n


def clustered_interval(rows, overall_roh: float) -> tuple[float, float, float, float]:
    """(design effect, rate, low, high) of one population's ``(cluster, error, weight)`` rows, by hand as
    fairwatch.core.clusters' docstring says (95% Clopper-Pearson on the effective counts)."""
    clustered, alone, k, n = cluster_variances(rows)
    own = clustered / alone if alone > 0 and k > 1 and k < n else 1.0
    synthetic = 1 + (n / k - 1) * overall_roh if k < n else 1.0
    deff = max(own, synthetic, 1.0)
    w = sum(r[2] for r in rows)
    w_err = sum(r[2] for r in rows if r[1])
    w2 = sum(r[2] ** 2 for r in rows)
    w2_err = sum(r[2] ** 2 for r in rows if r[1])
    p = w_err / w
    kish = w * w / w2
    m = min(p * (1 - p) / ((w2_err * (1 - p) ** 2 + (w2 - w2_err) * p * p) / (w * w)), kish) if 0 < p < 1 else kish
    if w == n and w2 == n:
        m = n
    if deff > 1:
        q = stats.t.ppf(0.975, n - 1) / stats.t.ppf(0.975, max(k - 1, 1))
        m = m / (deff / q**2)
    x = p * m
    low = 0.0 if x <= 0 else stats.beta.ppf(0.025, x, m - x + 1)
    high = 1.0 if x >= m else stats.beta.ppf(0.975, x + 1, m - x)
    return deff, p, low, high


def cluster_roh(rows) -> float:
    clustered, alone, k, n = cluster_variances(rows)
    if not (alone > 0 and 1 < k < n):
        return 0.0
    return max((clustered / alone - 1) / (n / k - 1), 0.0)


def attempts_by_group(lines, intersections=()) -> dict[tuple[str, str], list[tuple[str, bool, str]]]:
    """(attribute, group) -> [(cluster_id or "", failed, outcome)] of acquisition attempt lines, by a loop."""
    out = defaultdict(list)
    for line in lines:
        a = json.loads(line)
        for cell in group_cells(a.get("subject", {}), intersections):
            out[cell].append((a.get("cluster_id", ""), a["outcome"] != "acquired", a["outcome"]))
    return out


def capped_beta_fta(m: float, rho: float, cap: int) -> float:
    """The true attempt-level FTA of encounters that try at most ``cap`` times until a face is
    acquired, each try failing with the encounter's ``p`` ~ Beta(mean ``m``, correlation ``rho``):
    ``E[F] / E[F + 1]`` with ``E[F | p] = p / (1 - p) - cap p^cap / (1 - p^cap)`` (the truncated
    geometric's mean in closed form) integrated against the Beta's density; the simulator sums
    ``f p^f`` over the Beta's quantiles instead (:func:`fairwatch.sim.acquisitions.true_fta`)."""
    from scipy import integrate

    def failures(p: float) -> float:
        if p <= 0:
            return 0.0
        if 1 - p < 1e-9:  # the limit at p = 1: F uniform on 0..cap-1
            return (cap - 1) / 2
        return p / (1 - p) - cap * p**cap / (1 - p**cap)

    if rho <= 0:
        f = failures(m)
    else:
        a, b = m * (1 - rho) / rho, (1 - m) * (1 - rho) / rho
        f = sum(integrate.quad(lambda p: failures(p) * stats.beta.pdf(p, a, b), lo, hi, limit=500)[0]
                for lo, hi in ((0.0, 0.5), (0.5, 1.0)))
    return f / (1 + f)
