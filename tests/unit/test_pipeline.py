import numpy as np
import pandas as pd
import pytest
import torch

from medassist.exceptions import ConfigError, DataError
from medassist.models import build_model
from medassist.pipeline import TabularSpec, prepare_target, select_features, undo_class_weighting


def test_missing_outcome_is_an_error_never_a_default_class():
    df = pd.DataFrame({"x": range(10), "y": ["a", "b"] * 4 + [None, "a"]})
    with pytest.raises(DataError, match=r"missing in 1 row\(s\) \(rows 9\).*never given a default class"):
        prepare_target(df, target="y", positive_class=None, missing="error", source="f.csv")
    t = prepare_target(df, target="y", positive_class=None, missing="drop", source="f.csv")
    assert t.kept.sum() == 9 and any("dropped" in n for n in t.notes)


@pytest.mark.parametrize("labels, positive", [
    ([0, 1] * 6, "1"), (["No", "Yes"] * 6, "Yes"), (["benign", "malignant"] * 6, "malignant"), ([1.0, 0.0] * 6, "1"),
])
def test_positive_class_is_the_disease_class(labels, positive):
    t = prepare_target(pd.DataFrame({"y": labels}), target="y", positive_class=None, missing="error", source="f")
    assert t.positive_class == positive


def test_positive_class_falls_back_to_minority_and_says_so():
    t = prepare_target(pd.DataFrame({"y": ["A"] * 9 + ["B"] * 3}), target="y", positive_class=None, missing="error", source="f")
    assert t.positive_class == "B" and "minority" in t.notes[0]
    with pytest.raises(ConfigError, match="not a class"):
        prepare_target(pd.DataFrame({"y": ["A", "B"] * 3}), target="y", positive_class="C", missing="error", source="f")


def test_continuous_target_and_rare_class_are_refused():
    with pytest.raises(DataError, match="distinct values"):
        prepare_target(pd.DataFrame({"y": np.linspace(0, 1, 50)}), target="y", positive_class=None, missing="error", source="f")
    with pytest.raises(DataError, match="fewer than 3 rows"):
        prepare_target(pd.DataFrame({"y": ["a"] * 10 + ["b"]}), target="y", positive_class=None, missing="error", source="f")


def test_feature_selection_drops_target_id_and_free_text():
    df = pd.DataFrame({"id": range(100), "note": [f"text {i}" for i in range(100)], "age": range(100), "y": [0, 1] * 50})
    feats, notes = select_features(df, spec=TabularSpec(target="y", id_column="id"), source="f")
    assert feats == ["age"] and any("note" in n for n in notes)


def test_undo_class_weighting_restores_the_base_rate():
    """Train with balanced weights on a 10% positive problem: corrected probabilities average ~10%."""
    from medassist.training import ArrayDataset, TrainConfig, Trainer, class_weights, classification_loss

    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 3)).astype(np.float32)
    y = (rng.random(600) < 0.1).astype(np.int64)  # outcome independent of x: the best model predicts 10%
    torch.manual_seed(0)
    model, _ = build_model("mlp", size="small", n_features=3, n_outputs=2)
    data = ArrayDataset(features=x, targets=y)
    Trainer(config=TrainConfig(epochs=15), progress=False).fit(
        model, train_data=data, val_data=data, loss_fn=classification_loss(y, 2, balanced=True))
    with torch.no_grad():
        before = torch.softmax(model(torch.from_numpy(x)), 1)[:, 1].mean().item()
        undo_class_weighting(model, class_weights(y, 2))
        after = torch.softmax(model(torch.from_numpy(x)), 1)[:, 1].mean().item()
    assert before > 0.3  # weighted training pushes it towards 50%
    assert abs(after - y.mean()) < 0.05


def test_check_trainable_refuses_a_leaking_column_before_any_training():
    """The service's training queue calls this at submit time, so a leak is a 422, not a failed job."""
    from medassist.data.catalog import rdata_csv
    from medassist.exceptions import DataError
    from medassist.pipeline.tabular import check_trainable

    frame = rdata_csv("MASS", "birthwt")
    with pytest.raises(DataError, match=r"'bwt'.*--exclude bwt.*--allow-leaky-column bwt"):
        check_trainable(frame, spec=TabularSpec(target="low"), source="birthwt")
    check_trainable(frame, spec=TabularSpec(target="low", exclude=("bwt",)), source="birthwt")
    check_trainable(frame, spec=TabularSpec(target="low", allow_leaky=("bwt",)), source="birthwt")
