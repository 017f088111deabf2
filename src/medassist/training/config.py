"""Training configuration: typed, validated in one place, plain JSON in a bundle."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from medassist.options import look_up_option
from medassist.training.privacy import PrivacyConfig
from medassist.validation import check_number


class Schedule(StrEnum):
    COSINE = "cosine"
    CONSTANT = "constant"


class Monitor(StrEnum):
    VAL_LOSS = "val_loss"
    VAL_METRIC = "val_metric"


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """How the Trainer fits a model.

    Args:
        epochs: maximum number of passes over the training split.
        batch_size: rows per optimiser step.
        lr: peak AdamW learning rate.
        weight_decay: AdamW decoupled weight decay.
        schedule: ``cosine`` (linear warm-up, then cosine decay per step) or ``constant``.
        warmup_fraction: share of all steps spent warming up.
        patience: epochs without improvement of the monitored value before stopping.
        monitor: ``val_loss`` (lower is better) or ``val_metric`` (higher is better, e.g. AUC).
        grad_clip: maximum gradient norm (0 turns clipping off).
        seed: seeds torch, numpy and the data order.
        privacy: train with DP-SGD (Opacus) to this (ε, δ); ``None`` trains without.
    """

    epochs: int = 100
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    schedule: Schedule = Schedule.COSINE
    warmup_fraction: float = 0.05
    patience: int = 15
    monitor: Monitor = Monitor.VAL_LOSS
    grad_clip: float = 1.0
    seed: int = 0
    privacy: PrivacyConfig | None = None

    def __post_init__(self) -> None:
        owner = "TrainConfig"
        check_number(self.epochs, name="epochs", owner=owner, low=1, integer=True)
        check_number(self.batch_size, name="batch_size", owner=owner, low=1, integer=True)
        check_number(self.lr, name="lr", owner=owner, low=0, high=1, low_open=True)
        check_number(self.weight_decay, name="weight_decay", owner=owner, low=0)
        check_number(self.warmup_fraction, name="warmup_fraction", owner=owner, low=0, high=1, high_open=True)
        check_number(self.patience, name="patience", owner=owner, low=1, integer=True)
        check_number(self.grad_clip, name="grad_clip", owner=owner, low=0)
        check_number(self.seed, name="seed", owner=owner, low=0, integer=True)
        object.__setattr__(self, "schedule", look_up_option(self.schedule, Schedule, name="schedule"))
        object.__setattr__(self, "monitor", look_up_option(self.monitor, Monitor, name="monitor"))
        if isinstance(self.privacy, dict):
            object.__setattr__(self, "privacy", PrivacyConfig(**self.privacy))

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["schedule"], d["monitor"] = self.schedule.value, self.monitor.value
        d["privacy"] = self.privacy.to_dict() if self.privacy is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        return cls(**d)
