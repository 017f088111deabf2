"""One Trainer for every modality: AdamW, warm-up + cosine schedule, early stopping on a
validation value, seeds, checkpoints and resume, a rich progress bar, metrics per epoch."""

from __future__ import annotations

import copy
import json
import math
import os
import random
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import nn
from torch.utils.data import DataLoader, Dataset

from medassist.exceptions import TrainingError
from medassist.training import distributed
from medassist.training.checkpoint import load_checkpoint, save_checkpoint
from medassist.training.config import Monitor, Schedule, TrainConfig
from medassist.training.privacy import make_private, make_private_compatible, release, spent
from medassist.types import Batch

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: ``metric_fn(logits (N, C), targets (N,)) -> float``, higher is better.
MetricFn = Callable[[np.ndarray, np.ndarray], float]


@dataclass
class TrainResult:
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_score: float = math.nan
    stopped_early: bool = False
    resumed_from_epoch: int | None = None
    seconds: float = 0.0
    #: For DP-SGD runs: the (ε, δ) actually spent and how (see training/privacy.py).
    privacy: dict[str, float] | None = None


def to_device(obj: object, device: torch.device) -> object:
    """Move a tensor, or any batch object with a ``.to(device)`` method, to ``device``."""
    if torch.is_tensor(obj) or hasattr(obj, "to"):
        return obj.to(device)  # type: ignore[union-attr]
    return obj


def pick_device(name: str | None = None) -> torch.device:
    """``None``/"auto": the rank's GPU when there is one, else the CPU."""
    if name not in (None, "auto"):
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def iterate_batches(
    data: Dataset, *, batch_size: int, shuffle: bool, generator: torch.Generator | None = None,
    shard: tuple[int, int] = (0, 1),
) -> Iterator[Batch]:
    """Yield Batches in (seeded) random or fixed order.

    With ``shard=(rank, world)`` every rank walks the same global batches and takes rows
    ``rank::world`` of each, so the ranks' mean gradients average to the global batch's.
    Datasets with ``get_batch(indices)`` skip the per-row DataLoader path.
    """
    n = len(data)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    rk, world = shard
    chunks = [order[start : start + batch_size][rk::world] for start in range(0, n, batch_size)]
    chunks = [c for c in chunks if len(c)]
    if hasattr(data, "get_batch"):
        for idx in chunks:
            yield data.get_batch(idx)
        return
    loader = DataLoader(data, batch_sampler=[c.tolist() for c in chunks], collate_fn=getattr(data, "collate", None))
    yield from loader


class Trainer:
    """Fits a ``torch.nn.Module`` on a training Dataset, stopping early on a validation value.

    Args:
        config: the TrainConfig.
        checkpoint_dir: where ``last``/``best`` checkpoints and ``metrics.jsonl`` go (optional).
        progress: show a rich progress bar.
        console: the rich Console to draw on (stderr by default).
        device: "auto" (the rank's GPU if there is one, else CPU), "cpu" or "cuda[:N]". On a GPU
            the forward pass runs in bfloat16 autocast. ``fit`` hands the model back on the CPU.

    Example:
        >>> result = Trainer(config=TrainConfig(epochs=50)).fit(
        ...     model, train_data=train_ds, val_data=val_ds, loss_fn=nn.CrossEntropyLoss())
    """

    def __init__(
        self, *, config: TrainConfig, checkpoint_dir: Path | None = None, progress: bool = True,
        console: Console | None = None, device: str | None = "auto",
    ) -> None:
        self.config = config
        self.device = pick_device(device)
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.progress = progress
        self.console = console or Console(stderr=True)

    # ------------------------------------------------------------------------------------
    def _lr_lambda(self, total_steps: int) -> Callable[[int], float]:
        cfg = self.config
        warmup = max(1, int(cfg.warmup_fraction * total_steps)) if cfg.warmup_fraction > 0 else 0

        def f(step: int) -> float:
            if warmup and step < warmup:
                return (step + 1) / warmup
            if cfg.schedule == Schedule.CONSTANT:
                return 1.0
            t = (step - warmup) / max(1, total_steps - warmup)
            return 0.02 + 0.98 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))

        return f

    @torch.no_grad()
    def predict_logits(self, model: nn.Module, data: Dataset, *, batch_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Logits (N, C) and targets (N,) over ``data`` in order, in eval mode."""
        model.eval()
        device = next(model.parameters()).device
        outs, targets = [], []
        for batch in iterate_batches(data, batch_size=batch_size or max(256, self.config.batch_size), shuffle=False):
            outs.append(model(to_device(batch.inputs, device)).float().cpu())
            targets.append(batch.target.cpu())
        return torch.cat(outs).numpy(), torch.cat(targets).numpy()

    def fit(
        self,
        model: nn.Module,
        *,
        train_data: Dataset,
        val_data: Dataset,
        loss_fn: LossFn,
        metric_fn: MetricFn | None = None,
        resume: bool = False,
    ) -> TrainResult:
        cfg = self.config
        if len(train_data) == 0 or len(val_data) == 0:
            raise TrainingError(f"Training needs rows in both splits; got {len(train_data)} training and {len(val_data)} validation rows.")
        if cfg.monitor == Monitor.VAL_METRIC and metric_fn is None:
            raise TrainingError("TrainConfig.monitor is 'val_metric' but no metric_fn was given to Trainer.fit.")
        seed_everything(cfg.seed)
        generator = torch.Generator().manual_seed(cfg.seed)
        shard = (distributed.rank(), distributed.world_size())
        writes = self.checkpoint_dir is not None and distributed.is_main()
        # Under torchrun, DDP averages the ranks' gradients; ``model`` stays the plain module
        # that validation, checkpoints and the caller see.
        # DP-SGD: BatchNorm → GroupNorm (in place, before the optimiser sees the parameters).
        conversions = make_private_compatible(model) if cfg.privacy is not None else []
        for name in conversions:
            self.console.print(f"note: model converted for differential privacy: {name} (Opacus cannot train it as it was).", highlight=False)
        model.to(self.device)
        if isinstance(loss_fn, nn.Module):
            loss_fn.to(self.device)  # e.g. class weights
        on_gpu = self.device.type == "cuda"
        train_model = (
            nn.parallel.DistributedDataParallel(model, device_ids=[self.device.index] if on_gpu else None)
            if shard[1] > 1 else model
        )
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        steps_per_epoch = math.ceil(len(train_data) / cfg.batch_size)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, self._lr_lambda(cfg.epochs * steps_per_epoch))
        dp_engine = dp_loader = None
        if cfg.privacy is not None:
            if shard[1] > 1:
                raise TrainingError("Differentially private training under torchrun is not supported yet; run it in one process.")
            if resume:
                raise TrainingError("A differentially private run cannot resume from a checkpoint (the privacy accountant's state is not saved); start it again.")
            loader = DataLoader(train_data, batch_size=cfg.batch_size, shuffle=True, generator=generator,
                                collate_fn=getattr(train_data, "collate", None))
            # The scheduler keeps working: the DP optimizer shares the wrapped one's param groups.
            dp_engine, train_model, optimizer, dp_loader = make_private(model, optimizer, loader, epochs=cfg.epochs, privacy=cfg.privacy)
        dp_steps = 0
        higher_is_better = cfg.monitor == Monitor.VAL_METRIC
        result = TrainResult(best_score=-math.inf if higher_is_better else math.inf)
        best_state = copy.deepcopy(model.state_dict())
        start_epoch, bad_epochs = 1, 0
        if resume and self.checkpoint_dir is not None and (self.checkpoint_dir / "last.json").exists():
            meta = load_checkpoint(self.checkpoint_dir / "last", model, optimizer)
            scheduler.load_state_dict(meta["scheduler"])
            torch.set_rng_state(torch.tensor(meta["torch_rng"], dtype=torch.uint8))
            generator.set_state(torch.tensor(meta["generator"], dtype=torch.uint8))
            result.history, result.best_epoch, result.best_score = meta["history"], meta["best_epoch"], meta["best_score"]
            bad_epochs, start_epoch = meta["bad_epochs"], meta["epoch"] + 1
            result.resumed_from_epoch = meta["epoch"]
            if (self.checkpoint_dir / "best.json").exists():
                best_model = copy.deepcopy(model)
                load_checkpoint(self.checkpoint_dir / "best", best_model)
                best_state = copy.deepcopy(best_model.state_dict())
        if writes:
            self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        with Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("{task.fields[stats]}"), console=self.console, disable=not (self.progress and distributed.is_main()), transient=False,
        ) as bar:
            task = bar.add_task("train", total=cfg.epochs, completed=start_epoch - 1, stats="")
            for epoch in range(start_epoch, cfg.epochs + 1):
                train_model.train()
                total, count = 0.0, 0
                batches = dp_loader if dp_loader is not None else iterate_batches(
                    train_data, batch_size=cfg.batch_size, shuffle=True, generator=generator, shard=shard)
                for batch in batches:
                    if not isinstance(batch, Batch):  # Opacus' empty Poisson batch comes as a list
                        batch = Batch(*batch)
                    if len(batch.target) == 0:
                        continue  # nothing sampled this step: no data touched, nothing to learn
                    optimizer.zero_grad(set_to_none=True)
                    inputs, target = to_device(batch.inputs, self.device), to_device(batch.target, self.device)
                    with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=on_gpu):
                        outputs = train_model(inputs)
                    loss = loss_fn(outputs.float(), target)
                    if not torch.isfinite(loss):
                        raise TrainingError(f"The training loss became {loss.item()} at epoch {epoch}; lower the learning rate (lr={cfg.lr}).")
                    with warnings.catch_warnings():
                        # Opacus' per-sample hooks make torch warn that inputs need no grad.
                        warnings.filterwarnings("ignore", message="Full backward hook is firing")
                        loss.backward()
                    if cfg.grad_clip > 0 and dp_engine is None:  # DP-SGD clips per sample instead
                        nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                    optimizer.step()
                    dp_steps += 1
                    scheduler.step()
                    total += loss.item() * len(target)
                    count += len(target)
                logits, targets = self.predict_logits(model, val_data)
                with torch.no_grad():
                    val_loss = float(loss_fn(torch.from_numpy(logits).to(self.device), torch.from_numpy(targets).to(self.device)).item())
                row = {"epoch": epoch, "train_loss": total / count, "val_loss": val_loss, "lr": scheduler.get_last_lr()[0]}
                if metric_fn is not None:
                    row["val_metric"] = float(metric_fn(logits, targets))
                row["seconds"] = time.perf_counter() - t0
                result.history.append(row)
                score = row["val_metric"] if higher_is_better else val_loss
                improved = score > result.best_score if higher_is_better else score < result.best_score
                if improved or (math.isnan(result.best_score) and not math.isnan(score)):
                    result.best_score, result.best_epoch, bad_epochs = score, epoch, 0
                    best_state = copy.deepcopy(model.state_dict())
                    if writes:
                        save_checkpoint(self.checkpoint_dir / "best", model, None, {"epoch": epoch, "score": score})
                else:
                    bad_epochs += 1
                stats = f"loss {row['train_loss']:.3f}  val {val_loss:.3f}" + (
                    f"  metric {row['val_metric']:.3f}" if "val_metric" in row else "")
                bar.update(task, completed=epoch, stats=stats)
                if writes:
                    self._write_epoch(model, optimizer, scheduler, generator, result, epoch, bad_epochs, row)
                if bad_epochs >= cfg.patience:
                    result.stopped_early = True
                    break
        if dp_engine is not None:
            result.privacy = spent(dp_engine, cfg.privacy, noise_multiplier=optimizer.noise_multiplier,
                                   sample_rate=1.0 / max(1, len(dp_loader)), steps=dp_steps)
            result.privacy["model_conversions"] = conversions
            release(train_model)
        model.load_state_dict(best_state)
        model.to("cpu")
        if isinstance(loss_fn, nn.Module):
            loss_fn.to("cpu")
        model.eval()
        result.seconds = time.perf_counter() - t0
        return result

    def _write_epoch(self, model, optimizer, scheduler, generator, result, epoch, bad_epochs, row) -> None:
        if self.checkpoint_dir is None:
            return
        meta = {
            "epoch": epoch, "bad_epochs": bad_epochs, "best_epoch": result.best_epoch, "best_score": result.best_score,
            "history": result.history, "scheduler": scheduler.state_dict(),
            "torch_rng": torch.get_rng_state().tolist(), "generator": generator.get_state().tolist(),
            "config": self.config.to_dict(),
        }
        save_checkpoint(self.checkpoint_dir / "last", model, optimizer, meta)
        with (self.checkpoint_dir / "metrics.jsonl").open("a") as fh:
            fh.write(json.dumps(row) + "\n")
