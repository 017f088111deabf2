"""ModelCard: validation, JSON round trip and Markdown."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medassist.evaluation import ModelCard, default_card_texts, evaluate_classification
from medassist.exceptions import ConfigError


def make_card(**overrides) -> ModelCard:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 60)
    p1 = np.clip(0.3 + 0.4 * y + rng.normal(scale=0.2, size=60), 0.01, 0.99)
    evaluation = evaluate_classification(np.column_stack([1 - p1, p1]), y,
                                         classes=["no", "yes"], n_boot=50)
    fields = dict(
        name="diabetes-mlp",
        version="1.2.0",
        task="binary",
        target="diabetes",
        classes=["no", "yes"],
        positive_class="yes",
        data={"source": "Pima", "provenance": "UCI", "licence": "CC0", "n_train": 500,
              "n_val": 100, "n_test": 60, "features": ["glucose", "bmi"]},
        model={"family": "mlp", "size": "small", "n_parameters": 1234,
               "hyperparameters": {"hidden": 64, "dropout": 0.1}},
        training={"epochs": 20, "seed": 0},
        metrics=evaluation,
        calibration={"method": "temperature", "temperature": 1.3},
        privacy={},
        **default_card_texts("binary", "diabetes"),
    )
    fields.update(overrides)
    return ModelCard(**fields)


def test_round_trip_through_json():
    card = make_card()
    d = json.loads(json.dumps(card.to_dict(), allow_nan=False))
    assert d["schema_version"] == 1
    assert ModelCard.from_dict(d) == card


def test_markdown_contains_key_fields():
    md = make_card().to_markdown()
    assert md.startswith("# Model card: diabetes-mlp (version 1.2.0)")
    assert "Decision support, not a medical device" in md
    for text in ("## Intended use", "## Out of scope", "Pima", "glucose, bmi",
                 "## Performance on the test split", "| auc |", "## Limitations",
                 "## Ethical considerations", "**Positive class:** yes", "temperature"):
        assert text in md, text


def test_defaults_texts_name_the_target():
    texts = default_card_texts("multiclass", "heart disease")
    assert "heart disease" in texts["intended_use"]
    assert texts["out_of_scope"] and texts["ethical_considerations"] and texts["limitations"]
    with pytest.raises(ConfigError, match="did you mean 'binary'"):
        default_card_texts("binar", "x")


def test_keyword_only_and_validation():
    with pytest.raises(TypeError):
        ModelCard("m", "1", "binary", "t", ["a", "b"])  # type: ignore[misc]
    with pytest.raises(ConfigError, match="positive_class"):
        make_card(positive_class="maybe")
    with pytest.raises(ConfigError, match="task"):
        make_card(task="regresion")
    with pytest.raises(ConfigError, match="ISO 8601"):
        make_card(created="yesterday")
    multi = make_card(task="multiclass", classes=["a", "b", "c"], positive_class=None)
    assert multi.task == "multiclass"
    assert "Positive class" not in multi.to_markdown()


def test_from_dict_rejects_unknown_and_missing_keys():
    d = make_card().to_dict()
    with pytest.raises(ConfigError, match="unknown"):
        ModelCard.from_dict({**d, "colour": "red"})
    d.pop("target")
    with pytest.raises(ConfigError, match="target"):
        ModelCard.from_dict(d)


def test_non_json_content_is_rejected_by_to_dict():
    card = make_card(training={"lr": float("nan")})
    with pytest.raises(ConfigError, match="JSON"):
        card.to_dict()


def test_regression_card_needs_no_classes_but_classification_does():
    card = make_card(task="regression", classes=[], positive_class=None)
    assert ModelCard.from_dict(card.to_dict()).classes == []
    with pytest.raises(ConfigError, match="at least 2 class names"):
        make_card(task="multiclass", classes=[], positive_class=None)
