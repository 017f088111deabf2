"""Utility of differentially private training: test AUC and accuracy against ε.

The same stratified train/val/test split per seed for every ε; medassist's MLP (small preset,
one model) trained with DP-SGD (Opacus, δ = 1e-5, clipping norm 1.0) at each ε, and without DP
(ε = ∞) as the reference. Temperature scaling and test metrics use held-out rows.

    OMP_NUM_THREADS=1 python benchmarks/privacy.py [--datasets wdbc pima] [--seeds 3]

Writes benchmarks/results/privacy.json and the table in benchmarks/README.md.
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

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from medassist.data.catalog import get_dataset  # noqa: E402
from medassist.data.splits import split_indices  # noqa: E402
from medassist.evaluation.metrics import compute_accuracy, compute_roc_auc  # noqa: E402
from medassist.pipeline import TabularSpec, fit_tabular, prepare_target, select_features  # noqa: E402
from medassist.training import PrivacyConfig, TrainConfig  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "privacy.json"
README = HERE / "README.md"
BEGIN, END = "<!-- privacy:begin -->", "<!-- privacy:end -->"


def run(name: str, epsilons: list[float | None], seeds: int, epochs: int) -> dict:
    info = get_dataset(name)
    frame = info.load()
    tgt = prepare_target(frame, target=info.target, positive_class=info.positive_class, missing="error", source=name)
    frame = frame.loc[tgt.kept].reset_index(drop=True)
    features, _ = select_features(frame, spec=TabularSpec(target=info.target, id_column=info.id_column), source=name)
    pos = tgt.classes.index(tgt.positive_class)
    out: dict[str, dict[str, list[float]]] = {}
    for seed in range(seeds):
        s = split_indices(tgt.codes, seed=seed)
        for eps in epsilons:
            privacy = PrivacyConfig(target_epsilon=eps) if eps is not None else None
            cfg = TrainConfig(epochs=epochs, patience=epochs, lr=3e-3, weight_decay=0.0, seed=seed, privacy=privacy)
            spec = TabularSpec(target=info.target, model="mlp", size="small", seed=seed, train=cfg)
            t0 = time.process_time()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fitted = fit_tabular(frame, tgt.codes, train_idx=s.train, val_idx=s.val, features=features,
                                     n_classes=len(tgt.classes), positive_index=pos, spec=spec)
                p = fitted.predict_proba(frame.iloc[s.test])
            key = "inf" if eps is None else f"{eps:g}"
            d = out.setdefault(key, {"auc": [], "accuracy": [], "epsilon_spent": [], "fit_cpu_seconds": []})
            d["auc"].append(float(compute_roc_auc(p, tgt.codes[s.test], positive_index=pos)))
            d["accuracy"].append(float(compute_accuracy(p, tgt.codes[s.test], positive_index=pos)))
            if fitted.result.privacy:
                d["epsilon_spent"].append(float(fitted.result.privacy["epsilon"]))
            d["fit_cpu_seconds"].append(time.process_time() - t0)
            print(f"  {name} seed {seed} ε={key}: AUC {d['auc'][-1]:.4f} acc {d['accuracy'][-1]:.4f}", flush=True)
    return {k: {f"{m}_mean": float(np.mean(v)) for m, v in d.items() if v} | {f"{m}_std": float(np.std(v)) for m, v in d.items() if v}
            | {"runs": d} for k, d in out.items()}


def write_readme(results: dict) -> None:
    lines = [BEGIN, f"Measured {results['date']} on {results['machine']}, OMP_NUM_THREADS={results['omp_num_threads']}; "
             f"{results['seeds']} seeds (stratified 70/15/15 split per seed), {results['epochs']} epochs, mlp-small, δ = 1e-5.", "",
             "| data set | ε | test AUC (mean ± sd) | accuracy | fit CPU s |", "|---|---|---|---|---|"]
    for ds, r in results["datasets"].items():
        for eps, s in r.items():
            lines.append(f"| {ds} | {'∞ (no DP)' if eps == 'inf' else eps} | {s['auc_mean']:.4f} ± {s['auc_std']:.4f} | "
                         f"{s['accuracy_mean']:.4f} | {s['fit_cpu_seconds_mean']:.1f} |")
    lines.append(END)
    text = README.read_text() if README.exists() else "# Benchmarks\n"
    block = "\n".join(lines)
    if BEGIN in text:
        text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    else:
        text = text.rstrip() + "\n\n## Differential privacy (`benchmarks/privacy.py`)\n\n" + block + "\n"
    README.write_text(text)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=["wdbc", "pima"])
    ap.add_argument("--epsilons", nargs="+", default=["1", "3", "8", "inf"])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=30)
    args = ap.parse_args(argv)
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    eps = [None if e == "inf" else float(e) for e in args.epsilons]
    results = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
               "omp_num_threads": os.environ["OMP_NUM_THREADS"], "seeds": args.seeds, "epochs": args.epochs, "datasets": {}}
    for name in args.datasets:
        results["datasets"][name] = run(name, eps, args.seeds, args.epochs)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1))
    write_readme(results)


if __name__ == "__main__":
    sys.exit(main())
