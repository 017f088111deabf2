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
    dictionary.json    what the columns mean (labels, units, codes; optional)
    report.html        evaluation report (and any other attachment)

It is written atomically and loaded without pickle: weights through safetensors, everything
else JSON, parts rebuilt from registered names.

Writing goes to a hidden sibling ``.NAME.tmp-PID-XXXXXXXX``. Over an existing bundle, the two
directories are swapped in one step (Linux ``renameat2(RENAME_EXCHANGE)``), so ``NAME`` is never
missing for a reader, and the old bundle, now under the temporary name, is removed. Where the
exchange is unavailable (other systems, some file systems) the old bundle is renamed aside to
``.NAME.old-PID-XXXXXXXX`` and the new one renamed in: two renames, between which ``NAME`` is
briefly absent. A write killed half-way (``kill -9``) leaves such a hidden directory behind; the
next write to the same ``NAME`` removes those whose process is gone.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import os
import shutil
import sys
import time
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
    #: The data dictionary (``DataDictionary.to_dict()``) of the training table, if it had one.
    dictionary: dict[str, Any] | None = None

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
    clean_leftovers(out_dir)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
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
        if bundle.dictionary:
            (tmp / "dictionary.json").write_text(json.dumps(bundle.dictionary, indent=1, default=_json_default))
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
        if not out_dir.exists():
            os.rename(tmp, out_dir)
        elif _exchange(tmp, out_dir):  # one step: out_dir is the new bundle, tmp the old one
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            os.rename(out_dir, old)
            os.rename(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    bundle.meta, bundle.path = meta, out_dir
    return out_dir


_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths atomically (Linux ``renameat2`` with ``RENAME_EXCHANGE``).

    Returns False where that is unavailable (not Linux, a libc without ``renameat2``, a file
    system that refuses the flag); the caller then falls back to two renames.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    if fn(_AT_FDCWD, os.fsencode(str(a)), _AT_FDCWD, os.fsencode(str(b)), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


#: A leftover without a process id in its name (written before they carried one) counts as
#: abandoned once it is this old.
_LEGACY_LEFTOVER_AGE_S = 3600


def _pid_alive(pid: int) -> bool:
    if os.name != "posix":
        return True  # cannot tell cheaply: keep it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def clean_leftovers(out_dir: Path) -> list[Path]:
    """Remove the hidden ``.NAME.tmp-*`` / ``.NAME.old-*`` directories that an interrupted write
    of this same ``out_dir`` left beside it: those whose writing process no longer runs (or, for
    names without a process id, older than an hour). A write in progress in a live process,
    this one included, is left alone. Returns what was removed."""
    out_dir = Path(out_dir)
    parent = out_dir.parent if str(out_dir.parent) else Path(".")
    if not parent.is_dir():
        return []
    removed = []
    for kind in ("tmp", "old"):
        prefix = f".{out_dir.name}.{kind}-"
        for p in parent.iterdir():
            if not p.name.startswith(prefix) or not p.is_dir() or p.is_symlink():
                continue
            tag = p.name[len(prefix):]
            pid_text, _, rest = tag.partition("-")
            if rest and pid_text.isdigit():
                pid = int(pid_text)
                if pid == os.getpid() or _pid_alive(pid):
                    continue
            else:
                try:
                    if time.time() - p.stat().st_mtime < _LEGACY_LEFTOVER_AGE_S:
                        continue
                except FileNotFoundError:
                    continue
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


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
    dictionary = _read_json(path / "dictionary.json") if (path / "dictionary.json").is_file() else None
    return ModelBundle(
        model=model, model_spec=meta["model"], featurizer=featurizer, schema=TaskSchema.from_dict(parts["schema"]),
        calibration=parts["calibration"], metrics=parts["metrics"], model_card=parts["model_card"],
        model_card_markdown=md.read_text() if md.exists() else "", history=parts["history"],
        train_config=parts["train_config"], meta=meta, path=path, dictionary=dictionary,
    )
