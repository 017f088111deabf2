"""Treatment-effect benchmark: medassist side by side with EconML on identical data.

1. Semi-synthetic: the real ACTG 175 covariates and randomised arms, outcomes drawn from known
   response surfaces (constant effect, linear and non-linear heterogeneity, two noise levels);
   sqrt(PEHE) and ATE error of the three contrasts against arm 0 on held-out patients, and the
   coverage of medassist's 95% effect intervals.
2. Real trial: ACTG 175 (outcome cd420, higher is better) on held-out patients: the value of
   "give each patient the recommended arm", by inverse-probability weighting with the known 1/4
   randomisation and doubly robust (outcome model cross-fitted on the held-out rows themselves,
   independent of every learner), with bootstrap intervals, beside "everyone gets the best single
   arm" (chosen on the training rows) and EconML's recommendation.

    OMP_NUM_THREADS=1 python benchmarks/treatment.py [--seeds 10] [--jobs 2] [--settings constant:1.0 linear:0.5 ...]

CATENets (TARNet, DragonNet, FlexTENet) run as peers when the ``catenets`` package imports.

Writes benchmarks/results/treatment.json and the table in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from sklearn.ensemble import GradientBoostingRegressor  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import KFold, train_test_split  # noqa: E402

from medassist.data.catalog import get_dataset  # noqa: E402
from medassist.data.datasets.trials import semi_synthetic_outcomes  # noqa: E402
from medassist.evaluation.bootstrap import bootstrap  # noqa: E402
from medassist.evaluation.causal import ate_error, interval, interval_coverage, policy_value, sqrt_pehe  # noqa: E402
from medassist.evaluation.treatment_policy import (  # noqa: E402
    CONSERVATIVE,
    best_single_arm,
    interval_multipliers,
    outcome_intervals,
    recommend,
    summarise,
    t_multiplier,
)
from medassist.pipeline.treatment import (  # noqa: E402
    TreatmentSpec,
    default_effect_config,
    default_train_config,
    fit_treatment,
    prepare_treatment,
)

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "treatment.json"
README = HERE / "README.md"
BEGIN, END = "<!-- treatment:begin -->", "<!-- treatment:end -->"
#: The response surfaces read these covariates first, in this order (see semi_synthetic_outcomes).
ORDER = ["cd40", "age", "karnof", "wtkg", "preanti", "str2", "symptom", "gender"]
#: The grid that fits ~20 minutes on 2 shared cores (add linear:1.0 and --seeds 10 for the full one).
DEFAULT_SETTINGS = ["constant:1.0", "linear:0.5", "nonlinear:0.5", "nonlinear:1.0"]


def actg():
    info = get_dataset("actg175")
    df = info.load()
    skip = {info.extras["treatment"], info.target, info.id_column, *info.extras["exclude"], "zprior"}
    cov = ORDER + [c for c in df.columns if c not in skip and c not in ORDER]
    x = df[cov].to_numpy(dtype=float)
    z = (x - x.mean(0)) / x.std(0)
    return df, cov, z, df["arms"].to_numpy().astype(int)


# ------------------------------------------------------------------------------ learners


def econml_learners(seed: int) -> dict[str, object]:
    from econml.dml import CausalForestDML
    from econml.dr import DRLearner, LinearDRLearner
    from econml.metalearners import TLearner, XLearner

    def gbr():
        return GradientBoostingRegressor(n_estimators=100, max_depth=3, learning_rate=0.05, subsample=0.8, random_state=seed)

    def logit():
        return LogisticRegression(max_iter=2000)

    return {
        "econml_linear_dr": LinearDRLearner(model_regression=gbr(), model_propensity=logit(), cv=3, random_state=seed),
        "econml_dr_gbr": DRLearner(model_regression=gbr(), model_propensity=logit(), model_final=gbr(), cv=3, random_state=seed),
        "econml_causal_forest": CausalForestDML(model_y=gbr(), model_t=logit(), discrete_treatment=True, n_estimators=200,
                                                cv=3, random_state=seed),
        "econml_t_gbr": TLearner(models=gbr()),
        "econml_x_gbr": XLearner(models=gbr(), propensity_model=logit()),
    }


def econml_effects(est, y, t, x_tr, x_te) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(y, t, X=x_tr)
        return np.column_stack([np.ravel(est.effect(x_te, T0=0, T1=a)) for a in (1, 2, 3)])


#: CATENets (Curth & van der Schaar) PyTorch learners run side by side (``pip install catenets``: it brings JAX, so
#: the benchmark may run from a separate environment that also sees this project's; see benchmarks/README.md).
CATENETS = ("tarnet", "dragonnet", "flextenet")


def catenets_available() -> str | None:
    try:
        from importlib.metadata import version

        import catenets.models.torch  # noqa: F401
        return version("catenets")
    except Exception:  # noqa: BLE001 - an optional peer: any import failure means "not installed"
        return None


def catenets_effects(name: str, y, t, x_tr, x_te, *, seed: int) -> np.ndarray:
    """Effects of arms 1-3 vs arm 0 (N_te, 3) by a CATENets binary-treatment learner fitted per
    contrast on the rows of arm 0 and arm a (the package's learners take one binary treatment);
    the package's default architecture and training, seeded."""
    import logging

    from catenets.models.torch import DragonNet, FlexTENet, TARNet

    logging.getLogger("catenets").setLevel(logging.WARNING)
    try:
        from loguru import logger
        logger.remove()
    except (ImportError, ValueError):
        pass
    cls = {"tarnet": TARNet, "dragonnet": DragonNet, "flextenet": FlexTENet}[name]
    cols = []
    for a in (1, 2, 3):
        rows = np.isin(t, (0, a))
        torch.manual_seed(seed)
        np.random.seed(seed)
        model = cls(n_unit_in=x_tr.shape[1], binary_y=False, seed=seed)
        model.fit(x_tr[rows].astype(np.float32), y[rows].astype(np.float32), (t[rows] == a).astype(np.float32))
        out = model.predict(x_te.astype(np.float32))
        cols.append(np.ravel(out.detach().cpu().numpy() if hasattr(out, "detach") else np.asarray(out)))
    return np.column_stack(cols)


def medassist_fit(frame: pd.DataFrame, tr: np.ndarray, *, seed: int, n_members: int, size: str, effect_learner: str = "trees"):
    spec = TreatmentSpec(treatment="arms", outcome="y", assignment="randomised", reference="0", n_members=n_members, size=size,
                         effect_learner=effect_learner,
                         seed=seed, train=default_train_config(seed=seed), effect_train=default_effect_config(seed=seed),
                         covariates=tuple(c for c in frame.columns if c not in ("arms", "y")), better="higher")
    prep = prepare_treatment(frame, spec=spec, source="actg175")
    fitted = fit_treatment(prep, pool=tr, spec=spec)
    return prep, fitted


# ------------------------------------------------------------------------------ part 1


def _coverage(lo: np.ndarray, hi: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(overall, worst column) coverage of (N, C) intervals."""
    per = [interval_coverage(lo[:, c], hi[:, c], truth[:, c]) for c in range(truth.shape[1])]
    return interval_coverage(lo, hi, truth), float(min(per))


def semi_run(setting: str, seed: int, n_members: int, size: str, learners: list[str] | None, use_catenets: bool,
             effect_learner: str = "trees") -> dict:
    """One setting and seed: medassist, the EconML learners and the CATENets learners on identical data
    (``effect_learner="network"`` runs medassist's earlier second stage, for comparison)."""
    torch.set_num_threads(1)
    df, cov, z, arm = actg()
    surface, noise = setting.split(":")
    y, tau, mu0 = semi_synthetic_outcomes(z, arm, surface=surface, noise=float(noise), seed=seed, with_mu0=True)
    mu = mu0[:, None] + np.column_stack([np.zeros(len(y)), tau])  # true expected outcome per arm
    tr, te = train_test_split(np.arange(len(y)), test_size=0.3, random_state=seed, stratify=arm)
    frame = df[cov].copy()
    frame["arms"], frame["y"] = arm, y
    res: dict[str, Any] = {"setting": setting, "seed": seed}
    t0 = time.process_time()
    prep, fitted = medassist_fit(frame, np.sort(tr), seed=seed, n_members=n_members, size=size, effect_learner=effect_learner)
    x = fitted.model.features(prep.data, source="actg175")
    m_arm, m_eff = interval_multipliers(fitted.model.info)
    t_old = t_multiplier(n_members)
    # shipped model; the networks alone (plug-in + correction, no effect trees); the plug-in alone
    variants: tuple[tuple[str, dict[str, bool]], ...] = (("medassist", {}), ("medassist_network", {"trees": False}),
                                                         ("medassist_plugin", {"corrected": False}))
    trees = fitted.model.trees
    if trees is not None:  # the effect trees alone (blend weight 1), for comparison
        variants += (("medassist_trees", {}),)
    for name, how in variants:
        if name == "medassist_trees" and trees is not None:
            weights, trees.weights = trees.weights, [1.0] * trees.n_contrasts
            d = fitted.model.draws(x[te])
            trees.weights = weights
        else:
            d = fitted.model.draws(x[te], **how)
        diff = d["pred"][:, :, 1:] - d["pred"][:, :, [0]]
        est = diff.mean(0)
        res[name] = {"sqrt_pehe": sqrt_pehe(est, tau[te]), "ate_error": ate_error(est, tau[te])}
        # the intervals as shipped: with effect trees they span the networks' own interval too
        lo, hi = outcome_intervals(d, m_eff, contrast_to=0)[1:]
        lo, hi = lo[:, 1:], hi[:, 1:]
        res[name]["coverage_95"], res[name]["coverage_95_worst"] = _coverage(lo, hi, tau[te])
        res[name]["effect_width"] = float(np.mean(hi - lo))
        if name == "medassist":
            if "pred_network" in d:  # the blend's own interval, without the span (what the jackknife alone gives)
                lo, hi = summarise(diff, m_eff)[1:]
                res[name]["coverage_95_blend_only"], res[name]["coverage_95_worst_blend_only"] = _coverage(lo, hi, tau[te])
            lo, hi = summarise(diff, t_old)[1:]
            res[name]["coverage_95_uncalibrated"], res[name]["coverage_95_worst_uncalibrated"] = _coverage(lo, hi, tau[te])
            res[name]["effect_width_uncalibrated"] = float(np.mean(hi - lo))
            lo, hi = outcome_intervals(d, m_arm)[1:]
            res[name]["arm_coverage_95"], res[name]["arm_coverage_95_worst"] = _coverage(lo, hi, mu[te])
            res[name]["arm_width"] = float(np.mean(hi - lo))
            lo, hi = summarise(d["pred"], t_old)[1:]
            res[name]["arm_coverage_95_uncalibrated"], res[name]["arm_coverage_95_worst_uncalibrated"] = _coverage(lo, hi, mu[te])
            res[name]["arm_width_uncalibrated"] = float(np.mean(hi - lo))
            # the factors medassist stored before the jackknife floor (max(1, shared-error factor)), on the same fit
            cal = fitted.model.info["interval_scale"]
            for key, draws, truth_, c in (("arm", d["pred"], mu[te], cal["shared_arm"]), ("effect", diff, tau[te], cal["shared_effect"])):
                lo, hi = summarise(draws, t_old * max(1.0, c))[1:]
                res[name][f"{key}_coverage_95_previous"], res[name][f"{key}_coverage_95_worst_previous"] = _coverage(lo, hi, truth_)
                res[name][f"{key}_width_previous"] = float(np.mean(hi - lo))
            res[name]["interval_scale"] = {k: fitted.model.info["interval_scale"][k] for k in ("arm", "effect")}
            # regret against the truth: mean (best true expected outcome - that of the arm given)
            best = best_single_arm(prep, pool=fitted.pool, mu=fitted.oof["mu"], propensity=fitted.oof["propensity"], weights=fitted.weights)
            scale = fitted.model.info["interval_scale"]["effect"]
            truth = mu[te]
            pols = {"top_arm": recommend(d["pred"], "higher", ref=0, default_arm=best, effect_scale=scale),
                    "conservative": recommend(d["pred"], "higher", ref=0, default_arm=best, effect_scale=scale,
                                              min_confidence=CONSERVATIVE),
                    "one_arm_for_all": np.full(len(te), best), "oracle_one_arm": np.full(len(te), int(truth.mean(0).argmax()))}
            res["regret"] = {k: float(np.mean(truth.max(1) - truth[np.arange(len(te)), p])) for k, p in pols.items()}
    res["medassist"]["cpu_s"] = time.process_time() - t0
    for lname, est in (econml_learners(seed).items() if learners != ["none"] else []):
        if learners and lname not in learners:
            continue
        t0 = time.process_time()
        eff = econml_effects(est, y[tr], arm[tr], z[tr], z[te])
        res[lname] = {"sqrt_pehe": sqrt_pehe(eff, tau[te]), "ate_error": ate_error(eff, tau[te]), "cpu_s": time.process_time() - t0}
        if lname == "econml_causal_forest":
            p = np.column_stack([np.zeros(len(te)), eff]).argmax(1)
            res["regret"]["econml_causal_forest"] = float(np.mean(mu[te].max(1) - mu[te][np.arange(len(te)), p]))
    for cname in (CATENETS if use_catenets else ()):
        t0 = time.process_time()
        eff = catenets_effects(cname, y[tr], arm[tr], z[tr], z[te], seed=seed)
        res[f"catenets_{cname}"] = {"sqrt_pehe": sqrt_pehe(eff, tau[te]), "ate_error": ate_error(eff, tau[te]), "cpu_s": time.process_time() - t0}
        p = np.column_stack([np.zeros(len(te)), eff]).argmax(1)
        res["regret"][f"catenets_{cname}"] = float(np.mean(mu[te].max(1) - mu[te][np.arange(len(te)), p]))
    print(json.dumps(res, default=float), flush=True)
    return res


def semi_synthetic(settings: list[str], seeds: list[int], *, n_members: int, size: str, learners: list[str] | None,
                   use_catenets: bool = False, jobs: int = 1) -> dict:
    tasks = [(setting, seed) for seed in seeds for setting in settings]  # seed-major: a cut-short run still spans every setting
    if jobs > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=jobs) as pool:
            rows = list(pool.map(semi_run, *zip(*tasks), *([v] * len(tasks) for v in (n_members, size, learners, use_catenets))))
    else:
        rows = [semi_run(setting, seed, n_members, size, learners, use_catenets) for setting, seed in tasks]
    rows.sort(key=lambda r: (settings.index(r["setting"]), r["seed"]))
    return {"runs": rows, "summary": _summarise_semi(rows)}


def merge_peers(runs: list[dict], stored: list[dict], *, source: Path) -> list[dict]:
    """Each run with the EconML and CATENets entries (and their regret) of the stored run of the same
    setting and seed; a run without a stored counterpart is refused."""
    by_key = {(r["setting"], r["seed"]): r for r in stored}
    out = []
    for r in runs:
        old = by_key.get((r["setting"], r["seed"]))
        if old is None:
            raise SystemExit(f"{source}: no stored run of {r['setting']} seed {r['seed']} to take the peers from.")
        peers = {k: v for k, v in old.items() if k.startswith(("econml_", "catenets_"))}
        regret = {k: v for k, v in old["regret"].items() if k.startswith(("econml_", "catenets_"))}
        out.append({**r, **peers, "regret": {**r["regret"], **regret}, "peers_from": str(source)})
    return out


def _summarise_semi(rows: list[dict]) -> dict:
    out: dict[str, dict] = {}
    for setting in dict.fromkeys(r["setting"] for r in rows):
        rs = [r for r in rows if r["setting"] == setting]
        names = [k for k in rs[0] if k not in ("setting", "seed", "regret", "peers_from")]
        s: dict[str, Any] = {}
        for n in names:
            p = np.array([r[n]["sqrt_pehe"] for r in rs])
            a = np.array([r[n]["ate_error"] for r in rs])
            s[n] = {"sqrt_pehe_mean": float(p.mean()), "sqrt_pehe_sd": float(p.std(ddof=1)) if len(p) > 1 else 0.0,
                    "ate_error_mean": float(a.mean())}
            for key in ("coverage_95", "coverage_95_uncalibrated", "effect_width", "effect_width_uncalibrated", "arm_coverage_95",
                        "arm_coverage_95_uncalibrated", "arm_width", "arm_width_uncalibrated", "coverage_95_worst",
                        "coverage_95_worst_uncalibrated", "coverage_95_blend_only", "coverage_95_worst_blend_only", "arm_coverage_95_worst", "arm_coverage_95_worst_uncalibrated",
                        *(f"{k}_{m}_previous" for k in ("arm", "effect") for m in ("coverage_95", "coverage_95_worst", "width"))):
                if key in rs[0][n]:
                    s[n][key] = float(np.mean([r[n][key] for r in rs]))
        s["regret"] = {k: float(np.mean([r["regret"][k] for r in rs if k in r["regret"]])) for k in rs[0]["regret"]}
        econ = {k: v for k, v in s.items() if k.startswith("econml") and "sqrt_pehe_mean" in v}
        best = min(econ, key=lambda k: econ[k]["sqrt_pehe_mean"]) if econ else None
        s["best_econml"] = best
        if best:
            s["ratio_to_best_econml"] = s["medassist"]["sqrt_pehe_mean"] / econ[best]["sqrt_pehe_mean"]
        cate = {k: v for k, v in s.items() if k.startswith("catenets_") and "sqrt_pehe_mean" in v}
        best_c = min(cate, key=lambda k: cate[k]["sqrt_pehe_mean"]) if cate else None
        s["best_catenets"] = best_c
        if best_c:
            s["ratio_to_best_catenets"] = s["medassist"]["sqrt_pehe_mean"] / cate[best_c]["sqrt_pehe_mean"]
        out[setting] = s
    return out


# ------------------------------------------------------------------------------ part 2


def dr_nuisance_on_test(z: np.ndarray, arm: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    """mu (N, 4) for the evaluation rows, cross-fitted on those rows only (2 folds, GBR per arm)."""
    mu = np.zeros((len(y), 4))
    for tr, te in KFold(2, shuffle=True, random_state=seed).split(z):
        for a in range(4):
            m = GradientBoostingRegressor(n_estimators=100, max_depth=2, learning_rate=0.05, random_state=seed)
            m.fit(z[tr][arm[tr] == a], y[tr][arm[tr] == a])
            mu[te, a] = m.predict(z[te])
    return mu


def policy_statistic(y: np.ndarray, arm: np.ndarray, e: np.ndarray, mu: np.ndarray,
                     policies: dict[str, np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    """What is bootstrapped over the evaluation rows: per policy its IPW and DR values, then per
    policy its DR gain over ``best_single_arm``."""
    names = list(policies)

    def values(r: np.ndarray) -> np.ndarray:
        out = []
        for n in names:
            out += [policy_value(y[r], arm[r], policies[n][r], e[r]),
                    policy_value(y[r], arm[r], policies[n][r], e[r], mu=mu[r])]
        for n in names:
            out.append(out[2 * names.index(n) + 1] - out[2 * names.index("best_single_arm") + 1])
        return np.array(out)

    return values


def real_trial(seeds: list[int], *, n_members: int, size: str, n_boot: int, no_econml: bool = False) -> dict:
    df, cov, z, arm = actg()
    y = df["cd420"].to_numpy(dtype=float)
    e = np.full((len(y), 4), 0.25)
    runs = []
    for seed in seeds:
        tr, te = train_test_split(np.arange(len(y)), test_size=0.3, random_state=seed, stratify=arm)
        tr, te = np.sort(tr), np.sort(te)
        frame = df[cov].copy()
        frame["arms"], frame["y"] = arm, y
        prep, fitted = medassist_fit(frame, tr, seed=seed, n_members=n_members, size=size)
        best = best_single_arm(prep, pool=fitted.pool, mu=fitted.oof["mu"], propensity=fitted.oof["propensity"], weights=fitted.weights)
        x = fitted.model.features(prep.data, source="actg175")
        d = fitted.model.draws(x[te])
        scale = fitted.model.info["interval_scale"]["effect"]
        policies = {
            "medassist": recommend(d["pred"], "higher", ref=0, default_arm=best, effect_scale=scale),
            f"medassist_min_confidence_{CONSERVATIVE:g}": recommend(d["pred"], "higher", ref=0, default_arm=best, effect_scale=scale,
                                                                     min_confidence=CONSERVATIVE),
            "best_single_arm": np.full(len(te), best),
        }
        for lname in (() if no_econml else ("econml_dr_gbr", "econml_causal_forest")):
            eff = econml_effects(econml_learners(seed)[lname], y[tr], arm[tr], z[tr], z[te])
            policies[lname] = np.column_stack([np.zeros(len(te)), eff]).argmax(1)
        mu = dr_nuisance_on_test(z[te], arm[te], y[te], seed)
        names = list(policies)
        p, lo, hi = bootstrap(policy_statistic(y[te], arm[te], e[te], mu, policies), len(te), n_boot=n_boot, seed=seed)
        run: dict[str, Any] = {"seed": seed, "n_test": int(len(te)), "best_single_arm": str(best), "policies": {}}
        for i, n in enumerate(names):
            run["policies"][n] = {"ipw": interval(p[2 * i], lo[2 * i], hi[2 * i]), "dr": interval(p[2 * i + 1], lo[2 * i + 1], hi[2 * i + 1]),
                                  "dr_gain_over_best_single_arm": interval(p[2 * len(names) + i], lo[2 * len(names) + i], hi[2 * len(names) + i]),
                                  "share_per_arm": [float(np.mean(policies[n] == a)) for a in range(4)]}
        runs.append(run)
        print(json.dumps({n: round(v["dr"]["value"], 1) for n, v in run["policies"].items()}), flush=True)
    summary = {}
    for n in runs[0]["policies"]:
        summary[n] = {"ipw_mean": float(np.mean([r["policies"][n]["ipw"]["value"] for r in runs])),
                      "dr_mean": float(np.mean([r["policies"][n]["dr"]["value"] for r in runs])),
                      "dr_gain_mean": float(np.mean([r["policies"][n]["dr_gain_over_best_single_arm"]["value"] for r in runs]))}
    return {"runs": runs, "summary": summary}


# ------------------------------------------------------------------------------ output


def _best_cell(s: dict, key: str | None, prefix: str) -> str:
    if not key:
        return "not run"
    return f"{s[key]['sqrt_pehe_mean']:.3f} ± {s[key]['sqrt_pehe_sd']:.3f} ({key.replace(prefix, '')})"


def _pehe_cell(s: dict, key: str) -> str:
    return f"{s[key]['sqrt_pehe_mean']:.3f}" if key in s else "–"


def write_readme(results: dict) -> None:
    semi, real = results["semi_synthetic"]["summary"], results["real_trial"]["summary"]
    cfg = results["config"]
    cmd = cfg.get("command", "benchmarks/treatment.py")
    # CATENets needs its own environment, unless its figures come from an earlier run
    py = "/tmp/treat_catvenv/bin/python" if cfg.get("catenets", "not run") != "not run" and not cfg.get("peers_from") else ".venv/bin/python"
    lines = [BEGIN, "", "## Treatment effects (`benchmarks/treatment.py`)", "", "```bash",
             f"OMP_NUM_THREADS=1 {py} {cmd}   # {results['wall_minutes']:.0f} min, {cfg.get('jobs', 1)} process(es) of {cfg['cpu']}",
             "```", "",
             "CATENets 0.2.4 brings JAX; it was installed into a separate environment that also sees this project's "
             "(`python -m venv /tmp/treat_catvenv`, a `.pth` file naming `.venv`'s site-packages and `src/`, then "
             "`pip install --no-deps catenets jax jaxlib loguru ml_dtypes opt_einsum gdown beautifulsoup4 soupsieve`), so `.venv`'s pins (torch 2.13.0) "
             "stay untouched; without it the script runs the other learners and says CATENets was not run.", "",
             f"medassist: {cfg['n_members']}-member cross-fitted multi-arm network ({cfg['size']} preset) + effect trees (LightGBM: a "
             "prognostic model shared by the arms, backfitted with one effect model per arm, once with constant and once with "
             "linear leaves, the effects fitted to residuals of a cross-fitted prognostic model, rounds chosen on the held-out folds), mixed with the networks' effect (plug-in + DR correction) by "
             "convex fits to y - m(x) on held-out rows: the two tree models per contrast, one weight of trees vs networks for all; "
             f"EconML {cfg['econml']} with gradient-boosting nuisances (LinearDRLearner, DRLearner with a boosted final stage, "
             "CausalForestDML, T- and X-learner); CATENets "
             f"{cfg.get('catenets', 'not run')} TARNet, DragonNet and FlexTENet (package defaults, PyTorch, one binary-treatment "
             "model per contrast on the rows of arm 0 and arm a); every learner on the same standardised covariates, arms, "
             f"outcomes and seeds. Grid: {', '.join(cfg['settings'])}; {len(cfg['seeds'])} seed(s) per setting "
             f"({cfg['seeds'][0]}-{cfg['seeds'][-1]}), {len(cfg['real_seeds'])} split(s) of the real trial. "
             "Differences smaller than the ± spread (sd over seeds) are not established."
             + (" The semi-synthetic runs were read from the log of a run cut short at the time budget (`--semi-from`): "
                "only seeds finished on every setting count." if cfg.get("semi_from") else "")
             + (" The EconML and CATENets figures were taken from the previous results file (`--peers-from`): those learners are "
                "seeded, so the same data and seed give the same fit; medassist was fitted anew." if cfg.get("peers_from") else ""), "",
             "### Semi-synthetic ACTG 175 (real covariates and arms, known effects; held-out 30%): sqrt(PEHE)", "",
             "`medassist` is the shipped model; the next columns are its parts on the same fits: the networks alone (plug-in + "
             "correction), the effect trees alone, and the networks' plug-in.", "",
             "| setting (surface:noise sd) | medassist | networks alone | trees alone | plug-in only | best EconML (learner) | ratio "
             "| best CATENets (learner) | ratio | medassist ATE error |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for setting, s in semi.items():
        ms = s["medassist"]
        lines.append(
            f"| {setting} | {ms['sqrt_pehe_mean']:.3f} ± {ms['sqrt_pehe_sd']:.3f} | {_pehe_cell(s, 'medassist_network')} | "
            f"{_pehe_cell(s, 'medassist_trees')} | {s['medassist_plugin']['sqrt_pehe_mean']:.3f} | "
            f"{_best_cell(s, s.get('best_econml'), 'econml_')} | {s.get('ratio_to_best_econml', float('nan')):.2f} | "
            f"{_best_cell(s, s.get('best_catenets'), 'catenets_')} | {s.get('ratio_to_best_catenets', float('nan')):.2f} | "
            f"{ms['ate_error_mean']:.3f} |")
    lines += ["", "### Interval coverage of the truth (95% intervals; held-out 30%; mean over seeds)", "",
              "Coverage of the true expected outcome per arm and of the true effect per contrast, overall and for the worst "
              "arm / contrast, and mean width. Each cell: raw t·sd → the factors stored before this change "
              "(max(1, shared-error factor), same fits) → shipped (max(jackknife, shared-error factor)).", "",
              "| setting | per-arm coverage (worst arm) | per-arm width | effect coverage (worst contrast) | effect width |",
              "|---|---|---|---|---|"]
    for setting, s in semi.items():
        ms = s["medassist"]
        lines.append(
            f"| {setting} | {ms['arm_coverage_95_uncalibrated']:.2f} ({ms['arm_coverage_95_worst_uncalibrated']:.2f}) → "
            f"{ms['arm_coverage_95_previous']:.2f} ({ms['arm_coverage_95_worst_previous']:.2f}) → "
            f"**{ms['arm_coverage_95']:.2f} ({ms['arm_coverage_95_worst']:.2f})** | {ms['arm_width_uncalibrated']:.2f} → "
            f"{ms['arm_width_previous']:.2f} → {ms['arm_width']:.2f} | "
            f"{ms['coverage_95_uncalibrated']:.2f} ({ms['coverage_95_worst_uncalibrated']:.2f}) → "
            f"{ms['effect_coverage_95_previous']:.2f} ({ms['effect_coverage_95_worst_previous']:.2f}) → "
            f"**{ms['coverage_95']:.2f} ({ms['coverage_95_worst']:.2f})** | {ms['effect_width_uncalibrated']:.2f} → "
            f"{ms['effect_width_previous']:.2f} → {ms['effect_width']:.2f} |")
    regret_keys = list(dict.fromkeys(k for s in semi.values() for k in s["regret"]))
    lines += ["", "### Regret against the truth (mean over held-out patients of best true expected outcome − that of the arm given)", "",
              "`top_arm` is the shipped recommendation; `conservative` the `--min-confidence 0.9` rule; `one_arm_for_all` the arm "
              "best on average in the training rows; learners' policies give each patient the arm with the largest estimated effect.", "",
              "| setting | " + " | ".join(regret_keys) + " |", "|---" * (1 + len(regret_keys)) + "|"]
    for setting, s in semi.items():
        lines.append(f"| {setting} | " + " | ".join(f"{s['regret'][k]:.3f}" if k in s["regret"] else "–" for k in regret_keys) + " |")
    lines += ["", "### Real trial: ACTG 175, policy value on held-out patients (cd420, higher is better; mean over splits)", "",
              "| policy | IPW value | DR value | DR gain over best single arm |", "|---|---|---|---|"]
    for n, s in real.items():
        lines.append(f"| {n} | {s['ipw_mean']:.1f} | {s['dr_mean']:.1f} | {s['dr_gain_mean']:+.1f} |")
    lines += ["", "Per split, DR value [95% bootstrap interval] of the shipped policy beside the best single arm:", ""]
    for r in results["real_trial"]["runs"]:
        m, b = r["policies"]["medassist"], r["policies"]["best_single_arm"]
        lines.append(f"- split {r['seed']} (n = {r['n_test']}, best single arm {r['best_single_arm']}): medassist "
                     f"{m['dr']['value']:.1f} [{m['dr']['ci_low']:.1f}, {m['dr']['ci_high']:.1f}], best single arm "
                     f"{b['dr']['value']:.1f} [{b['dr']['ci_low']:.1f}, {b['dr']['ci_high']:.1f}], gain "
                     f"{m['dr_gain_over_best_single_arm']['value']:+.1f} [{m['dr_gain_over_best_single_arm']['ci_low']:+.1f}, "
                     f"{m['dr_gain_over_best_single_arm']['ci_high']:+.1f}]; share per arm "
                     + ", ".join(f"{100 * v:.0f}%" for v in m["share_per_arm"]))
    lines += ["", results.get("verdict", ""), "", END]
    block = "\n".join(lines) + "\n"
    text = README.read_text() if README.exists() else "# Benchmarks\n\n"
    if BEGIN in text:
        text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END):].lstrip("\n")
    else:
        text = text.rstrip("\n") + "\n\n" + block
    README.write_text(text)


def verdict(results: dict) -> str:
    semi = results["semi_synthetic"]["summary"]
    parts = []
    if not any(v.get("best_econml") for v in semi.values()):
        return "**Where we stand.** EconML was not run in this invocation (--learners none or not installed); see the tables."
    het = {k: v for k, v in semi.items() if not k.startswith("constant")}
    met = [k for k, v in het.items() if v.get("ratio_to_best_econml", 9) <= 0.8]
    parts.append(f"Goal sqrt(PEHE) <= 0.8 x best EconML on heterogeneous settings: met on {len(met)} of {len(het)} "
                 f"({', '.join(met) or 'none'}).")
    cat = [k for k, v in het.items() if v.get("best_catenets")]
    if cat:
        beat = [k for k in cat if het[k].get("ratio_to_best_catenets", 9) <= 1.0]
        parts.append(f"No worse than the best CATENets learner on {len(beat)} of {len(cat)} heterogeneous settings ({', '.join(beat) or 'none'}).")
    for k, v in semi.items():
        if k.startswith("constant"):
            parts.append(f"Constant effect ({k}): ratio {v.get('ratio_to_best_econml', float('nan')):.2f} "
                         f"({'no worse' if v.get('ratio_to_best_econml', 9) <= 1.0 else 'worse'} than the best EconML learner).")
    lost = [k for k, v in het.items() if v.get("ratio_to_best_econml", 0) > 1.0]
    if lost:
        parts.append(f"We lose on {', '.join(lost)} (best EconML learner: "
                     f"{', '.join(semi[k]['best_econml'].replace('econml_', '') for k in lost)}).")
    arm_cov = {k: v["medassist"].get("arm_coverage_95_worst") for k, v in semi.items()}
    eff_cov = {k: v["medassist"].get("coverage_95_worst") for k, v in semi.items()}
    parts.append("Worst-arm coverage of the 95% per-arm intervals: " + ", ".join(f"{k} {c:.2f}" for k, c in arm_cov.items() if c is not None)
                 + "; worst-contrast coverage of the effect intervals: " + ", ".join(f"{k} {c:.2f}" for k, c in eff_cov.items() if c is not None)
                 + " (the jackknife covers sampling error; bias where the network smooths over thresholds is what remains).")
    reg = [k for k, v in het.items() if "econml_causal_forest" in v["regret"]]
    if reg:
        worse = [k for k in reg if het[k]["regret"]["top_arm"] > het[k]["regret"]["econml_causal_forest"]]
        parts.append(f"Regret of the shipped recommendation: below one-arm-for-all on "
                     f"{sum(het[k]['regret']['top_arm'] < het[k]['regret']['one_arm_for_all'] for k in reg)} of {len(reg)} heterogeneous "
                     f"settings; worse than the causal forest's policy on {', '.join(worse) or 'none'}.")
    real = results["real_trial"]["summary"]
    g = real["medassist"]["dr_gain_mean"]
    share = np.mean([r["policies"]["medassist"]["share_per_arm"] for r in results["real_trial"]["runs"]], axis=0)
    parts.append(f"Real trial: medassist's recommendations {'reach' if g >= 0 else 'fall short of'} the best single arm "
                 f"(mean DR gain {g:+.1f} cells/mm3); the conservative rule (min confidence 0.9) gains "
                 f"{real[f'medassist_min_confidence_{CONSERVATIVE:g}']['dr_gain_mean']:+.1f}. Share of held-out patients recommended each arm: "
                 + ", ".join(f"arm {a} {100 * s:.0f}%" for a, s in enumerate(share)) + ".")
    return "**Where we stand.** " + " ".join(parts)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--settings", nargs="+", default=DEFAULT_SETTINGS)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--real-seeds", type=int, default=2)
    ap.add_argument("--members", type=int, default=5)
    ap.add_argument("--size", default="small")
    ap.add_argument("--learners", nargs="*", default=None)
    ap.add_argument("--n-boot", type=int, default=200)
    ap.add_argument("--jobs", type=int, default=1, help="Processes for the semi-synthetic runs (one thread each).")
    ap.add_argument("--semi-from", type=Path, default=None,
                    help="Read the semi-synthetic runs from the JSON lines a cut-short run printed (only seeds finished on every "
                         "setting count) instead of running them; the real trial is run and everything is written as usual.")
    ap.add_argument("--no-catenets", action="store_true", help="Skip the CATENets peers even when the package is installed.")
    ap.add_argument("--peers-from", type=Path, default=None,
                    help="Take the EconML and CATENets figures of each (setting, seed) from this earlier results file instead of "
                         "fitting them again (they are seeded: the same data and seed give the same fit); medassist is fitted anew.")
    ap.add_argument("--no-write", action="store_true", help="Print only; do not update results or README.")
    args = ap.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    t0 = time.time()
    try:
        import econml
        econml_version = econml.__version__
    except ImportError:
        econml_version, args.learners = "not installed", ["none"]

    catenets_version = None if args.no_catenets else catenets_available()
    seeds = list(range(args.seeds))
    if args.semi_from is not None:
        done = [json.loads(line) for line in args.semi_from.read_text().splitlines() if line.startswith('{"setting"')]
        done = [r for r in done if r["setting"] in args.settings and r["seed"] in seeds]
        seeds = [k for k in seeds if all(any(r["setting"] == st and r["seed"] == k for r in done) for st in args.settings)]
        if not seeds:
            raise SystemExit(f"{args.semi_from}: no seed finished on every setting of {args.settings}.")
        done = [r for r in done if r["seed"] in seeds]
        done.sort(key=lambda r: (args.settings.index(r["setting"]), r["seed"]))
        semi = {"runs": done, "summary": _summarise_semi(done)}
    elif args.peers_from is not None:
        semi = semi_synthetic(args.settings, seeds, n_members=args.members, size=args.size, learners=["none"], use_catenets=False,
                              jobs=args.jobs)
    else:
        semi = semi_synthetic(args.settings, seeds, n_members=args.members, size=args.size, learners=args.learners,
                              use_catenets=catenets_version is not None, jobs=args.jobs)
    if args.peers_from is not None:
        stored = json.loads(args.peers_from.read_text())
        runs = merge_peers(semi["runs"], stored["semi_synthetic"]["runs"], source=args.peers_from)
        semi = {"runs": runs, "summary": _summarise_semi(runs)}
        catenets_version = stored["config"].get("catenets")
    results: dict[str, Any] = {
        "config": {"settings": args.settings, "seeds": seeds, "real_seeds": list(range(args.real_seeds)), "n_members": args.members,
                   "size": args.size, "econml": econml_version, "catenets": catenets_version or "not run", "torch": torch.__version__, "python": sys.version.split()[0],
                   "cpu": f"{os.environ.get('OMP_NUM_THREADS')} thread(s), {platform.machine()}",
                   "jobs": args.jobs, "command": "benchmarks/treatment.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                   "semi_from": None if args.semi_from is None else str(args.semi_from),
                   "peers_from": None if args.peers_from is None else str(args.peers_from)},
        "semi_synthetic": semi,
        "real_trial": real_trial(list(range(args.real_seeds)), n_members=args.members, size=args.size, n_boot=args.n_boot,
                                 no_econml=args.learners == ["none"]),
    }
    results["wall_minutes"] = (time.time() - t0) / 60
    results["verdict"] = verdict(results)
    print(results["verdict"])
    if not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=1))
        write_readme(results)


if __name__ == "__main__":
    main()
