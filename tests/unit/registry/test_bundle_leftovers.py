"""A bundle write killed half-way leaves hidden siblings that the next write cleans up, and an
overwrite never leaves ``--out`` missing, even for a moment (Linux: renameat2 RENAME_EXCHANGE)."""

import os
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from medassist.featurizers.tabular import TabularFeaturizer
from medassist.models import build_model
from medassist.registry.bundle import ModelBundle, _exchange, clean_leftovers, load_bundle, save_bundle
from medassist.types import TaskSchema


def _bundle():
    df = pd.DataFrame({"age": [50, 60, 70, np.nan], "sex": ["F", "M", "F", "M"]})
    f = TabularFeaturizer().fit(df)
    model, spec = build_model("mlp", size="small", n_features=len(f.feature_names_), n_outputs=2)
    schema = TaskSchema(input_schema=f.input_schema(), output_schema={"dx": "binary"}, classes=["no", "yes"], positive_class="yes")
    return ModelBundle(model=model, model_spec=spec, featurizer=f, schema=schema)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _leftover(path):
    path.mkdir()
    (path / "model.safetensors").write_bytes(b"half")
    return path


def test_stale_leftovers_of_the_same_bundle_are_removed_on_the_next_write(tmp_path):
    dead = _dead_pid()
    stale = [_leftover(tmp_path / f".b.tmp-{dead}-0badc0de"), _leftover(tmp_path / f".b.old-{dead}-feedf00d")]
    legacy = _leftover(tmp_path / ".b.tmp-deadbeef")  # a name from before leftovers carried a pid
    os.utime(legacy, (time.time() - 7200, time.time() - 7200))
    kept = [_leftover(tmp_path / f".b.tmp-{os.getpid()}-0000aaaa"),  # a write in progress in a live process
            _leftover(tmp_path / f".other.tmp-{dead}-0badc0de"),  # another bundle's
            _leftover(tmp_path / ".b.tmp-cafebabe")]  # too recent to call abandoned
    out = save_bundle(_bundle(), tmp_path / "b")
    assert all(not p.exists() for p in [*stale, legacy])
    assert all(p.exists() for p in kept)
    assert load_bundle(out).schema.positive_class == "yes"
    assert clean_leftovers(tmp_path / "b") == []


WATCH = """
import os, sys
path, stop = sys.argv[1], sys.argv[2]
seen = missing = 0
while not os.path.exists(stop):
    seen += 1
    missing += not os.path.isdir(path)
print(seen, missing)
"""


def test_an_overwrite_never_leaves_the_bundle_path_missing(tmp_path):
    out = save_bundle(_bundle(), tmp_path / "b")
    probe_a, probe_b = tmp_path / "xa", tmp_path / "xb"
    probe_a.mkdir(), probe_b.mkdir()
    if not _exchange(probe_a, probe_b):
        pytest.skip("renameat2(RENAME_EXCHANGE) is not available here; the two-rename fallback has a short window")
    # The watcher is another process (no GIL between it and the renames), polling as fast as it can.
    stop = tmp_path / "stop"
    watcher = subprocess.Popen([sys.executable, "-c", WATCH, str(out), str(stop)], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)  # let it start polling
        for _ in range(20):
            save_bundle(_bundle(), out, overwrite=True)
    finally:
        stop.touch()
        seen, missing = map(int, watcher.communicate(timeout=60)[0].split())
    assert seen > 0 and missing == 0
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".b.")) == []  # old bundles removed
    load_bundle(out)
