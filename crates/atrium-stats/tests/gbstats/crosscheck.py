#!/usr/bin/env python3
"""Cross-check atrium-stats against GrowthBook's gbstats.

    crosscheck.py cases    --out cases.json                     # deterministic inputs (seeded)
    crosscheck.py expected --cases cases.json --out expected.json

`expected` runs every case through gbstats' low-level classes (the ones its runner uses) and
re-applies the runner's post-processing of `expected`, so the output matches
`atrium_stats::analyze`. Pinned to gbstats==0.8.0 (PyPI); see README.md.

Inputs use the JSON shape of atrium-stats' serde types. Non-finite numbers are written as the
strings "inf", "-inf" and "nan".
"""

import argparse
import importlib.metadata
import json
import math
import random
import sys

GBSTATS_VERSION = "0.8.0"
SEED = 20260801


# --------------------------------------------------------------------------------------------
# Case generation (stdlib `random` only, so the inputs do not depend on numpy's generator)
# --------------------------------------------------------------------------------------------


def sums_sample_mean(values):
    return {
        "type": "sample_mean",
        "n": len(values),
        "sum": float(sum(values)),
        "sum_squares": float(sum(v * v for v in values)),
    }


def sums_proportion(values):
    return {"type": "proportion", "n": len(values), "sum": float(sum(values))}


def draw_arm(rng, kind, n, lift):
    """Unit-level data for one arm, reduced to sufficient statistics."""
    if kind == "sample_mean":
        scale = rng.choice([1.0, 10.0, 250.0])
        values = [max(0.0, rng.gauss(scale * (1 + lift), scale * 0.8)) for _ in range(n)]
        return sums_sample_mean(values)
    if kind == "proportion":
        p = min(0.95, rng.uniform(0.05, 0.6) * (1 + lift))
        return sums_proportion([1.0 if rng.random() < p else 0.0 for _ in range(n)])
    if kind == "ratio":
        denominators = [float(rng.randint(1, 6)) for _ in range(n)]
        numerators = [max(0.0, d * rng.gauss(2.0 * (1 + lift), 1.5)) for d in denominators]
        return {
            "type": "ratio",
            "n": n,
            "numerator": sums_sample_mean(numerators),
            "denominator": sums_sample_mean(denominators),
            "m_d_sum_of_products": float(sum(m * d for m, d in zip(numerators, denominators))),
        }
    if kind in ("cuped_mean", "cuped_binomial"):
        pre = [max(0.0, rng.gauss(5.0, 2.0)) for _ in range(n)]
        if kind == "cuped_mean":
            post = [max(0.0, 0.8 * x + rng.gauss(1.0 + lift * 5.0, 1.0)) for x in pre]
            post_sums = sums_sample_mean(post)
        else:
            post = [1.0 if rng.random() < min(0.95, 0.04 * x * (1 + lift)) else 0.0 for x in pre]
            post_sums = sums_proportion(post)
        return {
            "type": "regression_adjusted",
            "n": n,
            "post": post_sums,
            "pre": sums_sample_mean(pre),
            "post_pre_sum_of_products": float(sum(a * b for a, b in zip(post, pre))),
        }
    raise ValueError(kind)


ENGINE_CONFIGS = [
    ("freq_two_sided_rel", {"engine": {"engine": "frequentist"}, "difference_type": "relative"}),
    ("freq_two_sided_abs", {"engine": {"engine": "frequentist"}, "difference_type": "absolute"}),
    ("freq_scaled", {"engine": {"engine": "frequentist"}, "difference_type": "scaled", "phase_length_days": 7.0}),
    ("freq_greater", {"engine": {"engine": "frequentist", "alternative": "greater"}, "alpha": 0.1}),
    ("freq_less_abs", {"engine": {"engine": "frequentist", "alternative": "less"}, "difference_type": "absolute"}),
    ("freq_test_value", {"engine": {"engine": "frequentist", "test_value": 0.02}}),
    ("sequential_rel", {"engine": {"engine": "frequentist", "sequential_tuning_parameter": 5000.0}}),
    ("sequential_abs", {"engine": {"engine": "frequentist", "sequential_tuning_parameter": 1000.0}, "difference_type": "absolute", "alpha": 0.01}),
    ("bayes_flat_rel", {"engine": {"engine": "bayesian"}}),
    ("bayes_flat_abs", {"engine": {"engine": "bayesian"}, "difference_type": "absolute"}),
    ("bayes_proper_rel", {"engine": {"engine": "bayesian", "prior": {"mean": 0.05, "variance": 0.09, "proper": True}}}),
    ("bayes_proper_abs", {"engine": {"engine": "bayesian", "prior": {"mean": 0.0, "variance": 0.01, "proper": True}}, "difference_type": "absolute"}),
    ("bayes_absolute_prior", {"engine": {"engine": "bayesian", "prior": {"mean": 0.1, "variance": 0.5, "proper": True}, "prior_scale": "absolute"}}),
    ("bayes_inverse", {"engine": {"engine": "bayesian"}, "inverse": True, "alpha": 0.1}),
    ("bayes_scaled", {"engine": {"engine": "bayesian", "prior": {"mean": 0.0, "variance": 0.09, "proper": True}}, "difference_type": "scaled", "phase_length_days": 3.0}),
]

KINDS = ["sample_mean", "proportion", "ratio", "cuped_mean", "cuped_binomial"]


def random_cases(rng):
    cases = []
    for kind in KINDS:
        for config_name, settings in ENGINE_CONFIGS:
            arm_count = rng.choice([2, 2, 3, 4])
            weights = [1.0 / arm_count] * arm_count
            n_base = rng.choice([20, 150, 1200, 4000])
            arms = []
            for arm in range(arm_count):
                n = max(3, int(n_base * weights[arm] * arm_count * rng.uniform(0.9, 1.1)))
                lift = 0.0 if arm == 0 else rng.uniform(-0.1, 0.15)
                arms.append(draw_arm(rng, kind, n, lift))
            case_settings = json.loads(json.dumps(settings))
            case_settings["traffic_weights"] = weights
            cases.append(
                {
                    "name": f"random/{kind}/{config_name}",
                    "control": arms[0],
                    "treatments": arms[1:],
                    "settings": case_settings,
                }
            )
    return cases


def edge_cases(rng):
    freq = {"engine": {"engine": "frequentist"}}
    bayes = {"engine": {"engine": "bayesian"}}
    normal_arm = draw_arm(rng, "sample_mean", 500, 0.05)
    constant = {"type": "sample_mean", "n": 50, "sum": 150.0, "sum_squares": 450.0}
    single = {"type": "sample_mean", "n": 1, "sum": 4.0, "sum_squares": 16.0}
    empty = {"type": "sample_mean", "n": 0, "sum": 0.0, "sum_squares": 0.0}
    zero_mean = {"type": "sample_mean", "n": 40, "sum": 0.0, "sum_squares": 12.0}
    negative_mean = {"type": "sample_mean", "n": 40, "sum": -20.0, "sum_squares": 90.0}
    all_converted = {"type": "proportion", "n": 100, "sum": 100.0}
    some_converted = {"type": "proportion", "n": 100, "sum": 37.0}
    tiny_a = sums_sample_mean([1.0, 3.0])
    tiny_b = sums_sample_mean([2.0, 5.0, 4.0])
    ratio_zero_denominator = {
        "type": "ratio",
        "n": 30,
        "numerator": {"type": "sample_mean", "n": 30, "sum": 0.0, "sum_squares": 0.0},
        "denominator": {"type": "sample_mean", "n": 30, "sum": 0.0, "sum_squares": 0.0},
        "m_d_sum_of_products": 0.0,
    }
    ratio_arm = draw_arm(rng, "ratio", 300, 0.1)
    cuped_a = draw_arm(rng, "cuped_mean", 200, 0.0)
    cuped_b = draw_arm(rng, "cuped_mean", 220, 0.08)

    def constant_pre(arm):
        arm = json.loads(json.dumps(arm))
        n = arm["n"]
        arm["pre"] = {"type": "sample_mean", "n": n, "sum": 2.0 * n, "sum_squares": 4.0 * n}
        arm["post_pre_sum_of_products"] = 2.0 * arm["post"]["sum"]
        return arm

    cases = []

    def add(name, control, treatments, settings, **extra):
        case_settings = json.loads(json.dumps(settings))
        case_settings.update(extra)
        cases.append({"name": f"edge/{name}", "control": control, "treatments": treatments, "settings": case_settings})

    for engine_name, engine in (("freq", freq), ("bayes", bayes)):
        add(f"{engine_name}/zero_variance_control", constant, [normal_arm], engine)
        add(f"{engine_name}/zero_variance_treatment", normal_arm, [constant], engine)
        add(f"{engine_name}/single_unit", normal_arm, [single], engine)
        add(f"{engine_name}/empty_treatment", normal_arm, [empty], engine)
        add(f"{engine_name}/zero_control_mean", zero_mean, [normal_arm], engine)
        add(f"{engine_name}/negative_control_mean", negative_mean, [normal_arm], engine)
        add(f"{engine_name}/negative_control_mean_abs", negative_mean, [normal_arm], engine, difference_type="absolute")
        add(f"{engine_name}/all_converted", all_converted, [some_converted], engine)
        add(f"{engine_name}/tiny_n", tiny_a, [tiny_b], engine)
        add(f"{engine_name}/ratio_zero_denominator", ratio_zero_denominator, [ratio_arm], engine)
        add(f"{engine_name}/cuped_constant_pre", constant_pre(cuped_a), [constant_pre(cuped_b)], engine)
        add(f"{engine_name}/zero_traffic_scaled", normal_arm, [tiny_b, draw_arm(rng, "sample_mean", 450, 0.1)], engine,
            difference_type="scaled", traffic_weights=[0.5, 0.0, 0.5])
        add(f"{engine_name}/five_arms_srm", normal_arm,
            [draw_arm(rng, "sample_mean", n, 0.02 * i) for i, n in enumerate([480, 530, 700, 505])], engine,
            traffic_weights=[0.2, 0.2, 0.2, 0.2, 0.2])
    add("freq/sequential_tiny", tiny_a, [tiny_b], {"engine": {"engine": "frequentist", "sequential_tuning_parameter": 5000.0}})
    add("freq/holm_three_arms", normal_arm,
        [draw_arm(rng, "sample_mean", 500, lift) for lift in (0.0, 0.08, 0.2)], freq, correction="holm-bonferroni")
    add("freq/bh_four_arms", normal_arm,
        [draw_arm(rng, "sample_mean", 500, lift) for lift in (0.01, 0.05, 0.1, 0.3)], freq, correction="benjamini-hochberg")
    add("freq/holm_sequential", normal_arm,
        [draw_arm(rng, "sample_mean", 500, lift) for lift in (0.03, 0.25)],
        {"engine": {"engine": "frequentist", "sequential_tuning_parameter": 2000.0}}, correction="holm-bonferroni")
    add("bayes/inverse_ratio", ratio_arm, [draw_arm(rng, "ratio", 280, -0.05)], bayes, inverse=True)
    add("bayes/inverse_cuped_binomial", draw_arm(rng, "cuped_binomial", 900, 0.0),
        [draw_arm(rng, "cuped_binomial", 880, 0.2), draw_arm(rng, "cuped_binomial", 910, -0.1)], bayes, inverse=True)
    return cases


def correction_cases(rng):
    cases = []
    for size in (1, 2, 3, 5, 8, 20):
        p_values = [rng.choice([rng.random(), rng.random() ** 4]) for _ in range(size)]
        if size >= 3:
            p_values[1] = p_values[0]  # a tie
        cases.append(p_values)
    cases.append([0.0, 1.0, 0.5, 0.5])
    return cases


def srm_cases(rng):
    cases = [
        {"users": [1000, 1100], "weights": [0.5, 0.5]},
        {"users": [0, 0, 0], "weights": [1.0, 1.0, 1.0]},
        {"users": [500, 300, 200], "weights": [0.5, 0.0, 0.5]},
    ]
    for arms in (2, 3, 4, 6):
        weights = [rng.uniform(0.5, 2.0) for _ in range(arms)]
        total = sum(weights)
        users = [int(20000 * w / total * rng.uniform(0.97, 1.03)) for w in weights]
        cases.append({"users": users, "weights": weights})
    return cases


def make_cases():
    rng = random.Random(SEED)
    return {
        "seed": SEED,
        "gbstats_version": GBSTATS_VERSION,
        "analyses": random_cases(rng) + edge_cases(rng),
        "corrections": correction_cases(rng),
        "srm": srm_cases(rng),
    }


# --------------------------------------------------------------------------------------------
# Expected values from gbstats
# --------------------------------------------------------------------------------------------


def finite_or_string(value):
    if isinstance(value, float) or hasattr(value, "dtype"):
        value = float(value)
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    return value


def clean(value):
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    return finite_or_string(value)


def to_base_statistic(data):
    from gbstats.models.statistics import ProportionStatistic, SampleMeanStatistic

    if data["type"] == "sample_mean":
        return SampleMeanStatistic(n=data["n"], sum=data["sum"], sum_squares=data["sum_squares"])
    if data["type"] == "proportion":
        return ProportionStatistic(n=data["n"], sum=data["sum"])
    raise ValueError(data["type"])


def to_statistic(data):
    from gbstats.models.statistics import RatioStatistic, RegressionAdjustedStatistic

    if data["type"] in ("sample_mean", "proportion"):
        return to_base_statistic(data)
    if data["type"] == "ratio":
        return RatioStatistic(
            n=data["n"],
            m_statistic=to_base_statistic(data["numerator"]),
            d_statistic=to_base_statistic(data["denominator"]),
            m_d_sum_of_products=data["m_d_sum_of_products"],
        )
    if data["type"] == "regression_adjusted":
        return RegressionAdjustedStatistic(
            n=data["n"],
            post_statistic=to_base_statistic(data["post"]),
            pre_statistic=to_base_statistic(data["pre"]),
            post_pre_sum_of_products=data["post_pre_sum_of_products"],
            theta=0,
        )
    raise ValueError(data["type"])


def holm_bonferroni(p_values):
    """GrowthBook `adjustPValuesHolmBonferroni` (packages/shared), in original order."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(p_values[index] * (m - rank), 1.0))
        adjusted[index] = running
    return adjusted


def benjamini_hochberg(p_values):
    import scipy.stats

    if not p_values:
        return []
    return [float(x) for x in scipy.stats.false_discovery_control(p_values, method="bh")]


def adjusted_ci(adjusted_p, uplift_mean, ci, alpha):
    """GrowthBook `setAdjustedCIs` / `adjustedCI`."""
    from scipy.stats import norm

    if adjusted_p > 0.999999:
        return [-math.inf, math.inf]
    if not uplift_mean:
        return [uplift_mean, uplift_mean]
    z_score = norm.ppf(1 - alpha / 2)
    adj_stddev = abs(uplift_mean / norm.ppf(1 - adjusted_p / 2))
    width = z_score * adj_stddev
    candidate = [uplift_mean - width, uplift_mean + width]
    if candidate[0] < ci[0] and candidate[1] > ci[1]:
        return candidate
    return list(ci)


def run_pair(control_data, treatment_data, settings, traffic_proportion):
    from gbstats.bayesian.tests import EffectBayesianABTest, EffectBayesianConfig, GaussianPrior
    from gbstats.frequentist.tests import (
        FrequentistConfig,
        OneSidedTreatmentGreaterTTest,
        OneSidedTreatmentLesserTTest,
        SequentialConfig,
        SequentialTwoSidedTTest,
        TwoSidedTTest,
    )

    stat_a = to_statistic(control_data)
    stat_b = to_statistic(treatment_data)
    engine = settings["engine"]
    base = {
        "difference_type": settings.get("difference_type", "relative"),
        "traffic_proportion_b": traffic_proportion,
        "phase_length_days": settings.get("phase_length_days", 1.0),
    }
    alpha = settings.get("alpha", 0.05)
    out = {}
    if engine["engine"] == "frequentist":
        tuning = engine.get("sequential_tuning_parameter")
        alternative = engine.get("alternative", "two_sided")
        test_value = engine.get("test_value", 0.0)
        if tuning is not None:
            test = SequentialTwoSidedTTest(
                stat_a, stat_b,
                SequentialConfig(**base, alpha=alpha, test_value=test_value, sequential_tuning_parameter=tuning),
            )
        else:
            test_class = {
                "two_sided": TwoSidedTTest,
                "greater": OneSidedTreatmentGreaterTTest,
                "less": OneSidedTreatmentLesserTTest,
            }[alternative]
            test = test_class(stat_a, stat_b, FrequentistConfig(**base, alpha=alpha, test_value=test_value))
        res = test.compute_result()
        ci = list(res.ci)
        if tuning is None and alternative == "less" and res.error_message is None:
            # gbstats 0.8.0 returns estimate - width as the upper bound; GrowthBook's later
            # engine (and atrium-stats) use estimate + width.
            ci[1] = 2 * res.expected - ci[1]
        out["p_value"] = res.p_value
        out["degrees_of_freedom"] = test.dof if (tuning is None and res.error_message is None) else None
    else:
        prior = engine.get("prior", {})
        test = EffectBayesianABTest(
            stat_a, stat_b,
            EffectBayesianConfig(
                **base,
                alpha=alpha,
                inverse=settings.get("inverse", False),
                prior_effect=GaussianPrior(
                    mean=prior.get("mean", 0.0),
                    variance=prior.get("variance", 1.0),
                    proper=prior.get("proper", False),
                ),
                prior_type=engine.get("prior_scale", "relative"),
            ),
        )
        res = test.compute_result()
        ci = list(res.ci)
        out["chance_to_win"] = res.chance_to_win
        out["risk"] = list(res.risk)
        out["risk_type"] = res.risk_type
    a, b = test.stat_a, test.stat_b
    # the runner's post-processing (gbstats.analyze_metric_df)
    if a.unadjusted_mean <= 0:
        expected = 0
    elif res.expected == 0:
        expected = (b.mean - a.mean) / a.unadjusted_mean
    else:
        expected = res.expected
    out.update(
        {
            "control": {"users": a.n, "mean": a.unadjusted_mean, "stddev": a.stddev},
            "treatment": {"users": b.n, "mean": b.unadjusted_mean, "stddev": b.stddev},
            "expected": expected,
            "ci": ci,
            "uplift": {"mean": res.uplift.mean, "stddev": res.uplift.stddev},
            "error": res.error_message,
        }
    )
    if control_data["type"] == "regression_adjusted":
        out["theta"] = getattr(a, "theta", 0.0)
    return out


def run_analysis(case):
    from gbstats.utils import check_srm

    settings = case["settings"]
    arm_count = len(case["treatments"]) + 1
    weights = settings.get("traffic_weights") or [1.0 / arm_count] * arm_count
    results = [
        run_pair(case["control"], treatment, settings, weights[i + 1])
        for i, treatment in enumerate(case["treatments"])
    ]
    correction = settings.get("correction")
    if correction:
        p_values = [r["p_value"] for r in results]
        adjusted = holm_bonferroni(p_values) if correction == "holm-bonferroni" else benjamini_hochberg(p_values)
        alpha = settings.get("alpha", 0.05)
        for result, adjusted_p in zip(results, adjusted):
            result["p_value_adjusted"] = adjusted_p
            result["ci_adjusted"] = adjusted_ci(adjusted_p, result["uplift"]["mean"], result["ci"], alpha)
    users = [case["control"]["n"]] + [t["n"] for t in case["treatments"]]
    return {"name": case["name"], "results": results, "srm": check_srm(users, weights)}


def make_expected(cases):
    from gbstats.utils import check_srm

    version = importlib.metadata.version("gbstats")
    if version != GBSTATS_VERSION:
        sys.exit(f"gbstats {GBSTATS_VERSION} required, found {version}")
    return clean(
        {
            "gbstats_version": version,
            "analyses": [run_analysis(case) for case in cases["analyses"]],
            "corrections": [
                {"p_values": p, "holm_bonferroni": holm_bonferroni(p), "benjamini_hochberg": benjamini_hochberg(p)}
                for p in cases["corrections"]
            ],
            "srm": [dict(case, p_value=check_srm(case["users"], case["weights"])) for case in cases["srm"]],
        }
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    cases_parser = sub.add_parser("cases")
    cases_parser.add_argument("--out", required=True)
    expected_parser = sub.add_parser("expected")
    expected_parser.add_argument("--cases", required=True)
    expected_parser.add_argument("--out", required=True)
    args = parser.parse_args()
    if args.command == "cases":
        payload = make_cases()
    else:
        with open(args.cases) as handle:
            payload = make_expected(json.load(handle))
    with open(args.out, "w") as handle:
        json.dump(payload, handle, indent=1, allow_nan=False)
        handle.write("\n")


if __name__ == "__main__":
    main()
