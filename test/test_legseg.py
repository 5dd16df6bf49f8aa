"""LegSegNet: the model, its training, and the shipped classifier inside segment_legs."""
import json

import numpy as np
import pytest
import torch

from posesdf_ros.data.dataset import SampleKey, make_test_sample
from posesdf_ros.models.legseg import LegSegNet, interpolate, leg_loss
from posesdf_ros.perception import segment_legs
from posesdf_ros.training.legseg_trainer import PROFILE_ENGINES, engine_windows, person_window, preset, train_legseg

# Test-split scenes (seed 1): clutter, realistic noise, the head out of view in both (pelvis from the prior).
SCENES = [SampleKey("test", 0, "in_toeing", "V1"), SampleKey("test", 3, "in_toeing", "V5"),
          SampleKey("test", 1, "normal", "V3"), SampleKey("test", 2, "normal", "V4")]


@pytest.fixture(scope="module")
def scenes(body_model):
    return [make_test_sample(body_model, key, seed=1)[0] for key in SCENES]


@pytest.fixture(scope="module")
def classifier():
    from posesdf_ros.inference.legseg import LegClassifier

    return LegClassifier.from_pretrained()


def _pooled(results, scenes):
    hits = kept = truth = 0
    for result, scene in zip(results, scenes):
        mask = np.zeros(len(scene["points"]), bool)
        mask[result.indices] = True
        hits += (mask & scene["leg_mask"]).sum()
        kept += mask.sum()
        truth += scene["leg_mask"].sum()
    return hits / kept, hits / truth


def test_interpolation_returns_a_centre_feature_at_that_centre():
    centres = torch.rand(2, 10, 3)
    features = torch.randn(2, 10, 5)
    out = interpolate(centres[:, [3, 7]], centres, features)
    assert torch.allclose(out, features[:, [3, 7]], atol=1e-4)


def test_model_labels_every_point_and_passes_gradients():
    config = preset("tiny").model
    model = LegSegNet(config)
    logits = model(torch.randn(2, config.points, 3) * 0.3)
    assert logits.shape == (2, config.points)
    leg_loss(logits, torch.rand(2, config.points) > 0.5).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("profile", ["paper", "mixed"])
def test_a_tiny_training_run_lowers_the_loss(tmp_path, profile):
    config = preset("tiny")
    config.epochs, config.profile = 6, profile
    summary = train_legseg(tmp_path, config, progress=False)
    history = [float(line.split(",")[1]) for line in (tmp_path / "loss.csv").read_text().splitlines()[1:]]
    assert summary["epochs_done"] == 6 and len(history) == 6
    assert history[-1] < history[0]
    meta = json.loads((tmp_path / "legseg.json").read_text())
    assert (tmp_path / "legseg.pt").exists() and meta["data_profile"] == profile
    assert f"--profile {profile}" in meta["command"]
    # The windows' cache is the profile's: another profile's scenes are rendered afresh.
    with np.load(tmp_path / "windows.npz") as z:
        assert z["stamp"][-1] == list(PROFILE_ENGINES).index(profile)
        engines = len(PROFILE_ENGINES[profile])
        # mixed: each engine's scenes of every cell, its windows after the paper engine's, offsets continued.
        assert z["scenes"] == engines * 29 and len(z["cells"]) == len(z["offsets"]) - 1
        assert np.all(np.diff(z["offsets"]) > 0) and z["offsets"][-1] == len(z["points"]) == len(z["label"])
        if profile == "mixed":
            paper = engine_windows(config, "paper", progress=False)
            count = len(paper["offsets"]) - 1
            assert np.array_equal(z["offsets"][:count + 1], paper["offsets"])
            assert np.array_equal(z["points"][:paper["offsets"][-1]], paper["points"])
            assert len(z["cells"]) > count


def test_shipped_classifier_is_more_precise_than_the_pelvis_crop(scenes, classifier):
    sensors = [s["camera_to_gravity"][:3, 3] for s in scenes]
    rule = [segment_legs(s["points"], sensor_origin=o) for s, o in zip(scenes, sensors)]
    learned = [segment_legs(s["points"], sensor_origin=o, leg_classifier=classifier) for s, o in zip(scenes, sensors)]
    assert all(r.valid for r in learned)
    assert all("leg_classifier" in r.timings for r in learned)
    rule_precision, rule_recall = _pooled(rule, scenes)
    precision, recall = _pooled(learned, scenes)
    assert precision > rule_precision and precision > 0.93 and recall > 0.93


def test_the_same_window_gives_the_same_labels(scenes, classifier):
    scene = scenes[0]
    idx, height = person_window(scene["points"], scene["camera_to_gravity"][:3, 3], classifier.window_above_pelvis)
    first = classifier.leg_mask(scene["points"][idx], height)
    assert first.shape == idx.shape and first.dtype == bool
    assert np.array_equal(first, classifier.leg_mask(scene["points"][idx], height))
    assert classifier.leg_mask(np.zeros((0, 3)), np.zeros(0)).shape == (0,)
    with pytest.raises(ValueError):
        classifier.leg_mask(np.zeros((5, 2)), np.zeros(5))


def test_eval_seg_reports_the_classifier_and_the_rule_based_crop(test_build, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    import posesdf_ros

    posesdf = str(Path(sys.executable).parent / "posesdf")
    for choice in ("legseg", "none"):
        js = tmp_path / f"{choice}.json"
        run = subprocess.run([posesdf, "eval-seg", "--data", str(test_build), "--classifier", choice,
                              "--json", str(js)], capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stderr[-2000:]
        s = json.loads(js.read_text())
        assert s["count"] == 9 and s["valid"] == 9
        assert 0.5 < s["precision_pooled"] <= 1 and 0.5 < s["recall_pooled"] <= 1
        assert (s["classifier"] is None) == (choice == "none")
        assert ("leg_classifier" in s["timing_ms"]) == (choice == "legseg")
        # The shipped LegSegNet was trained on both engines' scenes (posesdf_ros/weights/README.md).
        assert s["data_profile"] == "paper" and (choice == "none" or s["classifier"]["data_profile"] == "mixed")
        assert choice == "none" or s["classifier"]["scenes"] == 4060
        shipped = json.loads((Path(posesdf_ros.__file__).parent / "weights" / "legseg.json").read_text())
        assert choice == "none" or s["classifier"]["threshold"] == shipped["threshold"]


def test_results_page_names_the_classifier_s_scenes_and_the_build():
    """A product-trained LegSegNet on a product val build is told apart from the shipped one on the test split."""
    from posesdf_ros.evaluation.report import _segmentation_method

    shipped = {"classifier": {"points": 512, "epochs_done": 40, "epochs_planned": 40}, "data_split": "test"}
    product = {"classifier": {"points": 512, "epochs_done": 40, "epochs_planned": 40, "data_profile": "product"},
               "data_split": "val", "data_profile": "product"}
    assert _segmentation_method(shipped) == "LegSegNet, 512 points (40/40 epochs)"
    assert _segmentation_method(product) == \
        "LegSegNet, 512 points (40/40 epochs, product scenes), val split (product engine)"
    assert _segmentation_method(shipped | {"data_split": "shifted", "data_profile": "shifted"}).endswith(
        "(40/40 epochs), shifted split")
    mixed = {"classifier": {"points": 1024, "epochs_done": 40, "epochs_planned": 40, "data_profile": "mixed",
                            "scenes": 4060}, "data_split": "test"}
    assert _segmentation_method(mixed) == "LegSegNet, 1024 points (40/40 epochs, 4,060 mixed scenes)"
    mixed["classifier"]["threshold"] = 0.5
    assert _segmentation_method(mixed) == "LegSegNet, 1024 points (40/40 epochs, 4,060 mixed scenes, threshold 0.5)"


def test_threshold_sweep_trades_recall_for_precision(test_build, classifier, tmp_path):
    from posesdf_ros.training.legseg_trainer import sweep_thresholds, tune_threshold

    sweep = sweep_thresholds(test_build, classifier, thresholds=(0.2, 0.5, 0.9), progress=False)
    recall = [r["recall"] for r in sweep]
    precision = [r["precision"] for r in sweep]
    assert recall[0] >= recall[1] >= recall[2] and recall[0] > recall[2]
    assert precision[2] > precision[0]
    with pytest.raises(SystemExit, match="split val"):
        tune_threshold(tmp_path, test_build, progress=False)


def test_the_threshold_mislabels_the_fewest_points():
    """Of 100 leg points, keeping 90 with 85 right mislabels 5 + 15: 0.20 a leg point. The pick is the sweep's
    fewest mislabelled, not its best min(precision, recall), and the lower threshold among equals."""
    from posesdf_ros.training.legseg_trainer import best_threshold, mislabelled

    assert mislabelled(85 / 90, 0.85) == pytest.approx(0.20)
    sweep = [{"threshold": 0.3, "precision": 0.90, "recall": 0.95},    # 0.1556 mislabelled, min 0.90
             {"threshold": 0.5, "precision": 0.97, "recall": 0.93},    # 0.0988, min 0.93
             {"threshold": 0.7, "precision": 0.99, "recall": 0.85}]    # 0.1586, min 0.85
    assert best_threshold(sweep)["threshold"] == 0.5
    assert max(sweep, key=lambda r: min(r["precision"], r["recall"]))["threshold"] == 0.5
    sweep[0]["recall"] = 0.94                                         # min(P, R) would now take 0.3 ...
    sweep[1] |= {"precision": 0.98, "recall": 0.89}
    assert max(sweep, key=lambda r: min(r["precision"], r["recall"]))["threshold"] == 0.3
    assert best_threshold(sweep)["threshold"] == 0.5                   # ... 0.1644 against 0.1282
    assert best_threshold([dict(sweep[1], threshold=0.6), sweep[1]])["threshold"] == 0.5


def test_the_shipped_thresholds_are_the_rule_s_picks_from_their_own_sweeps():
    import json
    from pathlib import Path

    import posesdf_ros
    from posesdf_ros.training.legseg_trainer import best_threshold

    for name in ("legseg", "legseg_fast"):
        meta = json.loads((Path(posesdf_ros.__file__).parent / "weights" / f"{name}.json").read_text())
        assert meta["threshold"] == best_threshold(meta["threshold_sweep"])["threshold"], name
        assert meta["threshold_data"]["split"] == "val"


def test_tune_only_picks_the_threshold_of_a_run_without_training(tmp_path, body_model):
    """`posesdf train legseg --tune-only` on a val build rewrites the run's threshold and sweep, and leaves its
    weights as they were (no checkpoint, no training)."""
    import json
    import shutil
    from pathlib import Path

    import posesdf_ros
    from posesdf_ros.cli import main
    from posesdf_ros.data.dataset import build_dataset
    from posesdf_ros.training.legseg_trainer import THRESHOLDS, best_threshold

    val = tmp_path / "val"
    build_dataset(val, "val", protocol="CC", limit=1, progress=False, body_model=body_model)
    run = tmp_path / "run"
    run.mkdir()
    shipped = Path(posesdf_ros.__file__).parent / "weights"
    for f in ("legseg.pt", "legseg.json"):
        shutil.copy(shipped / f, run / f)
    meta = json.loads((run / "legseg.json").read_text())
    (run / "legseg.json").write_text(json.dumps(meta | {"threshold": 0.95, "threshold_sweep": []}))
    with pytest.raises(SystemExit, match="--tune-on"):
        main(["train", "legseg", "--out", str(run), "--tune-only", "--quiet"])
    assert main(["train", "legseg", "--out", str(run), "--tune-on", str(val), "--tune-only", "--quiet"]) == 0
    tuned = json.loads((run / "legseg.json").read_text())
    assert [r["threshold"] for r in tuned["threshold_sweep"]] == list(THRESHOLDS)
    assert tuned["threshold"] == best_threshold(tuned["threshold_sweep"])["threshold"] != 0.95
    assert tuned["threshold_data"]["folder"] == str(val) and tuned["threshold_data"]["split"] == "val"
    assert (run / "legseg.pt").read_bytes() == (shipped / "legseg.pt").read_bytes()
    assert sorted(p.name for p in run.iterdir()) == ["legseg.json", "legseg.pt"]


def test_the_fast_classifier_finds_the_legs_of_decimated_scenes(scenes):
    """The canonicaliser's default LegSegNet (512 points) on every second pixel row and column
    (`decimation: 2`)."""
    from posesdf_ros.evaluation.segmentation import pixel_decimation
    from posesdf_ros.inference.legseg import LegClassifier
    from posesdf_ros.perception import SegmentationConfig

    fast = LegClassifier.from_pretrained(model="fast")
    assert fast.model.config.points == 512 and fast.description == "LegSegNet (512 points)"
    config = SegmentationConfig().decimated(2)
    thinned = []
    for scene in scenes:
        keep = pixel_decimation(scene["depth"], 2)
        thinned.append({"points": scene["points"][keep], "leg_mask": scene["leg_mask"][keep]})
    results = [segment_legs(t["points"], config, sensor_origin=s["camera_to_gravity"][:3, 3], leg_classifier=fast)
               for t, s in zip(thinned, scenes)]
    assert all(r.valid for r in results)
    precision, recall = _pooled(results, thinned)
    assert precision > 0.93 and recall > 0.93
    with pytest.raises(ValueError):
        LegClassifier.from_pretrained(model="medium")
