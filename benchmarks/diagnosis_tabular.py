"""Tabular diagnosis benchmark: medassist (mlp, ft) side by side with scikit-learn.

5-fold stratified CV (grouped by patient where the data set has an ID column), the same folds
for every model. Every preprocessing step is fitted inside the training fold (no leakage);
medassist holds out 15% of the training fold for early stopping and temperature scaling.

    OMP_NUM_THREADS=1 python benchmarks/diagnosis_tabular.py [--datasets wdbc pima biopsy] [--models mlp:large ft:small]

Writes benchmarks/results/diagnosis_tabular.json and the table in benchmarks/README.md.
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

os.environ.setdefault("OMP_NUM_THREADS", "2")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from sklearn.compose import ColumnTransformer  # noqa: E402
from sklearn.ensemble import HistGradientBoostingClassifier  # noqa: E402
from sklearn.impute import SimpleImputer  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler  # noqa: E402

from medassist.assistants.diagnosis import DEFAULT_ENSEMBLE, default_train_config  # noqa: E402
from medassist.data.catalog import get_dataset  # noqa: E402
from medassist.data.splits import kfold_indices, split_indices  # noqa: E402
from medassist.evaluation.metrics import compute_ece, compute_roc_auc  # noqa: E402
from medassist.featurizers.tabular import infer_column_kind  # noqa: E402
from medassist.pipeline import TabularSpec, fit_tabular, prepare_target, select_features  # noqa: E402
from medassist.training import TrainConfig  # noqa: E402,F401

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "diagnosis_tabular.json"
README = HERE / "README.md"
BEGIN, END = "<!-- diagnosis_tabular:begin -->", "<!-- diagnosis_tabular:end -->"


def sklearn_models(numeric: list[str], categorical: list[str], seed: int) -> dict[str, object]:
    lr_pre = ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(strategy="median", add_indicator=True), StandardScaler()), numeric),
        ("cat", make_pipeline(SimpleImputer(strategy="constant", fill_value="__missing__"), OneHotEncoder(handle_unknown="ignore")), categorical),
    ])
    hgb_pre = ColumnTransformer([
        ("num", "passthrough", numeric),
        ("cat", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan, encoded_missing_value=np.nan), categorical),
    ])
    n_num = len(numeric)
    cat_mask = [False] * n_num + [True] * len(categorical)
    return {
        "logistic_regression": make_pipeline(lr_pre, LogisticRegression(max_iter=5000)),
        "hist_gradient_boosting": make_pipeline(
            hgb_pre, HistGradientBoostingClassifier(categorical_features=cat_mask if categorical else None, random_state=seed)
        ),
    }


def medassist_config(model: str, seed: int) -> TrainConfig:
    return default_train_config(model, seed=seed)  # the defaults `medassist train` uses


def run_dataset(name: str, *, models: list[tuple[str, str]], n_splits: int, seed: int, ensemble: dict[str, int]) -> dict:
    info = get_dataset(name)
    frame = info.load()
    tgt = prepare_target(frame, target=info.target, positive_class=info.positive_class, missing="error", source=name)
    frame = frame.loc[tgt.kept].reset_index(drop=True)
    y = tgt.codes
    pos = tgt.classes.index(tgt.positive_class)
    spec0 = TabularSpec(target=info.target, id_column=info.id_column)
    features, _ = select_features(frame, spec=spec0, source=name)
    numeric = [c for c in features if infer_column_kind(frame[c]) == "numeric"]
    categorical = [c for c in features if c not in numeric]
    groups = frame[info.id_column].astype(str).to_numpy() if info.id_column else None
    folds = list(kfold_indices(y, n_splits=n_splits, groups=groups, seed=seed))
    per_model: dict[str, dict[str, list[float]]] = {}
    for k, (train_idx, test_idx) in enumerate(folds):
        x_tr = frame.iloc[train_idx][features].copy()
        x_te = frame.iloc[test_idx][features].copy()
        for c in numeric:
            x_tr[c] = x_tr[c].astype(float)
            x_te[c] = x_te[c].astype(float)
        for c in categorical:
            x_tr[c] = x_tr[c].astype(object).where(x_tr[c].notna(), np.nan).astype(str).replace("nan", np.nan)
            x_te[c] = x_te[c].astype(object).where(x_te[c].notna(), np.nan).astype(str).replace("nan", np.nan)
        for mname, est in sklearn_models(numeric, categorical, seed).items():
            t0 = time.process_time()
            est.fit(x_tr, y[train_idx])
            cpu = time.process_time() - t0
            p = est.predict_proba(x_te)
            _record(per_model, mname, p, y[test_idx], pos, cpu)
        for model, size in models:
            sub = split_indices(y[train_idx], groups=None if groups is None else groups[train_idx], val_fraction=0.15, test_fraction=0.15, seed=seed + k)
            inner_train = train_idx[np.sort(np.concatenate([sub.train, sub.test]))]
            inner_val = train_idx[sub.val]
            k_members = ensemble[model]
            spec = TabularSpec(target=info.target, model=model, size=size, seed=seed + k, train=medassist_config(model, seed + k), n_members=k_members)
            t0 = time.process_time()
            fitted = fit_tabular(frame, y, train_idx=inner_train, val_idx=inner_val, features=features,
                                 n_classes=len(tgt.classes), positive_index=pos, spec=spec,
                                 groups=None if groups is None else groups)
            cpu = time.process_time() - t0
            p = fitted.predict_proba(frame.iloc[test_idx])
            _record(per_model, f"medassist_{model}_{size}" + (f"_x{k_members}" if k_members > 1 else ""), p, y[test_idx], pos, cpu)
        print(f"  {name} fold {k + 1}/{n_splits}: " + "  ".join(f"{m} {v['auc'][-1]:.4f}" for m, v in per_model.items()), flush=True)
    summary = {
        m: {f"{key}_{stat}": float(getattr(np, stat)(vals)) for key, vals in v.items() for stat in ("mean", "std")} | {"folds": v}
        for m, v in per_model.items()
    }
    return {"n_rows": int(len(y)), "n_features": len(features), "grouped_by": info.id_column, "models": summary}


def _record(store: dict, name: str, p: np.ndarray, y: np.ndarray, pos: int, cpu: float) -> None:
    d = store.setdefault(name, {"auc": [], "ece": [], "fit_cpu_seconds": []})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d["auc"].append(float(compute_roc_auc(p, y, positive_index=pos)))
        d["ece"].append(float(compute_ece(p, y, positive_index=pos)))
    d["fit_cpu_seconds"].append(cpu)


def write_readme(results: dict) -> None:
    lines = [
        BEGIN,
        f"Measured {results['date']} on {results['machine']}, OMP_NUM_THREADS={results['omp_num_threads']}, "
        f"{results['n_splits']}-fold CV (same folds for every model), medassist models: `{' '.join(results['models'])}` "
        f"(`_xK`: a cross-fitted ensemble of K members). Fit CPU seconds are process time (both cores count).",
        "",
        "| data set | model | AUC (mean ± sd) | ECE (mean ± sd) | fit CPU s / fold |",
        "|---|---|---|---|---|",
    ]
    for ds, r in results["datasets"].items():
        for m, s in r["models"].items():
            lines.append(
                f"| {ds} | {m} | {s['auc_mean']:.4f} ± {s['auc_std']:.4f} | {s['ece_mean']:.4f} ± {s['ece_std']:.4f} | {s['fit_cpu_seconds_mean']:.2f} |"
            )
    lines.append(END)
    block = "\n".join(lines)
    text = README.read_text() if README.exists() else "# Benchmarks\n\n"
    if BEGIN in text:
        text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    else:
        text = text.rstrip() + "\n\n## Tabular diagnosis (`benchmarks/diagnosis_tabular.py`)\n\n" + block + "\n"
    README.write_text(text)


def save(results: dict, name: str) -> None:
    """Merge one data set's figures into the results file (runs for other data sets may be going
    on in parallel processes, so the file is locked while it is read and rewritten)."""
    import fcntl

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with open(RESULTS.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        merged = json.loads(RESULTS.read_text()) if RESULTS.exists() else {**results, "datasets": {}}
        merged.update({k: v for k, v in results.items() if k != "datasets"})
        merged["datasets"][name] = results["datasets"][name]
        RESULTS.write_text(json.dumps(merged, indent=1))
        write_readme(merged)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=["wdbc", "pima", "biopsy"])
    ap.add_argument("--models", nargs="+", default=["mlp:large", "ft:large"], help="family:size pairs")
    ap.add_argument("--splits", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ensemble", type=int, nargs=2, metavar=("MLP", "FT"), default=[DEFAULT_ENSEMBLE["mlp"], DEFAULT_ENSEMBLE["ft"]],
                    help="ensemble members for mlp and ft (default: what `medassist train` uses)")
    ap.add_argument("--no-write", action="store_true", help="Print only; do not update results or README.")
    args = ap.parse_args(argv)
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    results = {
        "date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}",
        "omp_num_threads": os.environ["OMP_NUM_THREADS"], "n_splits": args.splits, "models": args.models, "datasets": {},
    }
    for name in args.datasets:
        print(f"{name}:", flush=True)
        results["datasets"][name] = run_dataset(
            name, models=[tuple(m.split(":")) for m in args.models], n_splits=args.splits, seed=args.seed,
            ensemble={"mlp": args.ensemble[0], "ft": args.ensemble[1]},
        )
        if not args.no_write:
            save(results, name)
    for ds, r in results["datasets"].items():
        for m, s in r["models"].items():
            print(f"{ds:8s} {m:28s} AUC {s['auc_mean']:.4f}±{s['auc_std']:.4f}  ECE {s['ece_mean']:.4f}  cpu {s['fit_cpu_seconds_mean']:.1f}s")


if __name__ == "__main__":
    sys.exit(main())
