"""The shapes data set (concrete.data)."""

from __future__ import annotations

import pytest
import torch

from concrete.data import SHAPES, shape_image, shapes_dataset


def test_default_dataset_shapes_labels_and_range():
    ds = shapes_dataset(copies=5)
    x, y = ds.tensors
    assert x.shape == (15, 3, 32, 32)
    assert x.dtype == torch.float32 and y.dtype == torch.long
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert y.tolist() == [0] * 5 + [1] * 5 + [2] * 5
    # copies of one class are identical, the classes differ
    assert torch.equal(x[0], x[4]) and not torch.equal(x[0], x[5])


def test_colours_go_to_the_right_channel_and_corners_are_black():
    ds = shapes_dataset(copies=1)
    x = ds.tensors[0]
    for k, channel in enumerate((0, 1, 2)):  # red square, green circle, blue triangle
        img = x[k]
        others = [c for c in range(3) if c != channel]
        assert float(img[channel].sum()) > 0
        assert float(img[others].sum()) == 0
        assert float(img[:, 0, 0].sum()) == 0  # black canvas


def test_sizes_set_the_area():
    # square of side s drawn inclusive: (2*(s//2)+1)^2 pixels
    sq = shape_image("square", "white", 12, 32)
    assert int(sq[0].gt(0).sum()) == 13 * 13
    small = shape_image("circle", "white", 6, 32)[0].gt(0).sum()
    large = shape_image("circle", "white", 20, 32)[0].gt(0).sum()
    assert small < large


def test_size_argument_is_used_and_image_size_changes_canvas():
    """The seed's generator ignored ``size`` (a NameError in fact); ours draws it."""
    a = shape_image("triangle", "blue", 10, 32)
    b = shape_image("triangle", "blue", 20, 32)
    assert not torch.equal(a, b)
    ds = shapes_dataset(copies=2, image_size=48)
    assert ds.tensors[0].shape == (6, 3, 48, 48)


def test_custom_classes_and_per_class_copies():
    ds = shapes_dataset(
        shapes=("circle", "circle"), colours=("red", "#00ff00"), sizes=(8, 16), copies=(3, 1)
    )
    x, y = ds.tensors
    assert x.shape[0] == 4 and y.tolist() == [0, 0, 0, 1]
    assert float(x[3, 1].max()) == 1.0  # pure green


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"shapes": ("hexagon", "circle", "square")}, "shape"),
        ({"colours": ("red", "green")}, "colours"),
        ({"sizes": (12, 14, 40)}, "size"),
        ({"sizes": (12, 14, 1)}, "size"),
        ({"copies": 0}, "copies"),
        ({"copies": (1, 2)}, "copies"),
        ({"image_size": 1}, "image_size"),
        ({"colours": ("red", "green", "notacolour")}, "colour"),
        ({"shapes": ()}, "shapes"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(kwargs, name):
    with pytest.raises(ValueError, match=name):
        shapes_dataset(**kwargs)


def test_shape_names():
    assert SHAPES == ("square", "circle", "triangle")
