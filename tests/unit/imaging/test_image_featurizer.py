"""The image featurizer: fitted on training images, JSON state, safe conversions only."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medassist.exceptions import DataError, NotFittedError
from medassist.featurizers import FEATURIZERS
from medassist.featurizers.images import ImageFeaturizer


def _grey(n=10, size=16, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 1, size, size), dtype=np.uint8)


def test_fit_learns_statistics_and_round_trips_through_json():
    imgs = _grey()
    fz = ImageFeaturizer().fit(imgs, modalities=["CT"] * 10)
    assert fz.size_ == 16 and fz.channels_ == 1 and fz.modalities_ == ["CT"]
    np.testing.assert_allclose(fz.mean_[0], (imgs / 255.0).mean(), rtol=1e-5)
    x = fz.transform(imgs)
    assert x.shape == (10, 1, 16, 16)
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1) < 0.01
    again = FEATURIZERS.get("image").from_dict(json.loads(json.dumps(fz.to_dict())))
    np.testing.assert_array_equal(again.transform(imgs).numpy(), x.numpy())


def test_resizing_and_grey_to_rgb_are_safe_conversions():
    fz = ImageFeaturizer(size=16, channels=3).fit([np.random.rand(3, 20, 20).astype(np.float32) for _ in range(4)])
    grey = np.random.rand(1, 32, 32).astype(np.float32)
    notes = fz.check(grey)
    assert any("replicated" in n for n in notes) and any("resized from 32×32 to 16×16" in n for n in notes)
    x = fz.transform([grey])
    assert x.shape == (1, 3, 16, 16)


def test_unsafe_conversions_are_refused():
    fz = ImageFeaturizer().fit(_grey(), modalities=["CT"] * 10)
    colour = np.random.rand(3, 16, 16).astype(np.float32)
    with pytest.raises(DataError, match="colour \\(RGB\\) image, but the model was trained on greyscale"):
        fz.check(colour, source="photo.png")
    assert fz.check(np.repeat(np.random.rand(1, 16, 16), 3, axis=0)) == ["RGB image with equal channels read as greyscale."]
    with pytest.raises(DataError, match="aspect ratio 64×16"):
        fz.check(np.random.rand(1, 16, 64).astype(np.float32))
    with pytest.raises(DataError, match="modality MR, but the model was trained on CT"):
        fz.check(np.random.rand(1, 16, 16).astype(np.float32), modality="MR")


def test_unfitted_featurizer_raises():
    with pytest.raises(NotFittedError):
        ImageFeaturizer().transform(_grey())
