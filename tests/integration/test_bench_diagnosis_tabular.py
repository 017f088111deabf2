"""benchmarks/diagnosis_tabular.py: partial runs merge fit by fit on the same folds, ranks are taken
within each fold, and a small run (two folds, one seed, the scikit-learn peers) goes end to end."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_diagnosis_tabular", ROOT / "benchmarks" / "diagnosis_tabular.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def _fit(seed, fold, auc, fold_id=None, cpu=1.0):
    return {"seed": seed, "fold": fold, "fold_id": fold_id or f"f{seed}{fold}", "auc": auc, "ece": 0.1, "fit_cpu_seconds": cpu,
            "fit_wall_seconds": cpu}


def _run(fits, default=None):
    return {"schema": 2, "runs": [], "default_model": default,
            "datasets": {"toy": {"n_splits": 2, "fits": fits, "extra_versions": {}}}}


def test_partial_runs_merge_and_rank_within_folds(bench):
    peers = _run({"logistic_regression": [_fit(0, 0, 0.8), _fit(0, 1, 0.7)],
                  "hist_gradient_boosting": [_fit(0, 0, 0.9, cpu=0.1), _fit(0, 1, 0.6, cpu=0.1)]})
    ours = _run({"medassist_tabm_small": [_fit(0, 0, 0.95), _fit(0, 1, 0.65)]}, default="medassist_tabm_small")
    merged = bench.merge(bench.merge({}, peers), ours)
    summary = bench.summarize(merged)["datasets"]["toy"]
    ranks = {m: s["mean_rank"] for m, s in summary["models"].items()}
    assert ranks == {"logistic_regression": 2.0, "hist_gradient_boosting": 2.5, "medassist_tabm_small": 1.5}
    goal = summary["goal"]
    assert goal["best_mean_rank"] and goal["best_baseline"] == "logistic_regression"
    assert goal["ece_le_best_baseline"] and goal["fit_cpu_le_10x_hgb"]
    # a fit measured again replaces the old one; other folds stay
    again = bench.merge(merged, _run({"logistic_regression": [_fit(0, 1, 0.99)]}))
    assert [r["auc"] for r in again["datasets"]["toy"]["fits"]["logistic_regression"]] == [0.8, 0.99]


def test_merge_refuses_other_folds(bench):
    merged = bench.merge({}, _run({"logistic_regression": [_fit(0, 0, 0.8)]}))
    with pytest.raises(SystemExit, match="folds differ"):
        bench.merge(merged, _run({"hist_gradient_boosting": [_fit(0, 0, 0.8, fold_id="other")]}))


def test_small_run_end_to_end(bench, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "r.json"
    assert bench.main(["--datasets", "birthwt", "--folds", "2", "--seeds", "1", "--peers", "lr", "hgb", "--models", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    ds = result["datasets"]["birthwt"]
    assert "bwt" in ds["dropped_columns"] and "bwt" not in ds["numeric"]
    assert {m: len(f) for m, f in ds["fits"].items()} == {"logistic_regression": 2, "hist_gradient_boosting": 2}
    assert result["summary"]["datasets"]["birthwt"]["models"]["logistic_regression"]["mean_rank"] is not None
