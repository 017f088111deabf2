"""Model bundles: the deployable unit.

A bundle is a directory::

    bundle.json        format version, medassist version, model spec, file checksums
    model.safetensors  weights
    featurizer.json    fitted featurizer state
    schema.json        task schema (inputs, target, classes, positive class)
    calibration.json   post-hoc calibration (temperature)
    metrics.json       held-out test metrics with 95% intervals
    model_card.json / model_card.md
    history.json       per-epoch training metrics
    train_config.json  how it was trained
    report.html        evaluation report (and any other attachment)

It is written atomically (a temporary sibling directory, then a rename) and loaded without
pickle: weights through safetensors, everything else JSON, parts rebuilt from registered names.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file
from torch import nn

import medassist
from medassist.exceptions import BundleError, ConfigError
from medassist.featurizers import FEATURIZERS
from medassist.models import model_from_spec
from medassist.types import TaskSchema

BUNDLE_FORMAT = 1
_JSON_PARTS = ("schema", "calibration", "metrics", "model_card", "history", "train_config")


@dataclass(kw_only=True)
class ModelBundle:
    """A trained model with everything needed to use and judge it."""

    model: nn.Module
    model_spec: dict[str, Any]
    featurizer: Any
    schema: TaskSchema
    calibration: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    model_card: dict[str, Any] = field(default_factory=dict)
    model_card_markdown: str = ""
    history: list[dict[str, Any]] = field(default_factory=list)
    train_config: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def task(self) -> str:
        """What the bundle is for (e.g. ``diagnosis-tabular``); picks the CLI/service handler."""
        return str(self.meta.get("task", "diagnosis-tabular"))

    @property
    def bundle_id(self) -> str:
        """Stable identity: the checksum of the weights file (first 16 hex digits)."""
        return str(self.meta.get("files", {}).get("model.safetensors", ""))[:16]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_out_dir(out_dir: Path, *, overwrite: bool) -> None:
    """Refuse early (before hours of training) to write over something that exists."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise ConfigError(f"{out_dir}: already exists; choose another --out or pass --overwrite to replace it.")
    if out_dir.exists() and not (out_dir / "bundle.json").exists():
        raise ConfigError(f"{out_dir}: exists and is not a model bundle; refusing to replace it.")
    if out_dir.parent != Path("") and not out_dir.parent.exists():
        out_dir.parent.mkdir(parents=True, exist_ok=True)


def save_bundle(bundle: ModelBundle, out_dir: Path, *, overwrite: bool = False, attachments: dict[str, bytes] | None = None) -> Path:
    """Write ``bundle`` to ``out_dir`` atomically and return the path."""
    out_dir = Path(out_dir)
    check_out_dir(out_dir, overwrite=overwrite)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        tensors = {k: v.detach().cpu().clone().contiguous() for k, v in bundle.model.state_dict().items()}
        save_file(tensors, str(tmp / "model.safetensors"))
        (tmp / "featurizer.json").write_text(json.dumps(bundle.featurizer.to_dict(), indent=1))
        parts = {
            "schema": bundle.schema.to_dict(), "calibration": bundle.calibration, "metrics": bundle.metrics,
            "model_card": bundle.model_card, "history": bundle.history, "train_config": bundle.train_config,
        }
        for name in _JSON_PARTS:
            (tmp / f"{name}.json").write_text(json.dumps(parts[name], indent=1, default=_json_default))
        (tmp / "model_card.md").write_text(bundle.model_card_markdown)
        for name, content in (attachments or {}).items():
            if "/" in name or name.startswith(".") or name in {"bundle.json"}:
                raise ConfigError(f"Bundle attachment name {name!r} is not a plain file name.")
            (tmp / name).write_bytes(content)
        files = {p.name: _sha256(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        meta = {
            **bundle.meta, "format": BUNDLE_FORMAT, "medassist_version": medassist.__version__,
            "model": bundle.model_spec, "featurizer": bundle.featurizer.to_dict()["name"], "files": files,
        }
        (tmp / "bundle.json").write_text(json.dumps(meta, indent=1, default=_json_default))
        if out_dir.exists():
            old = out_dir.parent / f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(out_dir, old)
            os.rename(tmp, out_dir)
            shutil.rmtree(old)
        else:
            os.rename(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    bundle.meta, bundle.path = meta, out_dir
    return out_dir


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as e:
        raise BundleError(f"{path.parent}: not a complete model bundle ({path.name} is missing).") from e
    except json.JSONDecodeError as e:
        raise BundleError(f"{path}: corrupt JSON ({e.msg} at line {e.lineno}).") from e


def read_bundle_task(path: str | Path) -> str:
    """The ``task`` recorded in a bundle's bundle.json, without loading weights."""
    path = Path(path)
    if not path.is_dir():
        raise BundleError(f"{path}: no model bundle here (expected a directory written by 'medassist train').")
    return str(_read_json(path / "bundle.json").get("task", "diagnosis-tabular"))


def load_bundle(path: str | Path) -> ModelBundle:
    """Load a bundle written by ``save_bundle``; checks the weights' checksum. No pickle."""
    path = Path(path)
    if not path.is_dir():
        raise BundleError(f"{path}: no model bundle here (expected a directory written by 'medassist train').")
    meta = _read_json(path / "bundle.json")
    if meta.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{path}: bundle format {meta.get('format')!r} is not supported (expected {BUNDLE_FORMAT}).")
    weights = path / "model.safetensors"
    if not weights.exists():
        raise BundleError(f"{path}: not a complete model bundle (model.safetensors is missing).")
    if _sha256(weights) != meta["files"].get("model.safetensors"):
        raise BundleError(f"{path}: model.safetensors does not match the checksum in bundle.json; the bundle was altered or damaged.")
    model = model_from_spec(meta["model"])
    try:
        model.load_state_dict(load_file(str(weights)))
    except RuntimeError as e:
        raise BundleError(f"{path}: weights do not fit the model spec in bundle.json ({str(e).splitlines()[0]}).") from e
    model.eval()
    fz = _read_json(path / "featurizer.json")
    featurizer = FEATURIZERS.get(fz["name"]).from_dict(fz)
    parts = {name: _read_json(path / f"{name}.json") for name in _JSON_PARTS}
    md = path / "model_card.md"
    return ModelBundle(
        model=model, model_spec=meta["model"], featurizer=featurizer, schema=TaskSchema.from_dict(parts["schema"]),
        calibration=parts["calibration"], metrics=parts["metrics"], model_card=parts["model_card"],
        model_card_markdown=md.read_text() if md.exists() else "", history=parts["history"],
        train_config=parts["train_config"], meta=meta, path=path,
    )
