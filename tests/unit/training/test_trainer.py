import json

import numpy as np
import pytest
import torch
from torch import nn

from medassist.data.synthetic import random_binary_table
from medassist.exceptions import ConfigError, TrainingError
from medassist.models import build_model
from medassist.training import ArrayDataset, TrainConfig, Trainer, class_weights, classification_loss


def _data(seed=0):
    x, y = random_binary_table(n=240, n_features=6, seed=seed)
    return ArrayDataset(features=x[:180], targets=y[:180]), ArrayDataset(features=x[180:], targets=y[180:]), y[:180]


def _fit(cfg, ckpt=None, resume=False, model=None):
    train, val, ytr = _data()
    torch.manual_seed(0)
    model = model or build_model("mlp", size="small", n_features=6, n_outputs=2)[0]
    res = Trainer(config=cfg, checkpoint_dir=ckpt, progress=False).fit(
        model, train_data=train, val_data=val, loss_fn=classification_loss(ytr, 2), resume=resume
    )
    return model, res


def test_trainer_learns_a_separable_problem():
    model, res = _fit(TrainConfig(epochs=30, patience=30))
    assert res.history[-1]["train_loss"] < res.history[0]["train_loss"]
    _, val, _ = _data()
    acc = (model(val.features).argmax(1) == val.targets).float().mean().item()
    assert acc > 0.85


def test_same_seed_same_weights():
    a, _ = _fit(TrainConfig(epochs=3, seed=5))
    b, _ = _fit(TrainConfig(epochs=3, seed=5))
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q)


def test_early_stopping_restores_best_epoch():
    model, res = _fit(TrainConfig(epochs=200, patience=3, lr=0.05, schedule="constant"))
    assert res.stopped_early and len(res.history) < 200
    best = min(res.history, key=lambda r: r["val_loss"])
    assert res.best_epoch == best["epoch"]


def test_resume_from_checkpoint_matches_uninterrupted_run(tmp_path):
    full, _ = _fit(TrainConfig(epochs=6, patience=100), ckpt=tmp_path / "full")
    # interrupted: 3 epochs, then resume to 6 with a fresh model object
    _fit(TrainConfig(epochs=6, patience=100), ckpt=tmp_path / "part")
    meta = json.loads((tmp_path / "part" / "last.json").read_text())
    assert meta["epoch"] == 6
    # rewind: train 3 epochs into a checkpoint dir, then resume to 6
    cfg3 = TrainConfig(epochs=6, patience=100)
    train, val, ytr = _data()
    torch.manual_seed(0)
    m = build_model("mlp", size="small", n_features=6, n_outputs=2)[0]
    trainer = Trainer(config=cfg3, checkpoint_dir=tmp_path / "r", progress=False)

    class Stop(Exception):
        pass

    calls = {"n": 0}
    base_loss = classification_loss(ytr, 2)

    def loss_that_dies(logits, target):  # simulates a killed worker during epoch 4
        calls["n"] += 1
        if calls["n"] > 3 * 3 + 1:  # 3 batches/epoch at batch_size 64 + 1 val call per epoch
            raise Stop
        return base_loss(logits, target)

    with pytest.raises(Stop):
        trainer.fit(m, train_data=train, val_data=val, loss_fn=loss_that_dies)
    assert json.loads((tmp_path / "r" / "last.json").read_text())["epoch"] >= 2
    m2 = build_model("mlp", size="small", n_features=6, n_outputs=2)[0]
    res = Trainer(config=cfg3, checkpoint_dir=tmp_path / "r", progress=False).fit(
        m2, train_data=train, val_data=val, loss_fn=base_loss, resume=True
    )
    assert res.resumed_from_epoch is not None and len(res.history) == 6
    for p, q in zip(full.parameters(), m2.parameters()):
        torch.testing.assert_close(p, q, atol=1e-5, rtol=1e-4)
    assert (tmp_path / "r" / "metrics.jsonl").exists()


def test_nan_loss_is_a_training_error():
    train, val, _ = _data()
    model = build_model("mlp", size="small", n_features=6, n_outputs=2)[0]
    with pytest.raises(TrainingError, match="loss became nan"):
        Trainer(config=TrainConfig(epochs=1), progress=False).fit(
            model, train_data=train, val_data=val, loss_fn=lambda z, t: (z * float("nan")).sum()
        )


@pytest.mark.parametrize("kw, match", [
    ({"lr": -1}, r"'lr' parameter of TrainConfig must be a number in \(0, 1\]. Got -1 instead"),
    ({"epochs": 0}, "'epochs'"),
    ({"schedule": "cosin"}, "did you mean 'cosine'"),
])
def test_config_validation_messages(kw, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**kw)


def test_balanced_class_weights():
    w = class_weights(np.array([0, 0, 0, 1]), 2)
    assert w.tolist() == pytest.approx([4 / 6, 2.0])
    assert isinstance(classification_loss(np.array([0, 1]), 2), nn.CrossEntropyLoss)


def test_callbacks_hear_fit_start_batches_epochs_in_order_early_stop_and_fit_end():
    from medassist.training.trainer import TrainerCallback, format_stats

    class Recorder(TrainerCallback):
        def __init__(self):
            self.events = []

        def on_fit_start(self, *, max_epochs, start_epoch, member):
            self.events.append(("start", max_epochs, start_epoch, member))

        def on_batch_end(self, *, epoch, step, loss):
            self.events.append(("batch", epoch, step))

        def on_epoch_end(self, epoch, max_epochs, stats):
            self.events.append(("epoch", epoch, max_epochs, format_stats(stats)))

        def on_early_stop(self, *, epoch, best_epoch):
            self.events.append(("stop", epoch, best_epoch))

        def on_fit_end(self, result):
            self.events.append(("end", result))

    train, val, ytr = _data()
    torch.manual_seed(0)
    model = build_model("mlp", size="small", n_features=6, n_outputs=2)[0]
    rec = Recorder()
    cfg = TrainConfig(epochs=200, patience=3, lr=0.05, schedule="constant", batch_size=64)
    res = Trainer(config=cfg, progress=False).fit(model, train_data=train, val_data=val, loss_fn=classification_loss(ytr, 2),
                                                  callbacks=[rec], member=(2, 5))
    assert rec.events[0] == ("start", 200, 1, (2, 5)) and rec.events[-1] == ("end", res)
    epochs = [e for e in rec.events if e[0] == "epoch"]
    assert [e[1] for e in epochs] == list(range(1, len(res.history) + 1)) and all(e[2] == 200 for e in epochs)
    assert epochs[0][3] == f"loss {res.history[0]['train_loss']:.3f}  val {res.history[0]['val_loss']:.3f}"
    # three batches of 64 rows (180 in all) before each epoch's end
    first_end = rec.events.index(epochs[0])
    assert rec.events[1:first_end] == [("batch", 1, 1), ("batch", 1, 2), ("batch", 1, 3)]
    assert res.stopped_early and rec.events[-2] == ("stop", len(res.history), res.best_epoch)


def test_a_failed_fit_still_ends_its_callbacks():
    from medassist.training.trainer import TrainerCallback

    class Ends(TrainerCallback):
        ended = "not called"

        def on_fit_end(self, result):
            self.ended = result

    train, val, ytr = _data()
    model = build_model("mlp", size="small", n_features=6, n_outputs=2)[0]
    cb = Ends()
    with pytest.raises(TrainingError):
        Trainer(config=TrainConfig(epochs=3), progress=False).fit(
            model, train_data=train, val_data=val, loss_fn=lambda out, t: torch.tensor(float("nan")), callbacks=[cb])
    assert cb.ended is None
