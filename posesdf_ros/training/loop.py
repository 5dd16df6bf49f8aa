"""The training loop every trainer runs: epochs from the resume point, optimiser steps on
each epoch's batches, one history record per epoch, checkpoints and a wall-time budget.

A trainer says what an epoch's batches are and what a batch's losses are; `fit` does
the rest:

    run = open_network_run(out, model, lr, lr_step_epochs, config.to_dict(), device)

    def batches(epoch):                       # epoch counted from 0
        rng = np.random.default_rng([seed, epoch])
        for ids in np.array_split(rng.permutation(n), n // 16):
            yield x[ids], y[ids]

    def step(batch) -> Step:
        x, y = batch
        return Step({"loss": (model(x) - y).norm(dim=-1).mean()}, size=len(x))

    stopped_early = fit(run, epochs, batches, step, checkpoint_every=5, max_minutes=60)
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple, TypeVar

import torch

from .checkpoint import TrainingRun, write_loss_log

Batch = TypeVar("Batch")


class Step(NamedTuple):
    """One batch's losses: scalar tensors (or floats) by name; `losses["loss"]` is the one
    minimised. `size` (e.g. the batch's shape count) weighs them in the epoch's means."""

    losses: dict[str, torch.Tensor | float]
    size: int


def _loss_postfix(record: dict) -> dict[str, str]:
    return {"loss": f"{record['loss']:.4f}"}


def fit(run: TrainingRun, epochs: int, batches: Callable[[int], Iterable[Batch]], step: Callable[[Batch], Step], *,
        checkpoint_every: int, max_minutes: float | None = None, started: float | None = None,
        epoch_logs: Callable[[int], dict] | None = None, validate: Callable[[int], dict] | None = None,
        plot: Sequence[str] = ("loss",), desc: str = "train", progress: bool = True,
        postfix: Callable[[dict], dict[str, str]] = _loss_postfix) -> bool:
    """Train `run` from `run.start` epochs done to `epochs`; True when `max_minutes` stopped it early.

    Every epoch (counted from 0 in the callbacks) puts `run.modules` in training mode and,
    for each batch of `batches(epoch)`, has `step(batch)` compute its losses, zeroes the
    gradients, back-propagates `losses["loss"]` and steps `run.optimizer`; then it steps
    `run.scheduler`, if any. The epoch's record, appended to `run.history`, is

        {"epoch": epoch + 1, **size-weighted means of the step losses, **epoch_logs(epoch),
         "seconds": wall time of all that, **validate(epoch)}

    so `epoch_logs` (e.g. the learning rate) sees the scheduler stepped, and `validate`
    (e.g. a held-out error) is not timed. The run is checkpointed (`run.save`, then
    loss.csv and loss.png with the `plot` curves) every `checkpoint_every` epochs and after
    the last one. With `max_minutes`, an epoch that ends more than that many minutes after
    `started` (a `time.perf_counter()`, default: when `fit` is called) ends the run, with a
    checkpoint, unless it was the last. `desc`, `progress` and `postfix` (the record ->
    tqdm postfix fields) make the progress bar.
    """
    from tqdm import tqdm

    started = time.perf_counter() if started is None else started
    bar = tqdm(range(run.start, epochs), initial=run.start, total=epochs, desc=desc, unit="epoch",
               disable=not progress)
    stopped_early = False
    for epoch in bar:
        t0 = time.perf_counter()
        for module in run.modules.values():
            module.train()
        sums: dict[str, float] = {}
        count = 0
        for batch in batches(epoch):
            losses, size = step(batch)
            run.optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            run.optimizer.step()
            for name, value in losses.items():
                sums[name] = sums.get(name, 0.0) + (value.item() if torch.is_tensor(value) else value) * size
            count += size
        if run.scheduler is not None:
            run.scheduler.step()
        record = {"epoch": epoch + 1, **{name: total / count for name, total in sums.items()},
                  **(epoch_logs(epoch) if epoch_logs else {})}
        record["seconds"] = time.perf_counter() - t0
        record |= validate(epoch) if validate else {}
        run.history.append(record)
        bar.set_postfix(**postfix(record))
        done = epoch + 1
        due = done % checkpoint_every == 0 or done == epochs
        if due:
            _checkpoint(run, done, plot)
        if max_minutes is not None and time.perf_counter() - started > 60 * max_minutes and done < epochs:
            if not due:
                _checkpoint(run, done, plot)
            stopped_early = True
            break
    bar.close()
    return stopped_early


def _checkpoint(run: TrainingRun, done: int, plot: Sequence[str]) -> None:
    run.save(done)
    write_loss_log(run.folder, run.history, tuple(plot))
