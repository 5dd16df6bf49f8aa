"""training.loop.fit on a tiny real network: resumes continue the same history, the time
budget stops with a checkpoint, a checkpoint of another config is refused."""
import csv

import numpy as np
import pytest
import torch

from posesdf_ros.training.checkpoint import load_checkpoint, open_network_run
from posesdf_ros.training.loop import Step, fit

CONFIG = {"name": "test", "lr": 3e-2, "lr_step_epochs": 2, "epochs": 6}
X = torch.from_numpy(np.random.default_rng(0).uniform(-1, 1, (50, 3))).float()
Y = torch.sin(3 * X).sum(1, keepdim=True)


def _train(out, epochs=6, config=CONFIG, resume=True, **kwargs):
    """Fit a small MLP to sin(3x) summed over x's coordinates; batches drawn per epoch from
    its own seed (as the augmenting trainers do), of 16, 16, 18 points. Returns (run, stopped)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    run = open_network_run(out, model, config["lr"], config["lr_step_epochs"], config, "cpu", resume)

    def batches(epoch):
        order = torch.randperm(len(X), generator=torch.Generator().manual_seed(epoch))
        yield from np.array_split(order.numpy(), 3)

    def step(ids):
        err = model(X[ids]) - Y[ids]
        return Step({"loss": err.pow(2).mean(), "l1": err.abs().mean()}, len(ids))

    stopped = fit(run, epochs, batches, step, checkpoint_every=2, progress=False,
                  epoch_logs=lambda epoch: {"lr": run.optimizer.param_groups[0]["lr"]}, **kwargs)
    return run, stopped


def _weights(run):
    return torch.cat([p.detach().flatten() for p in run.modules["model"].parameters()])


def test_fit_records_size_weighted_means_and_steps_the_schedule(tmp_path):
    run, stopped = _train(tmp_path, validate=lambda epoch: {"checked": epoch})
    assert not stopped and run.epochs_done == 6
    assert [h["epoch"] for h in run.history] == list(range(1, 7))
    assert list(run.history[0]) == ["epoch", "loss", "l1", "lr", "seconds", "checked"]
    assert [h["lr"] for h in run.history] == pytest.approx([3e-2, 1.5e-2, 1.5e-2, 7.5e-3, 7.5e-3, 3.75e-3])
    assert run.history[-1]["loss"] < 0.5 * run.history[0]["loss"]
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["epoch"] == 6 and state["history"] == run.history and state["config"] == CONFIG
    with open(tmp_path / "loss.csv") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["loss"]) for r in rows] == [h["loss"] for h in run.history]
    assert (tmp_path / "loss.png").stat().st_size > 0


def test_the_epoch_means_weigh_each_batch_by_its_size(tmp_path):
    seen = []

    def step(ids):
        seen.append((float(ids.sum()), len(ids)))
        return Step({"loss": model(X[ids]).pow(2).mean(), "sum": float(ids.sum())}, len(ids))

    model = torch.nn.Linear(3, 1)
    run = open_network_run(tmp_path, model, 1e-3, 10, CONFIG, "cpu")
    fit(run, 1, lambda epoch: [np.arange(0, 2), np.arange(2, 50)], step, checkpoint_every=1, progress=False)
    assert run.history[0]["sum"] == pytest.approx(sum(s * n for s, n in seen) / 50)


def test_a_resumed_run_continues_the_same_history_and_weights(tmp_path):
    straight, _ = _train(tmp_path / "straight")
    _train(tmp_path / "cut", epochs=3)
    assert load_checkpoint(tmp_path / "cut" / "checkpoint.pt")["epoch"] == 3
    resumed, stopped = _train(tmp_path / "cut")
    assert resumed.start == 3 and not stopped
    # Network, Adam moments and the lr schedule all come back: the same numbers as without the cut.
    assert [{k: v for k, v in h.items() if k != "seconds"} for h in resumed.history] == \
        [{k: v for k, v in h.items() if k != "seconds"} for h in straight.history]
    assert torch.equal(_weights(resumed), _weights(straight))
    # Rerunning a finished run trains nothing more.
    again, _ = _train(tmp_path / "cut")
    assert again.start == 6 and len(again.history) == 6 and torch.equal(_weights(again), _weights(straight))


def test_max_minutes_stops_after_an_epoch_with_a_checkpoint(tmp_path):
    run, stopped = _train(tmp_path, max_minutes=0)
    assert stopped and run.epochs_done == 1
    state = load_checkpoint(tmp_path / "checkpoint.pt")       # epoch 1 is not a checkpoint_every=2 epoch
    assert state["epoch"] == 1 and len(state["history"]) == 1
    assert torch.equal(torch.cat([v.flatten() for v in state["model"].values()]), _weights(run))
    resumed, stopped = _train(tmp_path)
    assert not stopped and [h["epoch"] for h in resumed.history] == list(range(1, 7))
    # The budget never cuts the last epoch short: a one-epoch run is complete.
    _, stopped = _train(tmp_path / "one", epochs=1, max_minutes=0)
    assert not stopped


def test_a_checkpoint_of_another_config_is_refused_but_more_epochs_resume(tmp_path):
    _train(tmp_path, epochs=2)
    with pytest.raises(SystemExit, match="another config"):
        _train(tmp_path, config=CONFIG | {"lr": 1e-2})
    assert load_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == 2      # left as it was
    longer, _ = _train(tmp_path, epochs=4, config=CONFIG | {"epochs": 4})
    assert longer.start == 2 and longer.epochs_done == 4
    fresh, _ = _train(tmp_path, epochs=1, config=CONFIG | {"lr": 1e-2}, resume=False)
    assert fresh.start == 0 and fresh.epochs_done == 1
