"""One Trainer for every modality: AdamW, warm-up + cosine schedule, early stopping on a
validation value, seeds, checkpoints and resume, metrics per epoch. Progress leaves the Trainer
through callbacks (``fit(..., callbacks=[...])``, after MONAI's handlers and Lightning's
callbacks): the CLI's rich progress bar is one (``RichProgressBar``, the default), a service job's
progress record another."""

from __future__ import annotations

import copy
import json
import math
import os
import random
import time
import warnings
from collections.abc import Callable, Iterator, Sequence, Sized
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

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
_T = TypeVar("_T")


@dataclass
class TrainResult:
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_score: float = math.nan
    stopped_early: bool = False
    resumed_from_epoch: int | None = None
    seconds: float = 0.0
    #: For DP-SGD runs: the (ε, δ) actually spent and how (see training/privacy.py); holds numbers,
    #: the accountant's and mechanism's names and the list of model conversions.
    privacy: dict[str, Any] | None = None


class TrainerCallback:
    """Hooks the Trainer calls while it fits; override the ones you need (all do nothing here).

    ``member`` is ``(k, n)`` when the fit is member k (from 1) of an n-member ensemble, ``(1, 1)``
    otherwise. A callback observes: it must not change the model or the optimiser.

    Example:
        >>> class Epochs(TrainerCallback):
        ...     def on_epoch_end(self, epoch, max_epochs, stats):
        ...         print(f"{epoch}/{max_epochs}: {format_stats(stats)}")
        >>> Trainer(config=cfg, progress=False).fit(model, ..., callbacks=[Epochs()])
    """

    def on_fit_start(self, *, max_epochs: int, start_epoch: int, member: tuple[int, int]) -> None:
        """Before the first epoch (``start_epoch`` > 1 when resuming)."""

    def on_batch_end(self, *, epoch: int, step: int, loss: float) -> None:
        """After each optimiser step (``step`` counts from 1 within the epoch)."""

    def on_epoch_end(self, epoch: int, max_epochs: int, stats: dict[str, float]) -> None:
        """After validation; ``stats`` is the epoch's history row (train_loss, val_loss, lr, val_metric, ...)."""

    def on_early_stop(self, *, epoch: int, best_epoch: int) -> None:
        """When patience ran out at ``epoch`` (the weights of ``best_epoch`` are restored)."""

    def on_fit_end(self, result: TrainResult | None) -> None:
        """After training, also when it failed (``result`` is then None)."""


def format_stats(stats: dict[str, float]) -> str:
    """An epoch's stats as the progress bar shows them: ``loss 0.412  val 0.398  metric 0.951``."""
    return f"loss {stats['train_loss']:.3f}  val {stats['val_loss']:.3f}" + (
        f"  metric {stats['val_metric']:.3f}" if "val_metric" in stats else "")


class RichProgressBar(TrainerCallback):
    """The CLI's progress bar: epochs done of the maximum, elapsed time and the last epoch's stats."""

    def __init__(self, *, console: Console | None = None, description: str = "train") -> None:
        self.console = console
        self.description = description
        self._bar: Progress | None = None
        self._task: Any = None

    def on_fit_start(self, *, max_epochs: int, start_epoch: int, member: tuple[int, int]) -> None:
        self._bar = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("{task.fields[stats]}"), console=self.console or Console(stderr=True), transient=False)
        self._bar.start()
        self._task = self._bar.add_task(self.description, total=max_epochs, completed=start_epoch - 1, stats="")

    def on_epoch_end(self, epoch: int, max_epochs: int, stats: dict[str, float]) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=epoch, stats=format_stats(stats))

    def on_fit_end(self, result: TrainResult | None) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def to_device(obj: _T, device: torch.device) -> _T:
    """Move a tensor, or any batch object with a ``.to(device)`` method, to ``device``."""
    if torch.is_tensor(obj) or hasattr(obj, "to"):
        return obj.to(device)
    return obj


def pick_device(name: str | None = None) -> torch.device:
    """``None``/"auto": the rank's GPU when there is one, else the CPU."""
    if name is not None and name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _dataset_length(data: Dataset[Any]) -> int:
    """``len(data)``; the Trainer needs map-style Datasets, which know their length."""
    if not isinstance(data, Sized):
        raise TypeError(f"The Trainer needs a Dataset with a length (map-style); got {type(data).__name__}.")
    return len(data)


def iterate_batches(
    data: Dataset[Any], *, batch_size: int, shuffle: bool, generator: torch.Generator | None = None,
    shard: tuple[int, int] = (0, 1),
) -> Iterator[Batch]:
    """Yield Batches in (seeded) random or fixed order.

    With ``shard=(rank, world)`` every rank walks the same global batches and takes rows
    ``rank::world`` of each, so the ranks' mean gradients average to the global batch's.
    Datasets with ``get_batch(indices)`` skip the per-row DataLoader path.
    """
    n = _dataset_length(data)
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
        progress: show a rich progress bar (``RichProgressBar``) when ``fit`` is given no callbacks.
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
    def predict_logits(self, model: nn.Module, data: Dataset[Any], *, batch_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
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
        train_data: Dataset[Any],
        val_data: Dataset[Any],
        loss_fn: LossFn,
        metric_fn: MetricFn | None = None,
        resume: bool = False,
        callbacks: Sequence[TrainerCallback] | None = None,
        member: tuple[int, int] = (1, 1),
    ) -> TrainResult:
        """Train ``model`` in place and return its history; the best epoch's weights are kept.

        Args:
            callbacks: told of fit start, batch end, epoch end, early stop and fit end (on the
                main rank only). ``None``: the rich progress bar when the Trainer has ``progress``.
            member: ``(k, n)`` when this fit trains member k of an n-member ensemble; handed to
                the callbacks so that a progress display can tell the members apart.
        """
        if callbacks is None:
            callbacks = [RichProgressBar(console=self.console)] if self.progress else []
        callbacks = list(callbacks) if distributed.is_main() else []
        cfg = self.config
        n_train, n_val = _dataset_length(train_data), _dataset_length(val_data)
        if n_train == 0 or n_val == 0:
            raise TrainingError(f"Training needs rows in both splits; got {n_train} training and {n_val} validation rows.")
        if cfg.monitor == Monitor.VAL_METRIC and metric_fn is None:
            raise TrainingError("TrainConfig.monitor is 'val_metric' but no metric_fn was given to Trainer.fit.")
        seed_everything(cfg.seed)
        generator = torch.Generator().manual_seed(cfg.seed)
        shard = (distributed.rank(), distributed.world_size())
        write_dir = self.checkpoint_dir if distributed.is_main() else None  # None: this run writes no files
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
        steps_per_epoch = math.ceil(n_train / cfg.batch_size)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, self._lr_lambda(cfg.epochs * steps_per_epoch))
        # DP-SGD: Opacus' engine, optimizer and Poisson-sampling loader (None without privacy).
        privacy = cfg.privacy
        dp_engine: Any = None
        dp_optimizer: Any = None
        dp_loader: Any = None
        if privacy is not None:
            if shard[1] > 1:
                raise TrainingError("Differentially private training under torchrun is not supported yet; run it in one process.")
            if resume:
                raise TrainingError("A differentially private run cannot resume from a checkpoint (the privacy accountant's state is not saved); start it again.")
            loader = DataLoader(train_data, batch_size=cfg.batch_size, shuffle=True, generator=generator,
                                collate_fn=getattr(train_data, "collate", None))
            # The scheduler keeps working: the DP optimizer shares the wrapped one's param groups.
            dp_engine, train_model, dp_optimizer, dp_loader = make_private(model, optimizer, loader, epochs=cfg.epochs, privacy=privacy)
            optimizer = dp_optimizer
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
        if write_dir is not None:
            write_dir.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        for cb in callbacks:
            cb.on_fit_start(max_epochs=cfg.epochs, start_epoch=start_epoch, member=member)
        try:
            for epoch in range(start_epoch, cfg.epochs + 1):
                train_model.train()
                total, count, step = 0.0, 0, 0
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
                    step += 1
                    batch_loss = loss.item()
                    total += batch_loss * len(target)
                    count += len(target)
                    for cb in callbacks:
                        cb.on_batch_end(epoch=epoch, step=step, loss=batch_loss)
                logits, targets = self.predict_logits(model, val_data)
                with torch.no_grad():
                    val_loss = float(loss_fn(torch.from_numpy(logits).to(self.device), torch.from_numpy(targets).to(self.device)).item())
                row: dict[str, float] = {
                    "epoch": epoch, "train_loss": total / count, "val_loss": val_loss, "lr": float(scheduler.get_last_lr()[0])}
                if metric_fn is not None:
                    row["val_metric"] = float(metric_fn(logits, targets))
                row["seconds"] = time.perf_counter() - t0
                result.history.append(row)
                score = row["val_metric"] if higher_is_better else val_loss
                improved = score > result.best_score if higher_is_better else score < result.best_score
                if improved or (math.isnan(result.best_score) and not math.isnan(score)):
                    result.best_score, result.best_epoch, bad_epochs = score, epoch, 0
                    best_state = copy.deepcopy(model.state_dict())
                    if write_dir is not None:
                        save_checkpoint(write_dir / "best", model, None, {"epoch": epoch, "score": score})
                else:
                    bad_epochs += 1
                for cb in callbacks:
                    cb.on_epoch_end(epoch, cfg.epochs, dict(row))
                if write_dir is not None:
                    self._write_epoch(model, optimizer, scheduler, generator, result, epoch, bad_epochs, row)
                if bad_epochs >= cfg.patience:
                    result.stopped_early = True
                    for cb in callbacks:
                        cb.on_early_stop(epoch=epoch, best_epoch=result.best_epoch)
                    break
            if privacy is not None:
                result.privacy = spent(dp_engine, privacy, noise_multiplier=dp_optimizer.noise_multiplier,
                                       sample_rate=1.0 / max(1, len(dp_loader)), steps=dp_steps)
                result.privacy["model_conversions"] = conversions
                release(train_model)
            model.load_state_dict(best_state)
            model.to("cpu")
            if isinstance(loss_fn, nn.Module):
                loss_fn.to("cpu")
            model.eval()
            result.seconds = time.perf_counter() - t0
        except BaseException:
            for cb in callbacks:
                cb.on_fit_end(None)
            raise
        for cb in callbacks:
            cb.on_fit_end(result)
        return result

    def _write_epoch(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler,
        generator: torch.Generator, result: TrainResult, epoch: int, bad_epochs: int, row: dict[str, float],
    ) -> None:
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
