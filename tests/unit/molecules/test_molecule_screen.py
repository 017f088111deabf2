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
from medassist.pipeline.screen import MolFilters, ScreenChunk, iter_screen, parse_filters, screen
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
    result = screen(bundle, lib, top=15, batch_size=50, workers=1, filters=["pains"])
    result.write(out, skipped_out=tmp_path / "skipped.csv")
    summary = result.summary
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
    result = screen(bundle, lib, top=10, workers=1, filters=["pains"], exclude_failing=True, rank="lowest")
    result.write(tmp_path / "h.csv")
    summary = result.summary
    hits = pd.read_csv(tmp_path / "h.csv")
    assert summary.n_failed_filters == 2 and len(hits) == 3 and hits["pains_pass"].all()
    assert (np.diff(hits["score"]) >= 0).all()
    with pytest.raises(ConfigError, match="--exclude-failing needs --filters"):
        screen(bundle, lib, exclude_failing=True)
    assert not (tmp_path / "x.csv").exists()


def test_iter_screen_yields_each_batch_and_the_result_holds_hits_and_skipped_rows(bundle):
    smiles = get_dataset("b3db_classification").load()["SMILES"].iloc[:120].tolist()
    lib = pd.DataFrame({"SMILES": smiles + ["C1CC", smiles[5]]})
    run = iter_screen(bundle, lib, top=10, batch_size=50, workers=1, filters=["lipinski"])
    chunks = []
    while True:
        try:
            chunks.append(next(run))
        except StopIteration as done:
            result = done.value
            break
    assert all(isinstance(c, ScreenChunk) for c in chunks) and [c.n_rows for c in chunks] == [50, 50, 22]
    assert [c.n_read for c in chunks] == [50, 100, 122] and chunks[-1].n_skipped == 2
    assert [s.row for s in chunks[-1].skipped] == [121, 122]
    # the value API: typed hits, skipped rows with reasons, the summary
    assert len(result.hits) == 10 and result.hits["rank"].tolist() == list(range(1, 11))
    assert result.hits["in_domain"].dtype == bool and result.hits["score"].dtype == float
    assert result.hits["score"].is_monotonic_decreasing and result.hits["lipinski_pass"].dtype == bool
    assert result.skipped["row"].tolist() == [121, 122]
    assert result.skipped["reason"].iloc[0].startswith("invalid SMILES") and "duplicate" in result.skipped["reason"].iloc[1]
    assert result.summary.n_read == 122 and result.summary.skipped_by_reason == {"invalid SMILES": 1, "duplicate": 1}
    seen = []
    again = screen(bundle, lib, top=10, batch_size=50, workers=1, filters=["lipinski"], on_progress=seen.append)
    assert [c.n_read for c in seen] == [50, 100, 122]
    assert again.hits["smiles_canonical"].tolist() == result.hits["smiles_canonical"].tolist()


def test_exact_repeated_lines_are_dropped_before_parsing_and_the_output_is_unchanged(bundle, monkeypatch):
    import medassist.pipeline.screen as screen_module

    smiles = get_dataset("b3db_classification").load()["SMILES"].iloc[:60].tolist()

    def respelled(s):  # the same molecule written differently: parsed, then found a duplicate structure
        mol = Chem.MolFromSmiles(s)
        return next(t for seed in range(50) if (t := Chem.MolToSmiles(mol, doRandom=True, canonical=False)) != s)

    tail_exact = [smiles[3], "C1CC", "C1CC", smiles[10], smiles[3]]
    tail_spelled = [respelled(smiles[3]), "C1CC", "C1CC", respelled(smiles[10]), respelled(smiles[3])]
    parsed: list[str] = []
    real = screen_module.featurize_chunk

    def counting(rows, texts, kind, **kw):
        parsed.extend(texts)
        return real(rows, texts, kind, **kw)

    monkeypatch.setattr(screen_module, "featurize_chunk", counting)
    exact = screen(bundle, pd.DataFrame({"smiles": smiles + tail_exact}), top=30, batch_size=16, workers=1, filters=["pains"])
    assert len(parsed) == 61 and parsed.count("C1CC") == 1  # each distinct line parsed once
    parsed.clear()
    spelled = screen(bundle, pd.DataFrame({"smiles": smiles + tail_spelled}), top=30, batch_size=16, workers=1, filters=["pains"])
    assert len(parsed) == 64
    pd.testing.assert_frame_equal(exact.hits, spelled.hits)
    assert exact.summary.n_duplicates == spelled.summary.n_duplicates == 3 and exact.summary.n_scored == spelled.summary.n_scored
    assert exact.summary.skipped_by_reason == spelled.summary.skipped_by_reason == {"invalid SMILES": 2, "duplicate": 3}
    assert exact.skipped["row"].tolist() == spelled.skipped["row"].tolist() == [62, 63, 61, 64, 65]
    assert exact.skipped["reason"].tolist()[2:] == [f"duplicate: same standardised structure as row {r}" for r in (4, 11, 4)]


def test_equal_scores_rank_the_earlier_row_first_whatever_the_batching(bundle):
    pairs = ["C[C@H](N)C(=O)O", "C[C@@H](N)C(=O)O", "C[C@H](O)CC", "C[C@@H](O)CC", "N[C@@H](Cc1ccccc1)C(=O)O", "N[C@H](Cc1ccccc1)C(=O)O"]
    lib = pd.DataFrame({"smiles": pairs + ["CCO", "CCCCN", "c1ccncc1"]})
    runs = [screen(bundle, lib, top=k, batch_size=b, workers=1) for k in (2, 4, 6) for b in (1, 2, 100)]
    full = screen(bundle, lib, top=20, batch_size=100, workers=1).hits
    assert full["score"].duplicated().sum() == 3  # enantiomers: the same fingerprint, the same score
    key = full.assign(neg=-full["score"]).sort_values(["neg", "input_row"])["input_row"].tolist()
    assert full["input_row"].tolist() == key  # ties: earlier row first
    for r in runs:
        n = len(r.hits)
        assert r.hits["input_row"].tolist() == key[:n]
