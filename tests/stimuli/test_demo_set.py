from __future__ import annotations

import numpy as np
import pytest

from bci_app.stimuli import DemoStimulusSet, MarkerMapper, format_marker, make_schedule


def test_demo_set_shape_and_determinism():
    a = DemoStimulusSet(seed=3)
    b = DemoStimulusSet(seed=3)
    assert len(a) == 40 * 50
    assert a.n_classes == 40
    sid = a.make_id(17, 4)
    img = a.image(sid)
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8
    np.testing.assert_array_equal(img, b.image(sid))
    # another seed moves the object around
    assert not np.array_equal(img, DemoStimulusSet(seed=4).image(sid))
    assert a.label(sid) == 17
    assert a.caption(17) == "an image of a blue star"


def test_images_of_a_class_differ_and_colour_is_right():
    s = DemoStimulusSet()
    imgs = s.images([s.make_id(0, i) for i in range(5)]).astype(float)
    assert min(np.abs(imgs[i] - imgs[j]).mean() for i in range(5) for j in range(i)) > 1.0
    # class 0 is a red circle: the reddest pixels are red
    red = imgs[0][..., 0] - imgs[0][..., 1:].mean(-1)
    assert red.max() > 120


def test_unknown_id_is_a_clear_error():
    with pytest.raises(KeyError, match="expected 'cKK_iNN'"):
        DemoStimulusSet().params("c99_i00")


def test_marker_mapper_counts_unknown():
    m = MarkerMapper()
    assert m(format_marker("c01_i02")) == "c01_i02"
    assert m("boundary") is None
    assert m.unknown == 1
    custom = MarkerMapper(r"^img_(\w+)\.png$")
    assert custom("img_dog.png") == "dog"
    with pytest.raises(ValueError, match="no group"):
        MarkerMapper(r"^stim")


def test_schedules_random_and_block():
    s = DemoStimulusSet()
    labels = [s.label(i) for i in s.stim_ids]
    rnd = make_schedule(s.stim_ids, labels, 400, order="random", seed=1)
    blk = make_schedule(s.stim_ids, labels, 400, order="block", seed=1)
    assert len(rnd) == len(blk) == 400
    blk_labels = [s.label(i) for i in blk.stim_ids]
    rnd_labels = [s.label(i) for i in rnd.stim_ids]
    changes = lambda xs: sum(a != b for a, b in zip(xs, xs[1:], strict=False))  # noqa: E731
    assert changes(blk_labels) <= 40 < 300 < changes(rnd_labels)
    assert np.allclose(np.diff(rnd.onsets), 0.5)


def test_upright_images_and_class_attributes():
    s = DemoStimulusSet()
    circle, star = s.make_id(0, 3), s.make_id(s.class_names().index("red star"), 3)
    # a circle looks the same at any rotation; a star does not
    np.testing.assert_array_equal(s.image_upright(circle), s.image(circle))
    assert np.abs(s.image_upright(star).astype(int) - s.image(star)).mean() > 0.5
    # same colour and area upright: only the rotation changed
    up, im = s.image_upright(star).astype(int), s.image(star).astype(int)
    bg = np.array(s.params(star).background)
    assert abs((np.abs(up - bg).sum(-1) > 100).sum() - (np.abs(im - bg).sum(-1) > 100).sum()) < 40
    attrs = s.class_attributes()
    names = s.class_names()
    for k in range(s.n_classes):
        colour, shape = names[k].split(" ")
        assert attrs["shape"][k] == ["circle", "square", "triangle", "star", "cross", "hexagon",
                                     "diamond", "ring"].index(shape)
        assert attrs["colour"][k] == ["red", "green", "blue", "yellow", "purple"].index(colour)


def test_layout_and_image_at():
    """layout() gives (x, y, size) per image; image_at draws the same object elsewhere."""
    s = DemoStimulusSet()
    sid = s.make_id(0, 5)  # a red circle
    p = s.params(sid)
    np.testing.assert_allclose(s.layout([sid])[0], [p.x, p.y, p.size])
    assert s.layout([]).shape == (0, 3)
    bg = np.array(p.background)

    def centre_and_area(img):
        mask = np.abs(img.astype(int) - bg).sum(-1) > 100
        yy, xx = np.nonzero(mask)
        return (xx.mean() + 0.5) / img.shape[1], (yy.mean() + 0.5) / img.shape[0], mask.sum()

    # at its own layout, upright: the image itself (a circle has no rotation)
    np.testing.assert_array_equal(s.image_at(sid, (p.x, p.y, p.size)), s.image(sid))
    moved = s.image_at(sid, (0.3, 0.7, p.size / 2))
    x, y, area = centre_and_area(moved)
    assert abs(x - 0.3) < 0.03 and abs(y - 0.7) < 0.03
    assert abs(area / centre_and_area(s.image(sid))[2] - 0.25) < 0.05  # half the radius
    with pytest.raises(ValueError, match="layout must be finite"):
        s.image_at(sid, (0.5, 0.5, 0.0))
