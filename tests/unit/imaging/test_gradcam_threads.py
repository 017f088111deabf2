"""Grad-CAM and predictions of one loaded image model from several threads (as a server does)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from medassist.assistants.imaging import ImagingAssistant
from medassist.testing.assistants import build_imaging_bundle, example_png


def test_concurrent_predictions_with_gradcam_all_succeed_and_agree(tmp_path):
    bundle = build_imaging_bundle(tmp_path / "bundle", epochs=1, n=32)
    assistant = ImagingAssistant.load(bundle)
    image = tmp_path / "scan.png"
    image.write_bytes(example_png())
    expected = assistant.predict(image)["probabilities"]

    def one(i: int) -> dict:
        cam = tmp_path / f"cam{i}.png" if i % 2 else None
        return assistant.predict(image, explain_path=cam)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(32)))
    assert all(r["probabilities"] == expected for r in results)
    explained = [r for r in results if "explanation" in r]
    assert len(explained) == 16
    assert all((tmp_path / f"cam{i}.png").stat().st_size > 0 for i in range(1, 32, 2))
