"""Differentially private training (DP-SGD) through Opacus, used by the Trainer when a
TrainConfig carries a PrivacyConfig."""

from __future__ import annotations

import logging
import warnings
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from torch import nn

if TYPE_CHECKING:
    from torch.optim import Optimizer
    from torch.utils.data import DataLoader

from medassist.exceptions import ConfigError
from medassist.validation import check_number

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class PrivacyConfig:
    """DP-SGD settings: the (ε, δ) to reach over the whole training run and the per-sample
    gradient clipping norm.

    Example:
        >>> TrainConfig(epochs=30, privacy=PrivacyConfig(target_epsilon=3.0))
    """

    target_epsilon: float
    delta: float = 1e-5
    max_grad_norm: float = 1.0

    def __post_init__(self) -> None:
        check_number(self.target_epsilon, name="target_epsilon", owner="PrivacyConfig", low=0, low_open=True)
        check_number(self.delta, name="delta", owner="PrivacyConfig", low=0, high=1, low_open=True, high_open=True)
        check_number(self.max_grad_norm, name="max_grad_norm", owner="PrivacyConfig", low=0, low_open=True)

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


DEFAULT_DELTA = 1e-5
DEFAULT_MAX_GRAD_NORM = 1.0


def privacy_config(epsilon: float | None, *, delta: float = DEFAULT_DELTA, max_grad_norm: float = DEFAULT_MAX_GRAD_NORM) -> PrivacyConfig | None:
    """The PrivacyConfig of the train options ``--dp-epsilon/--dp-delta/--dp-max-grad-norm``;
    ``None`` without ε. δ or a clipping norm without ε would be silently unused, so it is refused."""
    if epsilon is None:
        if delta != DEFAULT_DELTA or max_grad_norm != DEFAULT_MAX_GRAD_NORM:
            raise ConfigError("--dp-delta and --dp-max-grad-norm only apply to differentially private training; add --dp-epsilon.")
        return None
    return PrivacyConfig(target_epsilon=epsilon, delta=delta, max_grad_norm=max_grad_norm)


def make_private_compatible(model: nn.Module) -> list[str]:
    """Convert, in place, what Opacus can convert: BatchNorm → GroupNorm (BatchNorm mixes the
    samples of a batch, so per-sample gradients do not exist). Returns the conversion names to
    record in the model spec (``private_model_spec``) so a bundle rebuilds the converted model;
    logs a notice when it converts. Anything else Opacus refuses still raises (``check_private_compatible``)."""
    from medassist.models.conversions import (
        BATCHNORM_TO_GROUPNORM,
        CLONE_RESIDUAL_BRANCH,
        batchnorm_to_groupnorm,
        clone_residual_branch,
        has_batchnorm,
        has_inplace_residual,
    )

    done: list[str] = []
    if has_batchnorm(model):
        batchnorm_to_groupnorm(model)
        done.append(BATCHNORM_TO_GROUPNORM)
        log.warning("%s has BatchNorm layers, which differential privacy cannot train; they were converted to GroupNorm "
                    "(recorded in the model spec as '%s').", type(model).__name__, BATCHNORM_TO_GROUPNORM)
    if has_inplace_residual(model):
        clone_residual_branch(model)
        done.append(CLONE_RESIDUAL_BRANCH)
    for m in model.modules():
        # In-place activations (MONAI's ResNet uses ReLU(inplace=True)) break the backward hooks
        # Opacus needs; out-of-place gives the same outputs and weights, so nothing is recorded.
        if isinstance(m, _InPlace) and m.inplace is True:
            m.inplace = False
    check_private_compatible(model)
    return done


@runtime_checkable
class _InPlace(Protocol):
    """A layer with an ``inplace`` switch (ReLU, Dropout, ...)."""

    inplace: bool


def private_model_spec(spec: dict[str, Any], conversions: list[str]) -> dict[str, Any]:
    """``spec`` with the conversions DP training applied, for the bundle (``model_from_spec``)."""
    if not conversions:
        return spec
    return {**spec, "conversions": [*spec.get("conversions", []), *[c for c in conversions if c not in spec.get("conversions", [])]]}


def check_private_compatible(model: nn.Module) -> None:
    """Refuse, with the reasons, a model Opacus cannot train as it is (after
    ``make_private_compatible`` converted what it can)."""
    from opacus.validators import ModuleValidator

    errors = ModuleValidator.validate(model, strict=False)
    if errors:
        reasons = "; ".join(sorted({str(e).splitlines()[0] for e in errors}))[:400]
        raise ConfigError(f"{type(model).__name__} cannot be trained with differential privacy as it is: {reasons}.")


def make_private(model: nn.Module, optimizer: Optimizer, data_loader: DataLoader[Any], *, epochs: int,
                 privacy: PrivacyConfig) -> tuple[Any, Any, Any, Any]:
    """Wrap model, optimizer and loader for DP-SGD; returns Opacus' (engine, module, optimizer, loader)."""
    from opacus import PrivacyEngine

    with warnings.catch_warnings():
        # Opacus warns about secure RNG (off: reproducible seeds matter more here) and about
        # torch internals; neither is something a user can act on.
        warnings.simplefilter("ignore")
        engine = PrivacyEngine(accountant="prv")
        module, dp_optimizer, dp_loader = engine.make_private_with_epsilon(
            module=model, optimizer=optimizer, data_loader=data_loader, epochs=epochs,
            target_epsilon=privacy.target_epsilon, target_delta=privacy.delta, max_grad_norm=privacy.max_grad_norm,
        )
    return engine, module, dp_optimizer, dp_loader


def release(module: nn.Module) -> None:
    """Remove Opacus' hooks and per-sample gradients so the plain model can be explained
    (Captum), evaluated and saved."""
    close = getattr(module, "_close", None)
    if callable(close):
        close()
    for p in module.parameters():
        if hasattr(p, "grad_sample"):
            p.grad_sample = None


def spent(engine: Any, privacy: PrivacyConfig, *, noise_multiplier: float, sample_rate: float, steps: int) -> dict[str, Any]:
    return {
        "epsilon": float(engine.accountant.get_epsilon(delta=privacy.delta)), "delta": privacy.delta,
        "target_epsilon": privacy.target_epsilon, "max_grad_norm": privacy.max_grad_norm,
        "noise_multiplier": float(noise_multiplier), "sample_rate": float(sample_rate), "steps": int(steps),
        "accountant": "PRV (Opacus)", "mechanism": "DP-SGD with Poisson sampling",
    }
