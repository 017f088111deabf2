"""Shared vocabulary: samples, batches and task schemas."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch


class Batch(NamedTuple):
    """A collated batch, read by field name. ``inputs`` is whatever the model's forward takes."""

    inputs: Any  # a tensor, or a model-specific batch (GraphBatch, FingerprintBatch)
    target: torch.Tensor


@dataclass(frozen=True, kw_only=True)
class TaskSchema:
    """What a task reads and what it predicts; picks featurizers, heads and explanation keys.

    Example:
        >>> TaskSchema(input_schema={"age": "numeric", "sex": "categorical"},
        ...            output_schema={"diagnosis": "binary"}, classes=["benign", "malignant"],
        ...            positive_class="malignant")
    """

    input_schema: dict[str, str]
    output_schema: dict[str, str]
    classes: list[str]
    positive_class: str | None = None
    id_column: str | None = None
    extras: dict[str, object] = field(default_factory=dict)

    @property
    def target(self) -> str:
        return next(iter(self.output_schema))

    @property
    def kind(self) -> str:
        return self.output_schema[self.target]

    @property
    def positive_index(self) -> int:
        return self.classes.index(self.positive_class) if self.positive_class is not None else 1

    def to_dict(self) -> dict[str, object]:
        return {
            "input_schema": self.input_schema, "output_schema": self.output_schema, "classes": self.classes,
            "positive_class": self.positive_class, "id_column": self.id_column, "extras": self.extras,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TaskSchema:
        return cls(**d)


#: Decimals kept for a probability or a score wherever one leaves the pipeline (prediction CSVs,
#: hit lists, API answers).
SCORE_DECIMALS = 6
#: Two code paths that batch rows differently (one direct screen against a job's chunks, one
#: request against a micro-batch) compute floats a few ULPs apart, and those can round to
#: neighbouring values at SCORE_DECIMALS: numbers from two paths agree within one unit in the last
#: place kept, so compare them within this tolerance, never within exactly 1e-6.
SCORE_TOLERANCE = 1.5 * 10.0**-SCORE_DECIMALS
