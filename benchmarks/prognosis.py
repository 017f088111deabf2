"""Prognosis benchmark: the survival model ``medassist train --task survival`` ships, side by side
with the peers a user would pick, in one run, on the same splits and the same features.

Every bundled scikit-survival set (WHAS500, GBSG2, veteran, flchain without 'chapter', AIDS /
ACTG 320, breast_cancer), 5 seeds. Per seed the rows are split exactly as ``train --task
survival`` splits them (``split_rows``: 65% train, 15% validation, 20% test, stratified by
event). The medassist model is fitted by ``fit_survival`` with the spec from
``assistants.prognosis.prognosis_spec`` (what the CLI trains by default; its time includes the
patient autoencoder the bundle also holds). Every peer sees the same encoded features (the case
encoder fitted on train + validation: median imputation with missingness indicators, one-hot,
scaling) and every training row; the neural peers stop early on the same validation rows.

Peers: lifelines ``CoxPHFitter`` (ridge penalizer 0.01), scikit-survival
``RandomSurvivalForest`` (200 trees, min_samples_leaf 15, max_features sqrt) and
``GradientBoostingSurvivalAnalysis`` (Cox loss, defaults: 100 trees of depth 3, lr 0.1), pycox
``CoxPH`` (DeepSurv) and ``LogisticHazard`` (MLP 2 x 64, batch norm, dropout 0.1, Adam lr 1e-3,
batch 64, up to 200 epochs, early stopping on validation loss, patience 20). ``survnet`` is the
previous default (the same ensemble without the linear path), kept to show what the change did.

Metrics on the 20% test rows: Harrell's C (of each model's own risk score), integrated Brier
score (scikit-survival, IPCW by the training censoring, on 50 times between the test follow-up's
10th and 90th percentile), fit seconds (one thread).

    OMP_NUM_THREADS=1 python benchmarks/prognosis.py [--seeds 5] [--datasets whas500 gbsg2 ...]
        [--no-previous] [--with-cox-mix] [--seed-list 0 1]   # a large set's seeds in parallel processes
    python benchmarks/prognosis.py --table                   # the README tables of the last results
    python benchmarks/cases.py --merge-only                  # writes them into benchmarks/README.md

Writes (merges per data set into) benchmarks/results/prognosis.json; each seed's rows also go
to benchmarks/results/prognosis_parts/.
"""

from __future__ import annotations

import argparse
import dataclasses
import fcntl
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from medassist.assistants.prognosis import prognosis_spec  # noqa: E402
from medassist.evaluation.survival import brier_times, harrell_c, integrated_brier  # noqa: E402
from medassist.pipeline.survival import SKSURV_SETS, fit_survival, outcome_rows, select_covariates, sksurv_case_frame, split_rows  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "prognosis.json"
PEERS = ("coxph", "rsf", "gbcox", "deepsurv", "logistic_hazard")
#: The goal compares with the better of these two, per set.
GOAL_PEERS = ("coxph", "rsf")


def _quiet(fn):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn()


def _step_at(fns, times: np.ndarray) -> np.ndarray:
    return np.vstack([fn(np.clip(times, fn.domain[0], fn.domain[1])) for fn in fns])


def fit_lifelines_cox(x_tr, t_tr, d_tr, x_te, times):
    from lifelines import CoxPHFitter

    cols = [f"f{i}" for i in range(x_tr.shape[1])]
    df = pd.DataFrame(x_tr, columns=cols).assign(_t=t_tr, _d=d_tr)
    m = CoxPHFitter(penalizer=0.01)
    _quiet(lambda: m.fit(df, duration_col="_t", event_col="_d"))
    te = pd.DataFrame(x_te, columns=cols)
    return np.asarray(m.predict_partial_hazard(te), dtype=float), m.predict_survival_function(te, times=times).to_numpy().T


def fit_sksurv(kind: str, x_tr, t_tr, d_tr, x_te, times, seed):
    from sksurv.ensemble import GradientBoostingSurvivalAnalysis, RandomSurvivalForest
    from sksurv.util import Surv

    m = (RandomSurvivalForest(n_estimators=200, min_samples_leaf=15, max_features="sqrt", n_jobs=1, random_state=seed)
         if kind == "rsf" else GradientBoostingSurvivalAnalysis(loss="coxph", random_state=seed))
    _quiet(lambda: m.fit(x_tr, Surv.from_arrays(d_tr.astype(bool), t_tr)))
    return m.predict(x_te), _step_at(m.predict_survival_function(x_te), times)


def fit_pycox(kind: str, x_tr, t_tr, d_tr, x_va, t_va, d_va, x_te, times, seed):
    import torchtuples as tt
    from pycox.models import CoxPH, LogisticHazard

    np.random.seed(seed)
    torch.manual_seed(seed)
    def f32(a):
        return np.asarray(a, dtype="float32")

    if kind == "deepsurv":
        y_tr, y_va, out = (f32(t_tr), f32(d_tr)), (f32(t_va), f32(d_va)), 1
    else:
        labtrans = LogisticHazard.label_transform(24)
        y_tr = labtrans.fit_transform(f32(t_tr), f32(d_tr))
        y_va = labtrans.transform(f32(t_va), f32(d_va))
        out = labtrans.out_features
    net = tt.practical.MLPVanilla(x_tr.shape[1], [64, 64], out, batch_norm=True, dropout=0.1, output_bias=kind != "deepsurv")
    model = (CoxPH(net, tt.optim.Adam(lr=1e-3)) if kind == "deepsurv"
             else LogisticHazard(net, tt.optim.Adam(lr=1e-3), duration_index=labtrans.cuts))
    model.fit(f32(x_tr), y_tr, batch_size=64, epochs=200, callbacks=[tt.callbacks.EarlyStopping(patience=20)], verbose=False,
              val_data=(f32(x_va), y_va))
    if kind == "deepsurv":
        model.compute_baseline_hazards()
        sdf = model.predict_surv_df(f32(x_te))
    else:
        sdf = model.interpolate(10).predict_surv_df(f32(x_te))
    grid, s = sdf.index.to_numpy(dtype=float), sdf.to_numpy(dtype=float).T  # (N, G)
    surv = np.vstack([np.interp(times, grid, row) for row in s])
    # risk: minus the area under the curve on the model's own grid (its ranking of who fails first)
    return -np.trapezoid(s, grid, axis=1), surv


def one_seed(name: str, frame: pd.DataFrame, t: np.ndarray, d: np.ndarray, seed: int, variants: dict) -> dict:
    spec = prognosis_spec(time="time", event="event", seed=seed)
    train, val, test = split_rows(d, spec=spec)
    pool = np.sort(np.concatenate([train, val]))
    cov, _ = select_covariates(frame, spec=spec)
    times = brier_times(t[test], d[test], train_time=t[pool])
    rows: dict[str, dict] = {}

    def score(key, risk, surv, secs, **extra):
        rows[key] = {"c_index": harrell_c(risk, t[test], d[test]),
                     "ibs": integrated_brier(surv, times, t[test], d[test], train_time=t[pool], train_event=d[pool]),
                     "seconds": secs, **extra}

    x = None
    for key, overrides in variants.items():
        torch.set_num_threads(1)
        t0 = time.perf_counter()
        fitted = fit_survival(frame, t, d, train=train, val=val, spec=dataclasses.replace(spec, **overrides), covariates=cov)
        secs = time.perf_counter() - t0
        model = fitted.model
        x = model.features(frame)  # the encoder is fitted on the same pool rows in every variant
        cox = model.nets.cox
        extra = {} if cox is None else {"cox_weight": float(cox.mix)}
        score(key, model.risk(x[test]), model.survival(x[test], times), secs, best_epochs=[r.best_epoch for r in fitted.results],
              **extra)
    if x is None:
        raise ValueError("one_seed needs at least one medassist variant to fit (and to encode the peers' features).")
    peers = {
        "coxph": lambda: fit_lifelines_cox(x[pool], t[pool], d[pool], x[test], times),
        "rsf": lambda: fit_sksurv("rsf", x[pool], t[pool], d[pool], x[test], times, seed),
        "gbcox": lambda: fit_sksurv("gbcox", x[pool], t[pool], d[pool], x[test], times, seed),
        "deepsurv": lambda: fit_pycox("deepsurv", x[train], t[train], d[train], x[val], t[val], d[val], x[test], times, seed),
        "logistic_hazard": lambda: fit_pycox("lh", x[train], t[train], d[train], x[val], t[val], d[val], x[test], times, seed),
    }
    for key, fn in peers.items():
        t0 = time.perf_counter()
        risk, surv = fn()
        score(key, risk, surv, time.perf_counter() - t0)
    print(f"{name} seed {seed}: " + "  ".join(f"{k} {v['c_index']:.3f}/{v['ibs']:.3f}/{v['seconds']:.0f}s" for k, v in rows.items()),
          flush=True)
    return rows


def summarise(per_seed: list[dict]) -> dict:
    out = {}
    for key in per_seed[0]:
        c = np.array([r[key]["c_index"] for r in per_seed])
        b = np.array([r[key]["ibs"] for r in per_seed])
        s = np.array([r[key]["seconds"] for r in per_seed])
        def sd(a):
            return float(a.std(ddof=1)) if len(a) > 1 else 0.0

        out[key] = {"c_index_mean": float(c.mean()), "c_index_sd": sd(c), "ibs_mean": float(b.mean()), "ibs_sd": sd(b),
                    "seconds_mean": float(s.mean()), "per_seed": [r[key] for r in per_seed]}
    return out


PARTS = RESULTS.parent / "prognosis_parts"


def benchmark(name: str, seeds: list[int], variants: dict, *, n_seeds: int) -> dict | None:
    """Run ``seeds`` of one set; each seed's rows go to ``results/prognosis_parts/`` first, so a
    large set (flchain) can run its seeds in parallel processes. Returns the set's summary once
    all of ``range(n_seeds)`` are there, else None."""
    frame = sksurv_case_frame(name)
    oc = outcome_rows(frame, time="time", event="event")
    PARTS.mkdir(parents=True, exist_ok=True)
    for s in seeds:
        rows = one_seed(name, oc.frame, oc.time, oc.event, s, variants)
        (PARTS / f"{name}-{s}.json").write_text(json.dumps(rows))
    files = [PARTS / f"{name}-{s}.json" for s in range(n_seeds)]
    if not all(f.exists() for f in files):
        return None
    per_seed = [json.loads(f.read_text()) for f in files]
    models = summarise(per_seed)
    best_peer = max(GOAL_PEERS, key=lambda k: models[k]["c_index_mean"])
    ours = models["medassist"]
    return {"n": int(len(oc.time)), "events": int(oc.event.sum()), "seeds": n_seeds, "models": models, "best_goal_peer": best_peer,
            "c_margin": ours["c_index_mean"] - models[best_peer]["c_index_mean"],
            "ibs_margin": ours["ibs_mean"] - models[best_peer]["ibs_mean"]}


def write(update: dict, meta: dict) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with open(RESULTS.with_suffix(".lock"), "w") as lock:  # two runs over different sets may finish together
        fcntl.flock(lock, fcntl.LOCK_EX)
        res = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
        res.update(meta)
        res.setdefault("datasets", {}).update(update)
        sets = res["datasets"]
        margins = [v["c_margin"] for v in sets.values()]
        res["goal"] = {"text": "C >= the better of CoxPH and RSF on every set and +0.01 on average, IBS no worse",
                       "c_every_set": all(m >= 0 for m in margins), "mean_c_margin": float(np.mean(margins)),
                       "ibs_no_worse_every_set": all(v["ibs_margin"] <= 0 for v in sets.values()), "sets": sorted(sets)}
        tmp = RESULTS.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(res, indent=1))
        os.replace(tmp, RESULTS)
    RESULTS.with_suffix(".lock").unlink(missing_ok=True)


LABELS = {"medassist": "medassist", "survnet": "survnet (previous default)", "cox_mix": "+ Cox mix (not shipped)", "coxph": "CoxPH (lifelines)", "rsf": "RSF",
          "gbcox": "GB-Cox", "deepsurv": "DeepSurv (pycox)", "logistic_hazard": "LogisticHazard (pycox)"}


NOTES = [
    "What ships, and what was tried. The default hazard network now has a **linear path** (one log-odds shift "
    "x·w shared by every interval, starting at zero, beside the residual trunk): against the previous default (the "
    "`survnet` column, same seeds, not run on flchain) C is within ±0.005 on four sets and +0.048 on breast_cancer "
    "(76 genes, 198 patients, where a linear signal is most of what there is), and IBS is lower on all five, at the "
    "same cost. It does **not** meet the issue's goal: it leads narrowly on veteran, gbsg2 and flchain, CoxPH stays "
    "ahead on whas500 (-0.005) and aids (-0.012), RSF ties it on breast_cancer, and IBS is worse than the better "
    "peer on every set, by 0.001-0.005 and by 0.012 on veteran (CoxPH's curves are better calibrated there).",
    "",
    "Stacking a ridge Cox model (its curve mixed with the networks', the weight chosen on the cross-fitting folds; "
    "`SurvivalSpec(cox_mix=True)`, `--with-cox-mix` here) was measured in a side run (not in the results file), C "
    "against the same fit without it: whas500 +0.004 (3 seeds), aids +0.010 (2 seeds), veteran ±0.000 (3 seeds), "
    "gbsg2 -0.021 (3 seeds). The folds score single members while the shipped curve is the 5-member mean: on gbsg2 "
    "seed 0 the members rank the held-out folds at 0.675 and the Cox model at 0.695, so the Cox curve gets weight "
    "0.8, yet on the test rows the 5-member mean scores 0.692 and the Cox model 0.665. Not shipped; the next step is "
    "to choose the weight with the ensemble's own out-of-sample ranking (nested cross-fitting or a validation split).",
    "",
    "Seconds are wall-clock per fit with one thread each, measured while the 2-core machine ran other work "
    "(load 9-12), so they are 3-8x what an idle core gives (the previous, idle run of the network alone: 11 s for "
    "WHAS500, 68 s for flchain); compare them within a row. The medassist figure includes the 5-member ensemble and "
    "the patient autoencoder the bundle also holds. flchain ran with `--no-previous` (no `survnet` column), one "
    "process per seed.",
]


def table_lines(res: dict) -> list[str]:
    """The survival tables of ``benchmarks/README.md`` from ``results/prognosis.json``."""
    sets = res["datasets"]
    keys = [k for k in LABELS if any(k in d["models"] for d in sets.values())]  # a set run with --no-previous lacks survnet
    cmds = list(dict.fromkeys(d["command"] for d in sets.values()))  # one run per core, over different sets
    out = ["```bash", *cmds, "```", "",
           f"{next(iter(sets.values()))['seeds']} seeds; the script's docstring has the peers' settings. Held-out "
           "Harrell's C, mean ± sd over seeds; best per row in bold:", "",
           "| data set | n (events) | " + " | ".join(LABELS[k] for k in keys) + " |", "|---|---|" + "---|" * len(keys)]
    for name, d in sets.items():
        m = d["models"]
        best = max((k for k in keys if k in m), key=lambda k: m[k]["c_index_mean"])
        cells = ["–" if k not in m else (f"**{m[k]['c_index_mean']:.3f}** ± {m[k]['c_index_sd']:.3f}" if k == best else
                                         f"{m[k]['c_index_mean']:.3f} ± {m[k]['c_index_sd']:.3f}") for k in keys]
        out.append(f"| {name} | {d['n']} ({d['events']}) | " + " | ".join(cells) + " |")
    out += ["", "Integrated Brier score (lower is better), mean over seeds, and seconds per fit on one thread:", "",
            "| data set | " + " | ".join(f"IBS {LABELS[k]}" for k in keys) + " | s/fit " + " / ".join(keys) + " |",
            "|---|" + "---|" * (len(keys) + 1)]
    for name, d in sets.items():
        m = d["models"]
        out.append(f"| {name} | " + " | ".join(f"{m[k]['ibs_mean']:.3f}" if k in m else "–" for k in keys) + " | "
                   + " / ".join(f"{m[k]['seconds_mean']:.1f}" if k in m else "–" for k in keys) + " |")
    out += ["", "Goal (issue 14): C ≥ the better of CoxPH and RSF on every set and +0.01 on average, IBS no worse:", "",
            "| data set | better of CoxPH, RSF | C margin | IBS margin (negative: better) | C goal | IBS goal |", "|---|---|---|---|---|---|"]
    for name, d in sets.items():
        out.append(f"| {name} | {LABELS[d['best_goal_peer']]} | {d['c_margin']:+.3f} | {d['ibs_margin']:+.3f} | "
                   f"{'met' if d['c_margin'] >= 0 else 'missed'} | {'met' if d['ibs_margin'] <= 0 else 'missed'} |")
    g = res["goal"]
    out.append(f"| **all** | | mean {g['mean_c_margin']:+.3f} | | "
               f"{'met' if g['c_every_set'] and g['mean_c_margin'] >= 0.01 else 'missed'} | "
               f"{'met' if g['ibs_no_worse_every_set'] else 'missed'} |")
    return out + [""] + NOTES


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--datasets", nargs="+", default=list(SKSURV_SETS), choices=list(SKSURV_SETS))
    ap.add_argument("--seed-list", nargs="+", type=int, help="run only these of range(--seeds) (the rest in other processes)")
    ap.add_argument("--no-previous", action="store_true", help="skip 'survnet', the previous default")
    ap.add_argument("--with-cox-mix", action="store_true",
                    help="add 'cox_mix': the default plus a ridge Cox curve mixed in, its weight chosen out of fold (not shipped)")
    ap.add_argument("--table", action="store_true", help="print the README tables of the last results and stop")
    args = ap.parse_args(argv)
    if args.table:
        print("\n".join(table_lines(json.loads(RESULTS.read_text()))))
        return
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    variants: dict[str, dict[str, Any]] = {"medassist": {}}
    if not args.no_previous:
        variants["survnet"] = {"linear": False}
    if args.with_cox_mix:
        variants["cox_mix"] = {"cox_mix": True}
    cmd = "OMP_NUM_THREADS=" + os.environ["OMP_NUM_THREADS"] + " python benchmarks/prognosis.py " + " ".join(argv or sys.argv[1:])
    import lifelines
    import pycox
    import sklearn
    import sksurv

    meta = {"machine": {"platform": platform.platform(), "python": sys.version.split()[0], "torch": torch.__version__,
                        "threads": int(os.environ["OMP_NUM_THREADS"]), "cpus": os.cpu_count()},
            "versions": {"lifelines": lifelines.__version__, "scikit-survival": sksurv.__version__, "pycox": pycox.__version__,
                         "scikit-learn": sklearn.__version__}}
    if "--seed-list" in cmd:  # the parallel runs of one set share one command line in the table
        cmd = cmd[: cmd.index("--seed-list")].rstrip() + "  # one process per seed: --seed-list N"
    for name in args.datasets:
        res = benchmark(name, args.seed_list or list(range(args.seeds)), variants, n_seeds=args.seeds)
        if res is not None:
            write({name: {"command": cmd, **res}}, meta)
            print(f"wrote {name} to {RESULTS}", flush=True)


if __name__ == "__main__":
    main()
