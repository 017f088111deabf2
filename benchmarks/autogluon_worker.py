"""One AutoGluon-Tabular fit for benchmarks/diagnosis_tabular.py, run in AutoGluon's own virtualenv.

    .venv-autogluon/bin/python benchmarks/autogluon_worker.py JOB.json

JOB.json names the fold's training and test CSV files, the label column, the columns to read
as categories, the presets, and the time limit (AutoGluon seeds its models itself, seed 0). The worker fits
``TabularPredictor(eval_metric="roc_auc").fit(train, presets=..., time_limit=...)`` on one CPU,
predicts the test rows and writes ``{"proba": [P(label == 1) per test row], "fit_cpu_seconds",
"fit_wall_seconds", "versions", "leaderboard"}`` to the job's ``out`` path. It imports nothing from
medassist, so it runs in a virtualenv that has AutoGluon and not medassist.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from importlib import metadata

os.environ.setdefault("OMP_NUM_THREADS", "1")


def _child_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def main(job_path: str) -> int:
    import numpy as np
    import pandas as pd
    from autogluon.tabular import TabularPredictor

    job = json.loads(open(job_path).read())
    dtypes = {c: "string" for c in job.get("categorical", [])}
    train = pd.read_csv(job["train"], dtype=dtypes)
    test = pd.read_csv(job["test"], dtype=dtypes)
    for frame in (train, test):
        for c in job.get("categorical", []):
            frame[c] = frame[c].astype(object).where(frame[c].notna(), np.nan)
    label = job["label"]
    t0, c0, k0 = time.perf_counter(), time.process_time(), _child_cpu()
    predictor = TabularPredictor(label=label, eval_metric="roc_auc", path=job["model_dir"], verbosity=0, problem_type="binary")
    predictor.fit(train, presets=job.get("presets", "medium_quality"), time_limit=job.get("time_limit"),
                  num_cpus=1, num_gpus=0)
    fit_wall = time.perf_counter() - t0
    fit_cpu = (time.process_time() - c0) + (_child_cpu() - k0)
    proba = predictor.predict_proba(test.drop(columns=[label]), as_multiclass=True)
    p1 = proba[1] if 1 in proba.columns else proba[proba.columns[-1]]
    board = predictor.leaderboard(silent=True)
    versions = {d: metadata.version(d) for d in ("autogluon.tabular", "autogluon.core", "lightgbm", "catboost", "xgboost-cpu",
                                                 "xgboost", "scikit-learn", "numpy", "pandas", "torch")
                if _installed(d)}
    out = {
        "proba": [float(v) for v in p1.to_numpy()],
        "fit_cpu_seconds": fit_cpu,
        "fit_wall_seconds": fit_wall,
        "best_model": str(predictor.model_best),
        "models_fitted": [str(m) for m in board["model"]],
        "versions": versions,
    }
    with open(job["out"], "w") as f:
        json.dump(out, f)
    return 0


def _installed(dist: str) -> bool:
    try:
        metadata.version(dist)
    except metadata.PackageNotFoundError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
