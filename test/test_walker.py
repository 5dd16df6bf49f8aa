"""data.walker: the one generator of walks (bench gait, bench prior, bench speed, the synthetic camera)."""
import numpy as np
import pytest

from posesdf_ros.data.body import sample_phenotype
from posesdf_ros.data.camera import Intrinsics
from posesdf_ros.data.dataset import TEST_BODIES
from posesdf_ros.data.gait import GaitParams, sample_gait_params
from posesdf_ros.data.scene import VIEWS, CameraSetup, sample_camera, sample_clutter
from posesdf_ros.data.walker import draw_walker


def test_draws_in_the_documented_order(body_model):
    """Camera placement, body, gait, view, clutter, phase: each drawn only when left open."""
    walker = draw_walker(np.random.default_rng(5), "pronation", view="V3", camera="sampled", body=None,
                         body_model=body_model)
    rng = np.random.default_rng(5)
    camera = sample_camera(rng, VIEWS["V3"])
    body = int(rng.integers(0, TEST_BODIES))
    params = sample_gait_params(rng, "pronation")
    phase0 = float(rng.random())
    assert walker.camera == camera and walker.body_index == body and walker.gait.params == params
    assert walker.subject.phase0 == phase0 and walker.subject.build == sample_phenotype("test", body)
    assert (walker.view, walker.condition, walker.mode, walker.clutter) == ("V3", "pronation", "treadmill", [])

    gen = np.random.default_rng(6)
    walker = draw_walker(gen, "normal", body=4, view=None, clutter_boxes=2, mode="overground", cycles=2.0,
                         cadence_spm=111.0, body_model=body_model)
    rng = np.random.default_rng(6)
    params = GaitParams(**(sample_gait_params(rng, "normal").to_dict() | {"cadence_spm": 111.0}))
    view = list(VIEWS)[int(rng.integers(len(VIEWS)))]
    camera = CameraSetup(VIEWS[view])                     # the spec's placement at the drawn view
    clutter = sample_clutter(rng, camera, n_boxes=2, wall=False)
    assert walker.gait.params == params and walker.view == view and walker.camera == camera
    assert walker.clutter == clutter and len(clutter) == 2 and walker.subject.phase0 == float(rng.random())
    assert walker.subject.duration_s == pytest.approx(2.0 * params.cycle_s) and walker.mode == "overground"
    assert gen.random() == rng.random()                   # nothing else was drawn


def test_same_generator_same_walk(body_model):
    def walk(seed):
        w = draw_walker(np.random.default_rng(seed), "supination", body=3, view=None, mode="overground",
                        body_model=body_model)
        return w.joints(np.arange(20) / 15.0)

    a, b, c = walk(1), walk(1), walk(2)
    assert a.shape == (20, 9, 3) and np.array_equal(a, b) and not np.allclose(a, c)


def test_rendered_frames_have_the_walks_joints(body_model):
    walker = draw_walker(np.random.default_rng(3), "normal", body=1, view="V2", camera="sampled", mode="overground",
                         clutter_boxes=1, intrinsics=Intrinsics(width=160, height=90, fx=116.0, fy=116.0),
                         body_model=body_model)
    stamps = np.array([0.0, 0.2, 0.5])
    frames = list(walker.frames(stamps, np.random.default_rng(0), "realistic"))
    _, transforms = walker.poses(stamps)
    assert [f.stamp_s for f in frames] == stamps.tolist()
    np.testing.assert_allclose(np.stack([f.joints for f in frames]), walker.joints(stamps), atol=1e-12)
    np.testing.assert_array_equal(np.stack([f.subject_to_gravity for f in frames]), transforms)
    assert frames[0].rendered.depth.shape == (90, 160) and np.isfinite(frames[0].rendered.depth).any()
    # The same noise stream, the same frames.
    again = list(walker.frames(stamps, np.random.default_rng(0), "realistic"))
    assert all(np.array_equal(f.rendered.depth, g.rendered.depth, equal_nan=True) for f, g in zip(frames, again))


def test_refuses_what_it_cannot_draw(body_model):
    with pytest.raises(ValueError, match="sampled camera needs a view"):
        draw_walker(np.random.default_rng(0), view=None, camera="sampled", body=0, body_model=body_model)
    with pytest.raises(ValueError, match="test split only"):
        draw_walker(np.random.default_rng(0), split="train", body=None, body_model=body_model)
    with pytest.raises(ValueError, match="camera must be"):
        draw_walker(np.random.default_rng(0), camera="nearby", body=0, body_model=body_model)
