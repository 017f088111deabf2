"""Library screening in-process: ranking, the heap's exactness, filters with alert names,
duplicates and unreadable molecules counted, nothing written on bad options."""

import numpy as np
import pandas as pd
import pytest
from rdkit import Chem

from medassist.data.catalog import get_dataset
from medassist.data.sources import DataSource
from medassist.exceptions import ConfigError
from medassist.pipeline.molecules import ScreeningSpec, bundle_predict_mols, train_screening
from medassist.pipeline.screen import MolFilters, parse_filters, screen_library
from medassist.registry.bundle import load_bundle
from medassist.training import TrainConfig


def test_filters_name_the_rule_or_alert_that_failed():
    f = MolFilters(names=["lipinski", "veber", "pains", "brenk"])
    catechol = f.apply(Chem.MolFromSmiles("Oc1ccccc1O"))
    assert not catechol["pains_pass"] and catechol["pains_alert"].startswith("catechol_A")
    greasy = f.apply(Chem.MolFromSmiles("C" * 36 + "C(=O)O"))
    assert not greasy["lipinski_pass"] and greasy["lipinski_alert"] == "MW 551>500; LogP 13.74>5"
    assert greasy["veber_alert"] == "RotB 35>10" and "Aliphatic_long_chain" in greasy["brenk_alert"]
    clean = f.apply(Chem.MolFromSmiles("CCO"))
    assert clean["passes_filters"] and clean["pains_alert"] == ""
    one_violation = f.apply(Chem.MolFromSmiles("C" * 22))  # LogP > 5 only: Ro5 allows one violation
    assert one_violation["lipinski_pass"] and one_violation["lipinski_alert"].startswith("LogP")
    with pytest.raises(ConfigError, match="did you mean 'pains'"):
        parse_filters("lipinski,pain")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    df = get_dataset("b3db_regression").load().iloc[:100]
    spec = ScreeningSpec(targets=("logBB",), smiles_column="SMILES", model="fpmlp", descriptors=None, n_members=2,
                         train=TrainConfig(epochs=3, batch_size=32), n_boot=10, overrides={"hidden": 32})
    out = tmp_path_factory.mktemp("s") / "m"
    train_screening(df, spec=spec, source=DataSource(name="t"), out_dir=out)
    return load_bundle(out)


def test_the_shortlist_is_the_exact_top_k_and_skips_are_counted(bundle, tmp_path):
    smiles = get_dataset("b3db_classification").load()["SMILES"].iloc[:400].tolist()
    lib = pd.DataFrame({"SMILES": smiles + ["C1CC", smiles[5]], "vendor": [f"v{i}" for i in range(402)]})
    out = tmp_path / "hits.csv"
    summary = screen_library(bundle, lib, out=out, top=15, batch_size=50, workers=1, progress=False, filters=["pains"],
                             skipped_out=tmp_path / "skipped.csv")
    assert summary.n_read == 402 and summary.skipped_by_reason == {"invalid SMILES": 1, "duplicate": 1}
    hits = pd.read_csv(out, keep_default_na=False)
    from medassist.data.io.molecules import read_molecule_table

    mset = read_molecule_table(pd.DataFrame({"smiles": smiles}), standardizer=bundle.featurizer.make_standardizer())
    scores, _ = bundle_predict_mols(bundle, mset.mols)
    first = {smi: i for i, smi in reversed(list(enumerate(mset.smiles)))}  # one score per structure
    best = np.sort(scores[sorted(first.values()), 0])[::-1][:15]
    assert np.allclose(hits["score"].to_numpy(), best, atol=1e-5)
    assert hits["vendor"].str.startswith("v").all() and (hits["uncertainty"] > 0).all()
    skipped = pd.read_csv(tmp_path / "skipped.csv")
    assert skipped["row"].tolist() == [401, 402] and "duplicate" in skipped["reason"].iloc[1]


def test_exclude_failing_and_lowest_first(bundle, tmp_path):
    lib = pd.DataFrame({"smiles": ["Oc1ccccc1O", "CCO", "CCCO", "c1ccccc1CO", "Oc1ccc(O)c(O)c1"]})
    summary = screen_library(bundle, lib, out=tmp_path / "h.csv", top=10, workers=1, progress=False, filters=["pains"],
                             exclude_failing=True, rank="lowest")
    hits = pd.read_csv(tmp_path / "h.csv")
    assert summary.n_failed_filters == 2 and len(hits) == 3 and hits["pains_pass"].all()
    assert (np.diff(hits["score"]) >= 0).all()
    with pytest.raises(ConfigError, match="--exclude-failing needs --filters"):
        screen_library(bundle, lib, out=tmp_path / "x.csv", exclude_failing=True, progress=False)
    assert not (tmp_path / "x.csv").exists()
