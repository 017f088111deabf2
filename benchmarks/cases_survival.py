"""Cases survival benchmark: medassist's neural survival model side by side with scikit-survival,
and the latency of similar-case queries.

1. C-index (Harrell) and integrated Brier score on WHAS500, GBSG2, veteran and flchain
   (scikit-survival's copies; flchain without 'chapter', the cause of death), over seeds. Every
   model sees the same split (80% train, 20% test, stratified by event) and the same features
   (medassist's case encoder fitted on the training rows: median imputation with missingness
   indicators, one-hot, scaling): medassist ``survnet`` (discrete-time hazards, early stopping on
   15% of the training rows), scikit-survival ``CoxPHSurvivalAnalysis`` (ridge alpha 0.01) and
   ``RandomSurvivalForest`` (200 trees, min_samples_leaf 15, max_features sqrt).
2. Similar-case queries (``CaseAnalysis.similar``, exact k-NN over L2-normalised embeddings plus
   the reasons) with 10k and 100k cases made by resampling flchain rows with jitter and random
   ICD-10 codes; p50/p99 over 300 queries with torch and BLAS on 2 threads.

    OMP_NUM_THREADS=2 python benchmarks/cases_survival.py [--seeds 5] [--datasets whas500 gbsg2 veteran flchain]

Writes benchmarks/results/cases_survival.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "2")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from medassist.assistants.cases import CaseAnalysis  # noqa: E402
from medassist.data.splits import split_indices  # noqa: E402
from medassist.evaluation.survival import brier_times, harrell_c, integrated_brier  # noqa: E402
from medassist.pipeline.survival import (  # noqa: E402
    SurvivalSpec,
    default_survival_config,
    fit_survival,
    outcome_rows,
    select_covariates,
    sksurv_case_frame,
)

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "cases_survival.json"


def _sksurv_models(x_tr, y_tr, x_te, times, seed):
    from sksurv.ensemble import RandomSurvivalForest
    from sksurv.linear_model import CoxPHSurvivalAnalysis

    out = {}
    models = {
        "coxph": CoxPHSurvivalAnalysis(alpha=0.01, ties="efron"),
        "rsf": RandomSurvivalForest(n_estimators=200, min_samples_leaf=15, max_features="sqrt", n_jobs=1, random_state=seed),
    }
    for name, m in models.items():
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m.fit(x_tr, y_tr)
        fns = m.predict_survival_function(x_te)
        surv = np.vstack([fn(np.clip(times, fn.domain[0], fn.domain[1])) for fn in fns])
        out[name] = (m.predict(x_te), surv, time.perf_counter() - t0)
    return out


def survival_benchmark(datasets: list[str], seeds: int, size: str) -> dict:
    from sksurv.util import Surv

    results = {}
    for name in datasets:
        frame = sksurv_case_frame(name)
        oc = outcome_rows(frame, time="time", event="event")
        t, d = oc.time, oc.event
        rows: dict[str, list[dict[str, Any]]] = {"medassist": [], "coxph": [], "rsf": []}
        for seed in range(seeds):
            sp = split_indices(d.astype(int), val_fraction=0.15, test_fraction=0.2, seed=seed)
            pool, test = np.sort(np.concatenate([sp.train, sp.val])), sp.test
            spec = SurvivalSpec(size=size, seed=seed, train=default_survival_config(seed=seed))
            cov, _ = select_covariates(oc.frame, spec=spec)
            t0 = time.perf_counter()
            fitted = fit_survival(oc.frame, t, d, train=sp.train, val=sp.val, spec=spec, covariates=cov)
            secs = time.perf_counter() - t0
            model = fitted.model
            x = model.features(oc.frame)
            times = brier_times(t[test], d[test], train_time=t[pool])
            risk = model.risk(x[test])
            surv = model.survival(x[test], times)
            rows["medassist"].append({"c_index": harrell_c(risk, t[test], d[test]),
                                      "ibs": integrated_brier(surv, times, t[test], d[test], train_time=t[pool], train_event=d[pool]),
                                      "seconds": secs, "best_epochs": [r.best_epoch for r in fitted.results]})
            # the peers get every training row (train + validation) and the same encoded features
            others = _sksurv_models(x[pool], Surv.from_arrays(d[pool].astype(bool), t[pool]), x[test], times, seed)
            for key, (r, surv, s) in others.items():
                rows[key].append({"c_index": harrell_c(r, t[test], d[test]),
                                  "ibs": integrated_brier(surv, times, t[test], d[test], train_time=t[pool], train_event=d[pool]),
                                  "seconds": s})
            print(f"{name} seed {seed}: " + "  ".join(f"{k} C {v[-1]['c_index']:.3f} IBS {v[-1]['ibs']:.3f}" for k, v in rows.items()), flush=True)
        summary: dict[str, dict[str, Any]] = {}
        for k, v in rows.items():
            c = np.array([r["c_index"] for r in v])
            b = np.array([r["ibs"] for r in v])
            summary[k] = {"c_index_mean": float(c.mean()), "c_index_sd": float(c.std(ddof=1)) if len(c) > 1 else 0.0,
                          "ibs_mean": float(b.mean()), "ibs_sd": float(b.std(ddof=1)) if len(b) > 1 else 0.0,
                          "seconds_mean": float(np.mean([r["seconds"] for r in v])), "per_seed": v}
        best_peer = max(summary["coxph"]["c_index_mean"], summary["rsf"]["c_index_mean"])
        results[name] = {"n": int(len(t)), "events": int(d.sum()), "models": summary,
                         "goal_met": bool(summary["medassist"]["c_index_mean"] >= best_peer),
                         "margin_to_best_peer": float(summary["medassist"]["c_index_mean"] - best_peer)}
    return results


def synthetic_cases(n: int, seed: int = 0) -> pd.DataFrame:
    """flchain rows resampled with jitter on the numbers and 0-4 random ICD-10 codes each."""
    rng = np.random.default_rng(seed)
    base = sksurv_case_frame("flchain")
    df = base.iloc[rng.integers(0, len(base), n)].reset_index(drop=True)
    for c in ("age", "creatinine", "kappa", "lambda"):
        v = df[c].to_numpy(float)
        df[c] = v * rng.normal(1.0, 0.05, n)
    df["time"] = np.maximum(1.0, df["time"].to_numpy(float) * rng.normal(1.0, 0.05, n)).round()
    codes = np.array([f"{ch}{i:02d}.{j}" for ch in "EIJKN" for i in range(10) for j in range(4)])
    k = rng.integers(0, 5, n)
    df["conditions"] = [";".join(sorted(set(rng.choice(codes, m)))) for m in k]
    df.index = pd.Index([f"syn-{i}" for i in range(n)], name="case_id")
    return df


def latency_benchmark(sizes: list[int], n_queries: int, k: int) -> dict:
    torch.set_num_threads(2)
    out = {}
    big = synthetic_cases(max(sizes), seed=1)
    t0 = time.perf_counter()
    fitted = CaseAnalysis.fit(big.iloc[:10_000], epochs=20)
    fit_s = time.perf_counter() - t0
    for n in sizes:
        ca = CaseAnalysis(frame=big.iloc[:n], model=fitted.model)
        t0 = time.perf_counter()
        ca.embeddings()
        build = time.perf_counter() - t0
        rng = np.random.default_rng(0)
        ids = big.index[:n][rng.integers(0, n, n_queries)]
        ca.similar(ids[0], k=k)  # warm-up
        lat: list[float] = []
        for q in ids:
            s = time.perf_counter()
            ca.similar(q, k=k)
            lat.append((time.perf_counter() - s) * 1000)
        out[str(n)] = {"p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
                       "mean_ms": float(np.mean(lat)), "index_build_s": build, "k": k, "queries": n_queries,
                       "embedding_dim": int(ca.embeddings().shape[1])}
        print(f"similar() at {n} cases: p50 {out[str(n)]['p50_ms']:.2f} ms, p99 {out[str(n)]['p99_ms']:.2f} ms "
              f"(index built in {build:.1f} s)", flush=True)
    return {"by_size": out, "model_fit_s_on_10k": fit_s, "goal": "p99 < 50 ms at 100k cases",
            "goal_met": bool(out[str(max(sizes))]["p99_ms"] < 50)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--datasets", nargs="+", default=["whas500", "gbsg2", "veteran", "flchain"])
    ap.add_argument("--size", default="small")
    ap.add_argument("--sizes", nargs="+", type=int, default=[10_000, 100_000])
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--skip-survival", action="store_true")
    ap.add_argument("--skip-latency", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    res = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    res["machine"] = {"platform": platform.platform(), "python": sys.version.split()[0], "torch": torch.__version__,
                      "threads": int(os.environ["OMP_NUM_THREADS"]), "cpus": os.cpu_count()}
    cmd = "OMP_NUM_THREADS=" + os.environ["OMP_NUM_THREADS"] + " python benchmarks/cases_survival.py " + " ".join(argv or sys.argv[1:])
    if not args.skip_survival:
        res["survival"] = {"command": cmd, "seeds": args.seeds, "size": args.size,
                           "datasets": survival_benchmark(args.datasets, args.seeds, args.size)}
    if not args.skip_latency:
        res["similar_latency"] = {"command": cmd, **latency_benchmark(args.sizes, args.queries, k=10)}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(res, indent=1))
    os.replace(tmp, RESULTS)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
