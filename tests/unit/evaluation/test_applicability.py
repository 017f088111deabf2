"""Applicability-domain summaries: inside/outside counts and errors, per target, from plain arrays."""

import numpy as np
from rdkit import Chem

from medassist.evaluation.applicability import (
    AD_QUANTILE,
    ApplicabilityDomain,
    fit_applicability_domain,
    summarize_evaluation,
    summarize_test_split,
)


def test_domain_threshold_is_the_quantile_of_held_out_similarities():
    train = [Chem.MolFromSmiles(s) for s in ("CCO", "CCCO", "CCCCO", "c1ccccc1O")]
    held = [Chem.MolFromSmiles(s) for s in ("CCCCCO", "c1ccccc1N", "C1CCCCC1")]
    ad, sim = fit_applicability_domain(train, held)
    assert sim.shape == (3,) and ad.threshold == float(np.quantile(sim, AD_QUANTILE))
    same, nearest = ad.similarity(train)
    assert np.allclose(same, 1.0) and nearest.tolist() == [0, 1, 2, 3]
    assert ad.similarity([])[0].shape == (0,)


def test_summaries_split_errors_by_domain():
    sim = np.array([0.9, 0.8, 0.1, 0.05])
    pred = np.array([[1.0], [2.0], [3.0], [4.0]])
    y = np.array([[1.5], [2.0], [1.0], [np.nan]])
    info = summarize_test_split(sim, 0.5, pred=pred, y=y, names=["logS"], kind="regression", spread=None)
    assert (info["test_inside"], info["test_outside"]) == (2, 2)
    assert info["logS_mae_inside"] == 0.25 and info["logS_mae_outside"] == 2.0
    assert "logS_spearman_error_vs_uncertainty" not in info
    ad = ApplicabilityDomain(fingerprints=np.zeros((1, 256), dtype=np.uint8), threshold=0.5)
    ev = summarize_evaluation(ad, sim, pred=pred, y=y, kind="regression")
    assert ev == {"threshold": 0.5, "inside": 2, "outside": 2, "mae_inside": [0.25], "mae_outside": [2.0]}
    assert summarize_evaluation(ad, sim, pred=pred, y=y, kind="binary") == {"threshold": 0.5, "inside": 2, "outside": 2}
