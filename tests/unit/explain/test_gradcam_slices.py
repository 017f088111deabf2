"""3D Grad-CAM is shown as the axial slices holding the most weight, never the padding around a volume."""

import numpy as np

from medassist.explain.gradcam import volume_slices


def test_slices_with_the_most_weight_in_order_skipping_constant_padding() -> None:
    cam = np.zeros((8, 4, 4))
    cam[[0, 1, 5, 6]] = [[[9.0]], [[8.0]], [[2.0]], [[1.0]]]
    assert volume_slices(cam, 2) == [0, 1]
    image = np.random.default_rng(0).random((8, 4, 4))
    image[:2] = 0.0  # zero padding: no anatomy on slices 0 and 1
    assert volume_slices(cam, 2, image=image) == [5, 6]
    # too few slices with content: the weight decides alone
    image[2:] = 0.5
    image[3, 0, 0] = 1.0
    assert volume_slices(cam, 2, image=image) == [0, 1]
