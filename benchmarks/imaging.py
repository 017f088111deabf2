"""Image diagnosis benchmark.

Part 1 (always): CPU training throughput (images/s) and inference figures of ResNet-18 (the
``large`` preset: the real ResNet-18 with the MedMNIST small-image stem, 11.2 M parameters) at
28×28 and 64×64, through medassist's Trainer side by side with a bare PyTorch loop over the same
MONAI network, the same tensors, the same optimiser and batch size, in the same process. Runs
alternate (bare, medassist, bare, medassist, ...) and the best of them is reported (as timeit does):
on a shared machine identical runs differ by up to 2×, and the slow ones measure the neighbours. Goal: medassist
overhead ≤ 10%.

- training: AdamW, batch 64, no augmentation on either side (augmentation is a choice, not
  overhead); both evaluate the same validation tensors once per epoch. medassist adds what its
  Trainer always does: gradient clipping, the LR schedule, a finite-loss check, best-state copies.
- inference: batched throughput (``Trainer.predict_logits`` against ``model(x)`` under
  ``no_grad``) and single-image latency, bare forward against ``predict_image`` end to end from a
  PNG file (read, check, featurize, forward, calibrate): not the same work, shown for scale.

Part 3 (``--presets``): what the default buys. On a MedMNIST-layout file of synthetic lesions
with known per-image difficulty (``medassist.data.synthetic_images.write_lesion_npz``: 3,000
images, 28 px, official-style 70/10/20 split; faint lesions, bright streaks and ring look-alikes,
so no model reaches AUC 1), ``medassist train`` as a user runs it: the default ``base`` preset and
the ``small`` CNN, each through the whole pipeline (early stopping on validation AUC, temperature
scaling on validation), with the pixel logistic-regression baseline every run fits beside it.
Test AUC with its bootstrap interval, ECE, paired AUC differences, training seconds.

Part 2 (only with ``--medmnist-dir``): the MedMNIST v2 protocol (official splits, best epoch by
validation AUC, ResNet-18 (28), 100 epochs, batch 128, lr 1e-3 as in the paper) on PneumoniaMNIST,
BreastMNIST, DermaMNIST, BloodMNIST, beside the paper's test AUC/ACC. (CPU only for now: the shared Trainer does not move
models to a GPU yet.)

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/imaging.py
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/imaging.py --presets      # part 3 only
    .venv/bin/python benchmarks/imaging.py --medmnist-dir ~/.medassist/data/medmnist

Writes benchmarks/results/imaging.json and its section of benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "imaging.json"
README = HERE / "README.md"
BEGIN, END = "<!-- imaging:begin -->", "<!-- imaging:end -->"
P3_BEGIN, P3_END = "<!-- imaging-presets:begin -->", "<!-- imaging-presets:end -->"
PAPER = {  # MedMNIST v2 (Yang et al., 2023), ResNet-18 (28): test AUC / ACC
    "pneumoniamnist": (0.944, 0.854), "breastmnist": (0.901, 0.863), "dermamnist": (0.917, 0.735), "bloodmnist": (0.998, 0.958),
}


def _data(n: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    from medassist.data.synthetic_images import synthetic_images

    imgs, y, _ = synthetic_images(n=n, size=size, seed=seed)
    x = torch.from_numpy(imgs.astype(np.float32) / 255.0)
    return (x - x.mean()) / x.std(), torch.as_tensor(y, dtype=torch.int64)


def _model(size: int, seed: int) -> nn.Module:
    from medassist.models import build_model

    torch.manual_seed(seed)
    return build_model("resnet18", size="large", in_channels=1, n_outputs=2, image_size=size)[0]


def bare_train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, xv: torch.Tensor, yv: torch.Tensor, *, epochs: int, batch: int) -> float:
    """The loop a PyTorch user would write: seconds for ``epochs`` epochs (+ one validation pass each)."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    loss_fn = nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(x), generator=g)
        for s in range(0, len(x), batch):
            idx = order[s : s + batch]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            loss_fn(torch.cat([model(xv[s : s + 256]) for s in range(0, len(xv), 256)]), yv).item()
    return time.perf_counter() - t0


def medassist_train(model: nn.Module, x, y, xv, yv, *, epochs: int, batch: int) -> float:
    from medassist.pipeline.imaging import ImageTensorDataset
    from medassist.training import Monitor, TrainConfig, Trainer

    cfg = TrainConfig(epochs=epochs, batch_size=batch, lr=1e-3, weight_decay=1e-4, patience=epochs + 1, monitor=Monitor.VAL_LOSS)
    t0 = time.perf_counter()
    Trainer(config=cfg, progress=False).fit(model, train_data=ImageTensorDataset(images=x, targets=y),
                                           val_data=ImageTensorDataset(images=xv, targets=yv), loss_fn=nn.CrossEntropyLoss())
    return time.perf_counter() - t0


def part1(*, sizes: list[int], n_train: dict[int, int], epochs: int, repeats: int, batch: int) -> dict:
    from medassist.pipeline.imaging import ImageTensorDataset
    from medassist.training import TrainConfig, Trainer

    out = {}
    for size in sizes:
        n = n_train[size]
        x, y = _data(n, size, 0)
        xv, yv = _data(max(32, n // 4), size, 1)
        init = _model(size, 0).state_dict()
        times = {"bare": [], "medassist": []}
        for r in range(repeats):
            for name, fn in (("bare", bare_train), ("medassist", medassist_train)):
                m = _model(size, 0)
                m.load_state_dict(copy.deepcopy(init))
                times[name].append(fn(m, x, y, xv, yv, epochs=epochs, batch=batch))
                print(f"  {size}px {name} run {r + 1}: {times[name][-1]:.1f}s", file=sys.stderr, flush=True)
        # best of N (the timeit convention): on a shared machine the slow runs measure the neighbours
        train = {k: n * epochs / min(v) for k, v in times.items()}
        spread = max(max(v) / min(v) for v in times.values())
        # inference: batched throughput and single-image latency
        model = _model(size, 0).eval()
        xi = torch.cat([xv] * max(1, 256 // len(xv)))[:256]
        ds = ImageTensorDataset(images=xi, targets=torch.zeros(len(xi), dtype=torch.int64))
        trainer = Trainer(config=TrainConfig(batch_size=64), progress=False)
        inf = {"bare": [], "medassist": []}
        for _ in range(repeats):
            t0 = time.perf_counter()
            with torch.no_grad():
                for s in range(0, len(xi), 256):
                    model(xi[s : s + 256])
            inf["bare"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            trainer.predict_logits(model, ds)
            inf["medassist"].append(time.perf_counter() - t0)
        lat = []
        with torch.no_grad():
            for i in range(21):
                t0 = time.perf_counter()
                model(xi[i : i + 1])
                lat.append(time.perf_counter() - t0)
        out[str(size)] = {
            "n_train": n, "n_val": len(xv), "epochs": epochs, "batch_size": batch, "repeats": repeats,
            "train_seconds": times, "train_images_per_s": train,
            "train_overhead": train["bare"] / train["medassist"] - 1, "train_run_spread_max_over_min": spread,
            "infer_images_per_s": {k: len(xi) / min(v) for k, v in inf.items()},
            "infer_overhead": min(inf["medassist"]) / min(inf["bare"]) - 1,
            "bare_latency_ms_1_image": 1000 * statistics.median(lat[1:]),
            "end_to_end_latency_ms_png": _end_to_end_latency(size),
        }
    return out


def _end_to_end_latency(size: int) -> float:
    """``predict_image`` on a PNG (no Grad-CAM) with a bundle holding the same ResNet-18."""
    from PIL import Image

    from medassist.data.io.images import ImageSet
    from medassist.data.synthetic_images import synthetic_images
    from medassist.pipeline.imaging import ImageSpec, predict_image, train_images
    from medassist.registry.bundle import load_bundle
    from medassist.training import TrainConfig

    imgs, y, classes = synthetic_images(n=24, size=size, seed=3)
    data = ImageSet(images=imgs, targets=y.astype(np.int64), classes=classes, task="binary", positive_class="lesion",
                    groups=np.arange(24).astype(str), modalities=[""] * 24, source="bench", provenance="synthetic", intensity="uint8")
    with tempfile.TemporaryDirectory() as tmp:
        spec = ImageSpec(size="large", n_boot=0, n_gradcam=0, augment=False, train=TrainConfig(epochs=1, batch_size=32))
        out = train_images(data, spec=spec, out_dir=Path(tmp) / "b", progress=False)
        bundle = load_bundle(out.bundle_dir)
        png = Path(tmp) / "x.png"
        Image.fromarray(imgs[0, 0]).save(png)
        lat = []
        for _ in range(11):
            t0 = time.perf_counter()
            predict_image(bundle, png)
            lat.append(time.perf_counter() - t0)
    return 1000 * statistics.median(lat[1:])


def part2(medmnist_dir: Path, *, epochs: int, device: str) -> dict:
    from medassist.data.io.medmnist import load_medmnist
    from medassist.evaluation.multilabel import medmnist_acc, medmnist_auc
    from medassist.pipeline.imaging import ImageSpec, _logits, fit_images, probabilities
    from medassist.training import Monitor, TrainConfig

    out = {}
    for name, (paper_auc, paper_acc) in PAPER.items():
        path = medmnist_dir / f"{name}.npz"
        if not path.exists():
            print(f"  {path} not found; skipped", file=sys.stderr)
            continue
        data = load_medmnist(path)
        spec = ImageSpec(model="resnet18", size="large", augment=False, class_weight="none",
                         train=TrainConfig(epochs=epochs, batch_size=128, lr=1e-3, weight_decay=0.0, patience=epochs, monitor=Monitor.VAL_METRIC))
        t0 = time.perf_counter()
        fitted = fit_images(data, data.splits, spec=spec)
        x = fitted.featurizer.transform(data.images[data.splits["test"]])
        p = probabilities(_logits(fitted.model, x), task=data.task, temperature=fitted.temperature)
        y = data.targets[data.splits["test"]]
        out[name] = {"auc": medmnist_auc(p, y, task=data.task), "acc": medmnist_acc(p, y, task=data.task),
                     "paper_auc": paper_auc, "paper_acc": paper_acc, "best_epoch": fitted.result.best_epoch,
                     "seconds": time.perf_counter() - t0, "device": device}
    return out


def part3(*, n: int, size: int, seed: int, epochs: int, sizes: list[str]) -> dict:
    """Default preset vs the small CNN vs the pixel baseline, through ``train_images`` as the CLI runs it."""
    from medassist.assistants.imaging import default_image_config
    from medassist.data.io.medmnist import load_medmnist
    from medassist.data.synthetic_images import write_lesion_npz
    from medassist.evaluation.metrics import paired_auc_difference
    from medassist.pipeline.imaging import ImageSpec, _logits, baseline_probabilities, probabilities, train_images
    from medassist.registry.bundle import load_bundle

    out: dict = {"n_images": n, "image_size": size, "seed": seed, "rows": {}}
    with tempfile.TemporaryDirectory() as tmp:
        path = write_lesion_npz(Path(tmp) / f"lesions_{size}.npz", n=n, size=size, seed=seed)
        data = load_medmnist(path)
        out["n_train"], out["n_val"], out["n_test"] = (len(data.splits[k]) for k in ("train", "val", "test"))
        probs, y = {}, None
        for preset in sizes:
            spec = ImageSpec(size=preset, seed=seed, class_weight="balanced", n_boot=1000, n_gradcam=0,
                             train=default_image_config(seed=seed, epochs=epochs, size=preset))
            t0 = time.perf_counter()
            res = train_images(data, spec=spec, out_dir=Path(tmp) / preset, progress=False)
            wall = time.perf_counter() - t0
            bundle = load_bundle(res.bundle_dir)
            te = data.splits["test"]
            x = bundle.featurizer.transform(data.images[te])
            probs[preset] = probabilities(_logits(bundle.model, x), task="binary", temperature=float(bundle.calibration["temperature"]))
            y = data.targets[te]
            m = res.metrics["metrics"]
            out["rows"][f"resnet18-{preset}"] = {
                "n_parameters": res.n_parameters, "auc": m["auc"], "ece": m["ece"], "accuracy": m["accuracy"],
                "train_seconds": res.result.seconds, "pipeline_seconds": wall, "best_epoch": res.result.best_epoch,
                "epochs_run": len(res.result.history), "temperature": float(bundle.calibration["temperature"])}
            print(f"  {preset}: AUC {m['auc']['value']:.3f}, ECE {m['ece']['value']:.3f}, {res.result.seconds:.0f} s", file=sys.stderr, flush=True)
            if res.baselines and "logistic (pixels)" not in out["rows"]:
                b = res.baselines[0]
                out["rows"]["logistic (pixels)"] = {"label": b["label"], "auc": b["metrics"]["auc"], "ece": b["metrics"]["ece"],
                                                    "accuracy": b["metrics"]["accuracy"], "n_parameters": None, "train_seconds": None}
                state = json.loads((res.bundle_dir / "baselines.json").read_text())["logistic"]
                probs["logistic"] = baseline_probabilities(state, x)
        names = list(probs)
        out["paired_auc_differences"] = {
            f"{a} − {b}": paired_auc_difference(probs[a], probs[b], y, positive_index=1, n_boot=1000, seed=seed)
            for i, a in enumerate(names) for b in names[i + 1:]}
    return out


def write_presets_readme(res: dict) -> None:
    p3 = res["part3"]
    lines = [P3_BEGIN, f"Measured {p3['date']} on {p3['machine']}, torch {res['torch']}, MONAI {res['monai']}, "
             f"OMP_NUM_THREADS={p3['omp_num_threads']}, on a machine shared with other jobs (load {p3['load']}). "
             f"Synthetic lesions with known difficulty ({p3['n_images']:,} images, {p3['image_size']} px, "
             f"{p3['n_train']}/{p3['n_val']}/{p3['n_test']} train/val/test), each preset through `train_images` as "
             "`medassist train` runs it (early stopping on validation AUC, temperature and class-bias scaling on validation); "
             "the logistic regression on pooled pixels is the baseline every run fits beside its model. "
             "AUC and ECE on the test split with bootstrap 95% intervals (1,000 resamples).", "",
             "| model | parameters | test AUC [95% CI] | ECE [95% CI] | accuracy | train s | best / run epochs |",
             "|---|---|---|---|---|---|---|"]

    def ci(m: dict) -> str:
        return f"{m['value']:.3f} [{m['ci_low']:.3f}, {m['ci_high']:.3f}]" if m.get("ci_low") is not None else f"{m['value']:.3f}"

    for name, r in p3["rows"].items():
        params = f"{r['n_parameters']:,}" if r.get("n_parameters") else "—"
        secs = f"{r['train_seconds']:.0f}" if r.get("train_seconds") else "< 1"
        ep = f"{r['best_epoch']} / {r['epochs_run']}" if "best_epoch" in r else "—"
        label = f"`{name}`" + (" (default)" if name.endswith("-base") else "")
        lines.append(f"| {label} | {params} | {ci(r['auc'])} | {ci(r['ece'])} | {r['accuracy']['value']:.3f} | {secs} | {ep} |")
    lines += ["", "Paired AUC differences (same test images, same bootstrap resamples):", ""]
    for k, d in p3["paired_auc_differences"].items():
        lines.append(f"- {k}: {d['difference']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]")
    lines.append(P3_END)
    block = "\n".join(lines)
    text = README.read_text()
    if P3_BEGIN in text and P3_END in text:
        text = text[: text.index(P3_BEGIN)] + block + text[text.index(P3_END) + len(P3_END):]
    elif END in text:
        text = text.replace(END, END + "\n\n" + block, 1)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    tmp = README.with_suffix(".md.tmp")
    tmp.write_text(text)
    os.replace(tmp, README)


def write_readme(res: dict) -> None:
    lines = [BEGIN, f"Measured {res['date']} on {res['machine']}, torch {res['torch']}, MONAI {res['monai']}, "
             f"OMP_NUM_THREADS={res['omp_num_threads']}, ResNet-18 `large` preset ({res['n_parameters']:,} parameters), "
             "synthetic 1-channel images (speed does not depend on content), best of alternating runs (bare, medassist, bare, ...). "
             "`spread`: slowest / fastest of the identical runs, i.e. how much the shared machine disturbed them.", "",
             "| image | train img/s bare PyTorch | train img/s medassist | overhead | spread | batched inference img/s bare | medassist | overhead | 1-image forward ms | `predict` from PNG ms |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for size, r in res["part1"].items():
        lines.append(f"| {size}×{size} | {r['train_images_per_s']['bare']:.1f} | {r['train_images_per_s']['medassist']:.1f} | "
                     f"{100 * r['train_overhead']:+.1f}% | {r['train_run_spread_max_over_min']:.2f}× | {r['infer_images_per_s']['bare']:.1f} | {r['infer_images_per_s']['medassist']:.1f} | "
                     f"{100 * r['infer_overhead']:+.1f}% | {r['bare_latency_ms_1_image']:.1f} | {r['end_to_end_latency_ms_png']:.1f} |")
    if res.get("part2"):
        lines += ["", "| MedMNIST (28) | test AUC | paper AUC | test ACC | paper ACC | best epoch |", "|---|---|---|---|---|---|"]
        for name, r in res["part2"].items():
            lines.append(f"| {name} | {r['auc']:.3f} | {r['paper_auc']:.3f} | {r['acc']:.3f} | {r['paper_acc']:.3f} | {r['best_epoch']} |")
    else:
        lines += ["", "Part 2 (MedMNIST v2 protocol) not run: no MedMNIST files on this machine (`--medmnist-dir`)."]
    lines.append(END)
    block = "\n".join(lines)
    text = README.read_text() if README.exists() else "# Benchmarks\n\n"  # re-read right before writing: README is shared
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    else:
        text = text.rstrip() + "\n\n## Image diagnosis (`benchmarks/imaging.py`)\n\n```bash\nOMP_NUM_THREADS=1 .venv/bin/python benchmarks/imaging.py\n```\n\n" + block + "\n"
    tmp = README.with_suffix(".md.tmp")
    tmp.write_text(text)
    os.replace(tmp, README)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", type=int, default=[28, 64])
    ap.add_argument("--n-train-28", type=int, default=128)
    ap.add_argument("--n-train-64", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--medmnist-dir", type=Path, default=None)
    ap.add_argument("--medmnist-epochs", type=int, default=100)
    ap.add_argument("--presets", action="store_true", help="run part 3 only (default vs small vs baseline) and merge it into the results")
    ap.add_argument("--presets-n", type=int, default=3000)
    ap.add_argument("--presets-size", type=int, default=28)
    ap.add_argument("--presets-epochs", type=int, default=30)
    args = ap.parse_args(argv)
    threads = os.environ.get("OMP_NUM_THREADS")
    if threads:
        torch.set_num_threads(int(threads))
    import monai

    from medassist.models import count_parameters

    res = {"date": date.today().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
           "torch": torch.__version__, "monai": monai.__version__, "omp_num_threads": threads or "unset",
           "n_parameters": count_parameters(_model(28, 0))}
    if args.presets:
        old = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
        p3 = part3(n=args.presets_n, size=args.presets_size, seed=0, epochs=args.presets_epochs, sizes=["base", "small"])
        p3.update(date=res["date"], machine=res["machine"], omp_num_threads=res["omp_num_threads"],
                  load=", ".join(f"{v:.1f}" for v in os.getloadavg()))
        old.update({k: v for k, v in res.items() if k not in old}, part3=p3)
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(old, indent=1, default=lambda o: None if isinstance(o, float) and math.isnan(o) else str(o)))
        write_presets_readme(old)
        print(json.dumps(p3, indent=1, default=str))
        return
    res["part1"] = part1(sizes=args.sizes, n_train={28: args.n_train_28, 64: args.n_train_64}, epochs=args.epochs,
                         repeats=args.repeats, batch=args.batch_size)
    if args.medmnist_dir is not None:
        # The shared Trainer has no device handling yet, so part 2 runs on the CPU even where a GPU is present.
        device = "cpu" + (" (a GPU is present but the Trainer does not use it yet)" if torch.cuda.is_available() else "")
        res["part2"] = part2(args.medmnist_dir.expanduser(), epochs=args.medmnist_epochs, device=device)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(res, indent=1, default=lambda o: None if isinstance(o, float) and math.isnan(o) else str(o)))
    write_readme(res)
    print(json.dumps(res["part1"], indent=1))


if __name__ == "__main__":
    main()
