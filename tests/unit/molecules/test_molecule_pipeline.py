"""Screening pipeline: splits, targets, de-duplication, train → bundle → predict/evaluate,
applicability domain, multi-task with missing labels, atom attributions."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from rdkit import Chem

from medassist.data.catalog import get_dataset
from medassist.data.sources import DataSource
from medassist.evaluation.applicability import ApplicabilityDomain
from medassist.exceptions import ConfigError, DataError
from medassist.explain.molecules import atom_attributions, similarity_map_png, top_atoms
from medassist.models.molecules import make_batch
from medassist.pipeline.molecules import (
    ScreeningSpec,
    deduplicate,
    evaluate_frame,
    predict_frame,
    prepare_targets,
    train_screening,
)
from medassist.registry.bundle import load_bundle
from medassist.training import TrainConfig

TINY = {"hidden": 32, "ffn_hidden": 32}


@pytest.fixture(scope="module")
def bbb():
    return get_dataset("b3db_classification").load().sample(240, random_state=0).reset_index(drop=True)


def test_targets_are_encoded_and_missing_values_stay_missing():
    df = pd.DataFrame({"y": [1.5, None, "2", 7], "cls": ["BBB+", "BBB-", None, "BBB+"], "bad": ["1", "x", "3", "4"],
                       "active": [0, 1, 1, None]})
    t = prepare_targets(df, ["y"], positive_class=None, source="f.csv")
    assert t.kind == "regression" and np.isnan(t.values[1, 0]) and t.values[2, 0] == 2.0
    assert prepare_targets(df, ["active"], positive_class=None, source="f.csv").kind == "binary"  # two values: a classifier
    c = prepare_targets(df, ["cls"], positive_class=None, source="f.csv")
    assert c.classes["cls"] == ["BBB-", "BBB+"] and c.values[:, 0].tolist()[:2] == [1.0, 0.0] and np.isnan(c.values[2, 0])
    with pytest.raises(DataError, match="row 2: 'x'"):
        prepare_targets(df, ["bad"], positive_class=None, source="f.csv", kind="regression")
    with pytest.raises(DataError, match="mix regression and classification"):
        prepare_targets(df, ["y", "cls"], positive_class=None, source="f.csv")
    with pytest.raises(ConfigError, match="--positive-class"):
        prepare_targets(df, ["cls"], positive_class="yes", source="f.csv")


def test_duplicates_are_merged_and_conflicts_set_missing():
    keep, y, notes = deduplicate(["A", "B", "A", "C", "C"], np.array([[1.0], [2.0], [3.0], [0.0], [np.nan]]), classification=False)
    assert keep.tolist() == [0, 1, 3] and y[:, 0].tolist() == [2.0, 2.0, 0.0] and "2 duplicate" in notes[0]
    keep, y, notes = deduplicate(["A", "A", "B"], np.array([[1.0], [0.0], [1.0]]), classification=True)
    assert np.isnan(y[0, 0]) and any("disagreed" in n for n in notes)


@pytest.fixture(scope="module")
def cls_bundle(bbb, tmp_path_factory):
    out = tmp_path_factory.mktemp("b") / "bbb"
    spec = ScreeningSpec(targets=("BBB+/BBB-",), smiles_column="SMILES", model="dmpnn", descriptors="fast", split="scaffold",
                         n_members=2, train=TrainConfig(epochs=3, batch_size=32, monitor="val_metric"), n_boot=50, overrides=TINY)
    outcome = train_screening(bbb, spec=spec, source=DataSource(name="bbb"), out_dir=out)
    return outcome, load_bundle(out)


def test_classification_bundle_predicts_every_row_with_uncertainty_and_domain(cls_bundle, bbb):
    outcome, bundle = cls_bundle
    assert outcome.kind == "binary" and outcome.metrics["BBB+/BBB-"]["positive_class"] == "BBB+"
    frame = bbb.iloc[:20].copy()
    frame.loc[5, "SMILES"] = "not a molecule"
    preds, skipped = predict_frame(bundle, frame, smiles_column="SMILES", source="x")
    assert len(preds) == 20 and preds.loc[5, "status"].startswith("skipped: invalid SMILES") and np.isnan(preds.loc[5, "score"])
    ok = preds.drop(index=5)
    assert ((ok["score"] >= 0) & (ok["score"] <= 1)).all() and (ok["uncertainty"] >= 0).all()
    assert set(ok["prediction"]) <= {"BBB+", "BBB-"} and [s.row for s in skipped] == [6]
    splits = json.loads((bundle.path / "splits.json").read_text())
    train_smiles = [splits["smiles"][i] for i in splits["train"][:5]]
    ad = ApplicabilityDomain.from_bundle(bundle)
    sim, _ = ad.similarity([Chem.MolFromSmiles(s) for s in train_smiles])
    assert np.allclose(sim, 1.0) and 0 < ad.threshold < 1 and ad.fingerprints.dtype == np.uint8
    result = evaluate_frame(bundle, bbb.iloc[:60], smiles_column="SMILES", source="x", n_boot=20)
    assert result["metrics"]["BBB+/BBB-"]["metrics"]["auc"]["value"] is not None


def test_a_changed_domain_file_is_refused(cls_bundle, tmp_path):
    import shutil

    from medassist.exceptions import BundleError

    _, bundle = cls_bundle
    copy = tmp_path / "copy"
    shutil.copytree(bundle.path, copy)
    data = bytearray((copy / "applicability_domain.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (copy / "applicability_domain.safetensors").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="checksum"):
        ApplicabilityDomain.from_bundle(load_bundle(copy))


def test_multitask_regression_with_missing_labels(tmp_path):
    df = get_dataset("b3db_regression").load().iloc[:120][["SMILES", "logBB"]].copy()
    df["other"] = df["logBB"] * 2 + 1
    df.loc[::3, "other"] = np.nan  # measured for two thirds only
    spec = ScreeningSpec(targets=("logBB", "other"), smiles_column="SMILES", model="fpmlp", descriptors=None, n_members=3,
                         train=TrainConfig(epochs=5, batch_size=32), n_boot=20, overrides={"hidden": 32})
    outcome = train_screening(df, spec=spec, source=DataSource(name="mt"), out_dir=tmp_path / "mt")
    assert set(outcome.metrics) == {"logBB", "other"}
    assert outcome.metrics["other"]["n"] < outcome.metrics["logBB"]["n"]
    bundle = load_bundle(tmp_path / "mt")
    preds, _ = predict_frame(bundle, df.iloc[:5], smiles_column="SMILES", source="x")
    assert {"score_logBB", "score_other", "uncertainty_logBB", "uncertainty_other"} <= set(preds.columns)
    assert bundle.calibration["uncertainty_scale"] is not None


@pytest.mark.parametrize("model", ["dmpnn", "fpmlp"])
def test_atom_attributions_add_up_and_draw(cls_bundle, model, tmp_path, bbb):
    if model == "dmpnn":
        bundle = cls_bundle[1]
    else:
        spec = ScreeningSpec(targets=("BBB+/BBB-",), smiles_column="SMILES", model="fpmlp", descriptors=None,
                             train=TrainConfig(epochs=2, batch_size=32), n_boot=10, overrides={"hidden": 16})
        train_screening(bbb, spec=spec, source=DataSource(name="bbb"), out_dir=tmp_path / "fp")
        bundle = load_bundle(tmp_path / "fp")
    mol = Chem.MolFromSmiles("CC(=O)Nc1ccc(O)cc1")
    w = atom_attributions(bundle, mol, n_steps=64)
    assert w.shape == (mol.GetNumAtoms(),) and np.abs(w).sum() > 0
    feats = bundle.featurizer.transform([mol])
    with torch.no_grad():
        full = bundle.model(make_batch(feats, [0]))[0, 0].item()
        x = make_batch(feats, [0])
        if model == "dmpnn":
            base = bundle.model(x._replace(atom_gate=torch.zeros(mol.GetNumAtoms())))[0, 0].item()
        else:
            base = bundle.model(x._replace(weights=torch.zeros_like(x.weights)))[0, 0].item()
    assert w.sum() == pytest.approx(full - base, rel=0.05, abs=1e-3)  # completeness of integrated gradients
    assert top_atoms(mol, w, k=2).count(":") == 2
    assert similarity_map_png(mol, w)[:4] == b"\x89PNG"
