"""The one place that wires the stages (preprocess → build → train → evaluate → bundle), one
module per kind of task. The CLI and the service call assistants; assistants call these."""

from medassist.pipeline.tabular import (
    FittedTabular,
    TabularSpec,
    TrainOutcome,
    evaluate_table,
    fit_tabular,
    predict_table,
    prepare_target,
    select_features,
    train_tabular,
    undo_class_weighting,
)

__all__ = [
    "FittedTabular", "TabularSpec", "TrainOutcome", "evaluate_table", "fit_tabular", "predict_table",
    "prepare_target", "select_features", "train_tabular", "undo_class_weighting",
]
