"""Federated (FedAvg, FedProx on Flower's simulation engine) vs centralised vs single-site AUC.

Sites: heart_disease's four hospitals (site column ``dataset``), and WDBC split into 4 sites by
a seeded stratified split (scikit-learn StratifiedKFold, shuffled with the seed). Each site
splits its own rows 70/15/15 (stratified, seeded); the pooled held-out set is every site's test
part. All models are medassist's mlp-small trained by the one Trainer:

- centralised: featurizer fitted on the pooled training rows, early stopping on the pooled
  validation rows (the upper reference: it needs the rows in one place);
- single-site: each site alone (its own featurizer, train and validation rows), evaluated on the
  pooled held-out set;
- federated: the featurizer from the sites' summary statistics, R rounds of E local epochs;
  the global model after every round is scored on the pooled held-out set (the benchmark holds
  all rows, so this AUC is exact), giving the rounds needed to reach 99% of the centralised AUC.

    OMP_NUM_THREADS=1 python benchmarks/federated.py [--datasets heart_disease wdbc] [--seeds 3] [--rounds 20]

Writes benchmarks/results/federated.json and the table in benchmarks/README.md.
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
os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from medassist.data.catalog import get_dataset  # noqa: E402
from medassist.evaluation.metrics import compute_roc_auc  # noqa: E402
from medassist.featurizers.tabular import TabularFeaturizer  # noqa: E402
from medassist.models import build_model, model_from_spec  # noqa: E402
from medassist.pipeline.federated import FederatedSpec, input_columns, run_simulation, split_sites  # noqa: E402
from medassist.training import ArrayDataset, TrainConfig, Trainer, classification_loss  # noqa: E402
from medassist.training.federated import FederationConfig, LocalSite, set_weights  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "federated.json"
README = HERE / "README.md"
BEGIN, END = "<!-- federated:start -->", "<!-- federated:end -->"
N_SITES_WITHOUT_COLUMN = 4


def _labels(sites: list[LocalSite], classes: list[str], part: str) -> tuple[pd.DataFrame, np.ndarray]:
    frames = [s.frame.iloc[getattr(s.splits, part)] for s in sites]
    labels = pd.concat([s.labels.iloc[getattr(s.splits, part)] for s in sites])
    return pd.concat(frames), labels.map({c: i for i, c in enumerate(classes)}).to_numpy(dtype=np.int64)


def _fit_auc(train_df, y_tr, val_df, y_va, test_df, y_te, cols, *, pos: int, seed: int, epochs: int) -> float:
    fz = TabularFeaturizer().fit(train_df[cols])
    torch.manual_seed(seed)
    model, _ = build_model("mlp", size="small", n_features=len(fz.feature_names_), n_outputs=2)
    cfg = TrainConfig(epochs=epochs, patience=15, lr=1e-3, weight_decay=1e-4, batch_size=32, seed=seed)
    tr = ArrayDataset(features=fz.transform(train_df[cols]).values, targets=y_tr)
    va = ArrayDataset(features=fz.transform(val_df[cols]).values, targets=y_va)
    Trainer(config=cfg, progress=False).fit(model, train_data=tr, val_data=va, loss_fn=classification_loss(y_tr, 2, balanced=False))
    with torch.no_grad():
        p = torch.softmax(model(torch.from_numpy(fz.transform(test_df[cols]).values)), 1).numpy()
    return float(compute_roc_auc(p, y_te, positive_index=pos))


def run(name: str, *, seeds: int, rounds: int, local_epochs: int, epochs: int) -> dict:
    info = get_dataset(name)
    frame = info.load()
    site_column = info.site_column
    target = info.target
    out: dict = {"site_split": f"site column '{site_column}'" if site_column else f"{N_SITES_WITHOUT_COLUMN}-way seeded stratified split",
                 "seeds": []}
    for seed in range(seeds):
        parts = split_sites(frame, target=target, site_column=site_column, n_sites=None if site_column else N_SITES_WITHOUT_COLUMN, seed=seed)
        cols = input_columns(frame, target=target, id_column=info.id_column, site_column=site_column)
        sites = [LocalSite.from_frame(f, name=n, target=target, columns=cols, id_column=info.id_column, seed=seed) for n, f in parts.items()]
        classes = sorted(set().union(*[set(s.labels) for s in sites]))
        pos = classes.index(info.positive_class) if info.positive_class in classes else 1
        test_df, y_te = _labels(sites, classes, "test")
        tr_df, y_tr = _labels(sites, classes, "train")
        va_df, y_va = _labels(sites, classes, "val")
        row: dict = {"seed": seed, "n_test": int(len(y_te)), "sites": {s.name: int(len(s.frame)) for s in sites}}
        t0 = time.perf_counter()
        row["centralised"] = _fit_auc(tr_df, y_tr, va_df, y_va, test_df, y_te, cols, pos=pos, seed=seed, epochs=epochs)
        row["single_site"] = {}
        for s in sites:
            (a_df, a_y), (b_df, b_y) = (_labels([s], classes, "train"), _labels([s], classes, "val"))
            row["single_site"][s.name] = _fit_auc(a_df, a_y, b_df, b_y, test_df, y_te, cols, pos=pos, seed=seed, epochs=epochs)
        row["reference_seconds"] = time.perf_counter() - t0
        for strategy in ("fedavg", "fedprox"):
            spec = FederatedSpec(target=target, id_column=info.id_column, local_epochs=local_epochs, seed=seed)
            config = FederationConfig(strategy=strategy, mu=0.01, rounds=rounds, min_clients=len(sites))
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = run_simulation(sites, config=config, spec=spec)
            seconds = time.perf_counter() - t0
            fz = TabularFeaturizer.from_dict(result.plan["featurizer"])
            x_te = torch.from_numpy(fz.transform(test_df[cols]).values)
            model = model_from_spec(result.plan["model"])
            fpos = result.plan["positive_index"]
            y_fed = pd.concat([s.labels.iloc[s.splits.test] for s in sites]).map({c: i for i, c in enumerate(result.plan["classes"])}).to_numpy()
            curve = []
            for w in result.round_weights:
                set_weights(model, w)
                model.eval()
                with torch.no_grad():
                    curve.append(float(compute_roc_auc(torch.softmax(model(x_te), 1).numpy(), y_fed, positive_index=fpos)))
            target_auc = 0.99 * row["centralised"]
            reach = next((i + 1 for i, a in enumerate(curve) if a >= target_auc), None)
            row[strategy] = {"auc": curve[-1], "best_round_auc": max(curve), "curve": curve, "rounds_to_99pct": reach,
                             "seconds": seconds}
            print(f"{name} seed {seed} {strategy}: AUC {curve[-1]:.4f} (centralised {row['centralised']:.4f}), "
                  f"99% at round {reach}, {seconds:.0f} s", file=sys.stderr)
        out["seeds"].append(row)
    return out


def _ms(values: list[float]) -> str:
    return f"{np.mean(values):.4f} ± {np.std(values):.4f}"


def _reach(rows: list[dict], strategy: str) -> str:
    """Rounds to 99% of centralised, per seed ("never" where it was not reached)."""
    return ", ".join("never" if x[strategy]["rounds_to_99pct"] is None else str(x[strategy]["rounds_to_99pct"]) for x in rows)


def table(results: dict, meta: dict) -> str:
    lines = [
        f"Measured {meta['date']} on {meta['machine']}, {meta['cores']} cores, torch {meta['torch']}, Flower {meta['flwr']}, "
        f"OMP_NUM_THREADS=1; {meta['seeds']} seeds, {meta['rounds']} rounds x {meta['local_epochs']} local epochs, mlp-small, "
        "FedProx μ = 0.01. AUC on the pooled held-out set (every site's test part).",
        "",
        "| data set (sites) | centralised | FedAvg | FedProx | single site: mean [worst, best] | rounds to 99% of centralised (FedAvg / FedProx) | sim. seconds per run |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        rows = r["seeds"]
        single = [np.mean(list(x["single_site"].values())) for x in rows]
        worst = min(min(x["single_site"].values()) for x in rows)
        best = max(max(x["single_site"].values()) for x in rows)
        secs = np.mean([x[s]["seconds"] for x in rows for s in ("fedavg", "fedprox")])
        lines.append(
            f"| {name} ({len(rows[0]['sites'])}: {r['site_split']}) | {_ms([x['centralised'] for x in rows])} | "
            f"{_ms([x['fedavg']['auc'] for x in rows])} | {_ms([x['fedprox']['auc'] for x in rows])} | "
            f"{np.mean(single):.4f} [{worst:.4f}, {best:.4f}] | {_reach(rows, 'fedavg')} / {_reach(rows, 'fedprox')} | {secs:.0f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=["heart_disease", "wdbc"])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--local-epochs", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=100, help="Epochs (with early stopping) of the centralised and single-site models.")
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    import flwr

    results = {name: run(name, seeds=args.seeds, rounds=args.rounds, local_epochs=args.local_epochs, epochs=args.epochs)
               for name in args.datasets}
    meta = {"date": time.strftime("%Y-%m-%d"), "machine": platform.machine(), "cores": os.cpu_count(), "torch": torch.__version__,
            "flwr": flwr.__version__, "seeds": args.seeds, "rounds": args.rounds, "local_epochs": args.local_epochs,
            "epochs": args.epochs, "command": "OMP_NUM_THREADS=1 python benchmarks/federated.py " + " ".join(sys.argv[1:])}
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    text = README.read_text()
    block = f"{BEGIN}\n{table(results, meta)}\n{END}"
    if BEGIN in text:
        text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    else:
        text = text.rstrip() + "\n\n## Federated learning (Flower)\n\n" + (
            "`benchmarks/federated.py`: FedAvg and FedProx (Flower simulation engine) against a centralised model "
            "(rows pooled: the reference federated learning tries to reach without moving rows) and each site alone. "
            "Sites: heart_disease's four hospitals; WDBC split 4 ways (seeded, stratified).\n\n") + block + "\n"
    README.write_text(text)
    print(table(results, meta))


if __name__ == "__main__":
    main()
