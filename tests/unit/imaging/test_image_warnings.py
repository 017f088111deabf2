"""Warnings every image answer carries (issue 13, item 4): poor calibration on the bundle's own
test set, and an input unlike the training images (a DICOM CT scored by a PNG-trained model)."""

from types import SimpleNamespace

from medassist.evaluation.calibration import POOR_CALIBRATION_ECE, calibration_warning
from medassist.pipeline.imaging import image_warnings


def _bundle(ece, formats=("picture",), modalities=()):
    return SimpleNamespace(metrics={"test": {"metrics": {"ece": {"value": ece}}}},
                           meta={"training_inputs": {"formats": list(formats), "modalities": list(modalities)}})


def test_poor_calibration_is_said_above_the_threshold_only():
    assert calibration_warning(POOR_CALIBRATION_ECE) is None and calibration_warning(None) is None
    assert image_warnings(_bundle(0.05), kind="picture") == []
    assert image_warnings(_bundle(0.349), kind="picture") == [
        "model calibration is poor on its test set (ECE 0.349): treat probabilities as rankings"]


def test_a_dicom_ct_scored_by_a_model_trained_on_pictures_is_flagged():
    [w] = image_warnings(_bundle(0.02), kind="dicom", modality="CT")
    assert "DICOM image (modality CT)" in w and "trained on picture images" in w
    assert image_warnings(_bundle(0.02, formats=("npz",)), kind="picture") == []  # MedMNIST pixels are pictures
    assert image_warnings(_bundle(0.02, formats=("dicom",), modalities=("CT",)), kind="dicom", modality="CT") == []


def test_a_bundle_that_does_not_record_its_inputs_only_warns_on_calibration():
    b = SimpleNamespace(metrics={}, meta={})
    assert image_warnings(b, kind="dicom", modality="CT") == []
