"""A site as a Flower client: our model, trained by the one shared ``Trainer``.

The server drives four kinds of call:

- ``get_properties({"action": "summary"})``: the site's summary statistics (JSON);
- ``get_properties({"action": "setup", "plan": ...})``: the shared featurizer, classes, model
  spec and local training settings, decided by the server from every site's summary;
- ``fit``: load the global weights, train ``local_epochs`` with the Trainer (FedProx adds
  μ/2 ‖w − w_global‖² to the loss when the server's config carries ``proximal_mu``), return the
  new weights and the number of training rows;
- ``evaluate``: validation loss and AUC of the global weights; in the last round also the
  aggregates the server needs for pooled held-out metrics (``LocalSite.report``).
"""

from __future__ import annotations

import json
import zlib
from typing import TYPE_CHECKING, Any

import numpy as np
from flwr.client import NumPyClient

from medassist.evaluation.metrics import compute_roc_auc
from medassist.exceptions import TrainingError
from medassist.featurizers.tabular import TabularFeaturizer
from medassist.models import model_from_spec
from medassist.training.config import TrainConfig
from medassist.training.federated.fedprox import ProximalLoss
from medassist.training.federated.site import LocalSite
from medassist.training.federated.weights import get_weights, set_weights
from medassist.training.losses import classification_loss
from medassist.training.trainer import Trainer

if TYPE_CHECKING:
    from torch import nn


class SiteClient(NumPyClient):
    """Flower ``NumPyClient`` for one ``LocalSite``.

    Args:
        site: the site's own data and split.
    """

    def __init__(self, *, site: LocalSite) -> None:
        self.site = site
        self.plan: dict[str, Any] | None = None
        self.model: nn.Module | None = None
        self._plan_text = ""

    # -- setup ----------------------------------------------------------------------------
    def get_properties(self, config: dict[str, Any]) -> dict[str, Any]:
        action = config.get("action")
        if action == "summary":
            return {"summary": json.dumps(self.site.summary())}
        if action == "setup":
            self._apply(config)
            return {"site": self.site.name, "n_train": len(self.site.data["train"])}
        raise TrainingError(f"site {self.site.name}: unknown request {action!r} from the server.")

    def _apply(self, config: dict[str, Any]) -> None:
        """Apply the server's plan (once per plan: a client object may live for one message)."""
        text = str(config.get("plan") or "")
        if not text:
            if self.plan is None:
                raise TrainingError(f"site {self.site.name}: asked to train before the server sent its plan.")
            return
        if text == self._plan_text:
            return
        self.plan = json.loads(text)
        featurizer = TabularFeaturizer.from_dict(self.plan["featurizer"])
        self.site.setup(featurizer=featurizer, classes=self.plan["classes"])
        self.model = model_from_spec(self.plan["model"])
        self._plan_text = text

    def _setup(self, config: dict[str, Any]) -> tuple[dict[str, Any], nn.Module]:
        """Apply the plan in ``config``; the plan and the model it built."""
        self._apply(config)
        if self.plan is None or self.model is None:  # _apply has raised already; this tells the type checker
            raise TrainingError(f"site {self.site.name}: asked to train before the server sent its plan.")
        return self.plan, self.model

    def get_parameters(self, config: dict[str, Any]) -> list[np.ndarray]:
        _, model = self._setup(config)
        return get_weights(model)

    # -- one round of local training ----------------------------------------------------
    def fit(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple[list[np.ndarray], int, dict[str, Any]]:
        plan, model = self._setup(config)
        set_weights(model, parameters)
        rnd = int(config.get("server_round", 1))
        # A different, reproducible data order per site and round.
        seed = (int(plan["train"]["seed"]) + 1009 * rnd + zlib.crc32(self.site.name.encode())) % 2**31
        cfg = TrainConfig.from_dict({**plan["train"], "seed": seed})
        train, val = self.site.data["train"], self.site.data["val"]
        base = classification_loss(train.targets.numpy(), len(plan["classes"]), balanced=False)
        mu = float(config.get("proximal_mu", 0.0))
        loss_fn = ProximalLoss(base=base, model=model, mu=mu)
        result = Trainer(config=cfg, progress=False, device="cpu").fit(
            model, train_data=train, val_data=val, loss_fn=loss_fn)
        last = result.history[-1]
        return get_weights(model), len(train), {"site": self.site.name, "train_loss": float(last["train_loss"]),
                                                     "val_loss": float(last["val_loss"])}

    # -- evaluation of the global model -------------------------------------------------
    def evaluate(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple[float, int, dict[str, Any]]:
        plan, model = self._setup(config)
        set_weights(model, parameters)
        pos = int(plan["positive_index"])
        z, y = self.site.logits(model, "val")
        import torch

        logp = torch.log_softmax(torch.from_numpy(z), dim=1).numpy()
        loss = float(-logp[np.arange(len(y)), y].mean())
        auc = compute_roc_auc(np.exp(logp), y, positive_index=pos) if len(np.unique(y)) == 2 else float("nan")
        metrics: dict[str, Any] = {"site": self.site.name, "val_auc": float(auc)}
        if config.get("final"):
            metrics["report"] = json.dumps(self.site.report(model, positive_index=pos))
        return loss, len(y), metrics
