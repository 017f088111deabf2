"""Pictures that read well: the imaging result shows the original beside the Grad-CAM overlay at a
readable size with a labelled colour bar, its model card omits empty fields, and the training
report plots the validation metric alone (named, best epoch marked), never wall time."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
from matplotlib.colorbar import Colorbar
from PIL import Image

import medassist.evaluation.report as report
from medassist.evaluation import ModelCard, default_card_texts, evaluate_classification, write_report
from medassist.explain.gradcam import COLORBAR_LABEL
from medassist.testing.assistants import example_png
from medassist.testing.server import csrf_of

SITE_ASSISTANTS = True


def test_gradcam_is_the_original_beside_the_overlay_with_a_labelled_colour_bar(site, monkeypatch):
    labels = []
    set_label = Colorbar.set_label
    monkeypatch.setattr(Colorbar, "set_label", lambda self, label, **kw: (labels.append(label), set_label(self, label, **kw))[1])
    client = site.browser("clinician")
    bid = site.bundle_ids["diagnosis-image"]
    page = client.get(f"/imaging/{bid}")
    card = re.search(r"<dt>Trained on</dt><dd>(.*?)</dd>", page.text, flags=re.S).group(1)
    assert "; )" not in card and "()" not in card and "training images" in card
    r = client.post(f"/imaging/{bid}/predict", files={"file": ("chest.png", example_png(), "image/png")},
                    data={"csrf_token": csrf_of(page.text), "explain": "on"}, headers={"HX-Request": "true"})
    assert r.status_code == 200, r.text[:300]
    assert [x for x in labels if x] == [COLORBAR_LABEL] == ["relative importance (Grad-CAM)"]
    uri = re.search(r'id="gradcam" src="data:image/png;base64,([^"]+)"', r.text).group(1)
    with Image.open(io.BytesIO(base64.b64decode(uri))) as im:
        rgb = np.asarray(im.convert("RGB"), dtype=float)
    h, w, _ = rgb.shape
    assert h >= 320 and w >= 2 * 320 + 60  # two readable panels and the colour bar
    saturation = rgb.max(axis=2) - rgb.min(axis=2)
    left, right = saturation[:, : int(w * 0.42)], saturation[:, int(w * 0.46): int(w * 0.86)]
    assert (left > 40).mean() < 0.01  # the original, in grey: no heat map over it
    assert (right > 40).mean() > 0.01  # the overlay
    assert (saturation[:, int(w * 0.88):] > 100).mean() > 0.02  # the colour bar
    assert "colour bar" in r.text and "Left: the image as the model saw it" in r.text


def test_training_report_plots_the_validation_metric_alone(site, monkeypatch):
    served = site.browser("admin").get(f"/models/{site.bundle_id}/report")
    assert served.status_code == 200 and "the dashed line marks the best epoch" in served.text
    drawn = []
    to_uri = report._to_data_uri

    def capture(fig):
        drawn.append([{"title": ax.get_title(), "lines": [ln.get_label() for ln in ax.get_lines()],
                       "max": max((float(np.nanmax(np.asarray(ln.get_ydata(), float))) for ln in ax.get_lines()
                                   if len(ln.get_ydata()) and not str(ln.get_label()).startswith("best")), default=0.0)}
                      for ax in fig.axes])
        return to_uri(fig)

    monkeypatch.setattr(report, "_to_data_uri", capture)
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    p1 = np.clip(0.5 + 0.3 * (y - 0.5) + rng.normal(0, 0.2, 200), 0.01, 0.99)
    p = np.column_stack([1 - p1, p1])
    card = ModelCard(name="demo", version="0.1", task="binary", target="diagnosis", classes=["no", "yes"], positive_class="yes",
                     data={"source": "synthetic"}, training={"best_epoch": 4}, **default_card_texts("binary", "diagnosis"))
    # the Trainer's rows: a learning rate and cumulative seconds beside the losses and the metric
    history = [{"epoch": e, "train_loss": 1 / e, "val_loss": 1.2 / e, "lr": 1e-3 * 0.9 ** e, "val_metric": 0.7 + 0.01 * e,
                "seconds": 40.0 * e} for e in range(1, 9)]
    write_report(site.settings.home / "r" / "report.html", title="t", evaluation=evaluate_classification(p, y, classes=["no", "yes"],
                 n_boot=50), y_prob=p, y_true=y, classes=["no", "yes"], positive_index=1, model_card=card, history=history)
    panels = {a["title"]: a for a in drawn[-1]}
    metric = panels["validation AUC"]
    assert metric["lines"] == ["validation AUC", "best epoch (4)"] and metric["max"] < 1.0
    assert panels["Loss (lower is better)"]["lines"][:2] == ["training loss", "validation loss"]
    assert panels["Learning rate"]["max"] < 0.01
    assert not any("seconds" in ln for a in drawn[-1] for ln in a["lines"])
