"""AlignmentTracker under DistributedDataParallel: 2 CPU processes (gloo) give the rows of 1 process, and resume.

The training loop is a user's own (plain torch DDP): the same global batch of B points every step, split between
the ranks as :func:`nnboundary.distributed.shard_range` blocks of *unequal* size (8 and 7). DDP averages the ranks'
gradients, so each rank's loss must be its *sum* over its part of the batch times ``world / B``: then the averaged
gradient is the gradient of the global batch's mean loss. (Each rank's *mean* loss would weight the 7 points of
rank 1 more than the 8 of rank 0; the test checks that this would be measurably wrong.) The tracked points are
sharded too (21 and 20 of 41), gathered in rank order for each evaluation.
"""

from __future__ import annotations

import copy
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from nnboundary import distributed as D
from nnboundary.tracking import AlignmentTracker

from .test_distributed import gloo, run_ranks

N, B, T, K_STOP = 41, 15, 20, 7  # tracked = training points, global batch, steps, checkpoint step
STEPS = [0, 1, 2, 5, 10, 20]  # on_start(0) and the log schedule up to T


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    """N points in 3-d labelled by the argmax of 3 random linear scores, with a gap: separable."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(4 * N, 3))
    S = X @ rng.normal(size=(3, 3)).T
    top = np.sort(S, axis=1)
    keep = (top[:, -1] - top[:, -2]) > 0.3
    return torch.tensor(X[keep][:N]), torch.tensor(S.argmax(1)[keep][:N])


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 3)).double()


def _batches() -> list[np.ndarray]:
    """The global batch of every step (indices into the N points), the same for any number of ranks."""
    rng = np.random.default_rng(1)
    return [rng.choice(N, size=B, replace=False) for _ in range(T)]


def _local_loss(model: nn.Module, X: torch.Tensor, y: torch.Tensor, idx: np.ndarray, rank: int,
                world: int) -> tuple[torch.Tensor, float]:
    """This rank's loss to backpropagate (sum over its block of the batch · world / B) and its plain sum."""
    a, b = D.shard_range(len(idx), rank, world)
    part = torch.as_tensor(idx[a:b])
    s = F.cross_entropy(model(X[part]), y[part], reduction="sum")
    return s * world / len(idx), float(s.detach())


def _train(model: nn.Module, opt: torch.optim.Optimizer, tracker: AlignmentTracker, X, y, first: int,
           last: int) -> None:
    """Steps first..last of the user's loop; the tracker sees the global batch loss (all ranks' sums / B)."""
    batches, rank, world = _batches(), D.rank(), D.world_size()
    for t in range(first, last + 1):
        opt.zero_grad()
        loss, s = _local_loss(model, X, y, batches[t - 1], rank, world)
        loss.backward()
        opt.step()
        tracker.step(t, model, train_loss=sum(D.all_gather_objects(s)) / B)


def _optimizer(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)


def _check_gradient_scaling(model: nn.Module, X, y, rank: int, world: int) -> None:
    """DDP's averaged gradient (in ``model``'s .grad) is the global mean-loss gradient; per-rank means are not."""
    idx = _batches()[0]
    ref = copy.deepcopy(model.module)
    F.cross_entropy(ref(X[torch.as_tensor(idx)]), y[torch.as_tensor(idx)]).backward()
    naive = []
    for r in range(world):  # what DDP would average if every rank backpropagated its mean loss
        m = copy.deepcopy(model.module)
        a, b = D.shard_range(len(idx), r, world)
        F.cross_entropy(m(X[torch.as_tensor(idx[a:b])]), y[torch.as_tensor(idx[a:b])]).backward()
        naive.append([p.grad for p in m.parameters()])
    for i, (p, q) in enumerate(zip(model.parameters(), ref.parameters())):
        assert torch.allclose(p.grad, q.grad, rtol=0, atol=1e-13), (rank, i)
    worst = max(float((sum(g[i] for g in naive) / world - q.grad).abs().max())
                for i, q in enumerate(ref.parameters()))
    assert worst > 1e-6, worst  # with blocks of 8 and 7 the mean-loss scaling is visibly wrong


def _dump(tracker: AlignmentTracker, path: Path) -> None:
    path.write_text(json.dumps(tracker.records, sort_keys=True, default=str))


def _ddp_worker(rank: int, world: int, out: str) -> None:
    """The user's own DDP loop: an uninterrupted run, then one stopped at K_STOP and restarted."""
    assert D.init_from_env()  # already initialised when Lightning ran first in this process
    out_dir = Path(out)
    X, y = _data()
    a, b = D.shard_range(N, rank, world)
    Xs, ys = X[a:b], y[a:b]  # this rank's tracked points

    # uninterrupted run (the DDP wrapper broadcasts rank 0's initial weights; the tracker looks through .module)
    model = nn.parallel.DistributedDataParallel(_model())
    opt = _optimizer(model)
    tracker = AlignmentTracker(Xs, ys, out_dir / "ddp", sharded=True)
    tracker.on_start(0, model, total_steps=T)
    opt.zero_grad()
    loss, _ = _local_loss(model, X, y, _batches()[0], rank, world)
    loss.backward()
    _check_gradient_scaling(model, X, y, rank, world)
    _train(model, opt, tracker, X, y, 1, T)
    _dump(tracker, out_dir / f"records_ddp_{rank}.json")
    with pytest.raises(FileExistsError, match="resume=True"):  # rank 0 finds the file; every rank raises
        AlignmentTracker(Xs, ys, out_dir / "ddp", sharded=True)
    empty = AlignmentTracker(Xs[: len(Xs) * (1 - rank)], ys[: len(ys) * (1 - rank)], sharded=True)  # none on rank 1
    with pytest.raises(ValueError if rank else D.RankError, match="at least one tracked point" if rank else "Rank 1"):
        empty.step(1, model, force=True)  # an error on one rank stops every rank (nobody waits forever)

    # interrupted at K_STOP: a checkpoint (rank 0 writes it) and the jsonl
    model = nn.parallel.DistributedDataParallel(_model())
    opt = _optimizer(model)
    tracker = AlignmentTracker(Xs, ys, out_dir / "resumed", sharded=True)
    tracker.on_start(0, model, total_steps=T)
    _train(model, opt, tracker, X, y, 1, K_STOP)
    ckpt = out_dir / "ckpt.pt"
    if D.is_main():
        torch.save({"model": model.module.state_dict(), "opt": opt.state_dict(), "tracker": tracker.state_dict()},
                   ckpt)
    D.barrier()
    del model, opt, tracker

    # restart: fresh objects (another init), restored from the checkpoint; rank 1 passes no state of its own
    state = torch.load(ckpt, weights_only=False)
    inner = _model(seed=123)
    inner.load_state_dict(state["model"])
    model = nn.parallel.DistributedDataParallel(inner)
    opt = _optimizer(model)
    opt.load_state_dict(state["opt"])
    tracker = AlignmentTracker(Xs, ys, out_dir / "resumed", sharded=True, resume=True)
    assert [r["step"] for r in tracker.records] == [0, 1, 2, 5]  # rank 0 read the jsonl; every rank has it
    tracker.load_state_dict(state["tracker"] if rank == 0 else {"format": "not this one"})
    tracker.on_start(K_STOP, model, total_steps=T)
    _train(model, opt, tracker, X, y, K_STOP + 1, T)
    _dump(tracker, out_dir / f"records_resumed_{rank}.json")


def _one_process(out: Path) -> None:
    X, y = _data()
    model = _model()
    opt = _optimizer(model)
    tracker = AlignmentTracker(X, y, out)
    tracker.on_start(0, model, total_steps=T)
    _train(model, opt, tracker, X, y, 1, T)


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def assert_same_rows(got: list[dict[str, Any]], want: list[dict[str, Any]], tol: float = 1e-9) -> None:
    """Same steps and keys; every number within ``tol`` (absolute), everything else equal; timings ignored."""
    assert [r["step"] for r in got] == [r["step"] for r in want]
    for g, w in zip(got, want):
        assert set(g) == set(w), set(g) ^ set(w)
        for k, v in w.items():
            if k == "eval_seconds":
                continue
            if isinstance(v, float) and not isinstance(g[k], bool):
                assert (math.isnan(v) and math.isnan(g[k])) or abs(g[k] - v) <= tol, (w["step"], k, g[k], v)
            else:
                assert g[k] == v, (w["step"], k, g[k], v)


# ----------------------------------------------------------------------------- one process: nothing changes


def test_sharded_tracker_in_one_process_and_a_wrapped_model_give_the_plain_rows():
    X, y = _data()
    model = _model()
    rows = []
    for tracker, target in ((AlignmentTracker(X, y), model),
                            (AlignmentTracker(X, y, sharded=True), nn.DataParallel(model))):
        tracker.step(1, target)
        rows.append(tracker.records)
    assert rows[1][0]["head"] == "2"  # found through .module, named as in the plain model
    assert_same_rows(rows[1], rows[0], tol=0.0)


def test_tracker_opens_its_file_at_the_first_hook_when_the_process_group_is_still_to_come(tmp_path, monkeypatch):
    X, y = _data()
    first = AlignmentTracker(X, y, tmp_path)
    first.step(1, _model())
    monkeypatch.setenv("WORLD_SIZE", "2")  # launched by torchrun, but no process group yet (as before Lightning's fit)
    late = AlignmentTracker(X, y, tmp_path)  # the file exists: the refusal waits for the first hook
    with pytest.raises(FileExistsError, match="resume=True"):
        late.on_start(0, _model(), total_steps=T)
    resumed = AlignmentTracker(X, y, tmp_path, resume=True)
    assert resumed.records == []
    resumed.on_start(1, _model(), total_steps=T)
    assert [r["step"] for r in resumed.records] == [1]


def test_lightning_callback_state_key_is_known_before_the_first_evaluation_and_old_keys_are_read():
    pytest.importorskip("lightning")
    from nnboundary.callbacks import AlignmentCallback

    X, y = _data()
    tracker = AlignmentTracker(X, y)
    cb = AlignmentCallback(tracker)
    key = cb.state_key
    tracker.step(1, _model())
    assert cb.state_key == key == "AlignmentCallback{head=None, out=None}"  # unchanged by the discovered head
    state = tracker.state_dict()
    fresh = AlignmentTracker(X, y)
    AlignmentCallback(fresh).on_load_checkpoint(None, None, {"callbacks": {"AlignmentTracker{head=2}": state}})
    assert fresh.records == tracker.records and np.array_equal(fresh.state_dict()["support"], state["support"])


# ----------------------------------------------------------------------------- Lightning, strategy="ddp"

# points (tracked = trained on), global batch (4 per rank), steps (2 epochs of 5), the step a run stops at (the end
# of the first epoch, a scheduled step: a stopped run also evaluates its last step)
N_L, B_L, T_L, K_L = 40, 8, 10, 5


def _lightning_worker(rank: int, world: int, out: str) -> None:
    """``L.Trainer(strategy="ddp", devices=2)`` in each of the 2 processes (torchrun-style environment: Lightning
    launches nothing and creates the process group inside ``fit``, after the tracker was made)."""
    import lightning.pytorch as L
    from lightning.pytorch.callbacks import ModelCheckpoint
    from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

    from nnboundary.callbacks import AlignmentCallback

    class Lit(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = _model()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            x, yb = batch
            return F.cross_entropy(self(x), yb)  # the rank's mean: DDP averages equal-sized batches exactly

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return _optimizer(self)

    X, y = _data()
    X, y = X[:N_L], y[:N_L]
    data = TensorDataset(X, y)  # Lightning's own sampler would shuffle; this one gives rank r points r, r+2, ...
    loader = DataLoader(data, batch_size=B_L // world,
                        sampler=DistributedSampler(data, num_replicas=world, rank=rank, shuffle=False))

    def trainer(max_steps: int, tracker: AlignmentTracker, *more: Any) -> L.Trainer:
        return L.Trainer(accelerator="cpu", devices=world, strategy="ddp", max_steps=max_steps, logger=False,
                         enable_checkpointing=bool(more), enable_progress_bar=False, enable_model_summary=False,
                         use_distributed_sampler=False, callbacks=[AlignmentCallback(tracker), *more])

    tracker = AlignmentTracker(X, y, Path(out) / "lightning")  # every rank holds all tracked points
    assert not D.is_distributed() and tracker.records == []
    trainer(T_L, tracker).fit(Lit(), loader)
    assert D.is_distributed() and D.world_size() == world
    _dump(tracker, Path(out) / f"records_lightning_{rank}.json")

    # stopped at K_L with a checkpoint of that step (Lightning runs checkpoint callbacks after the others, so it
    # holds the tracker's step-K_L record), resumed by fit(ckpt_path=...) with a fresh tracker (resume=True)
    tracker = AlignmentTracker(X, y, Path(out) / "lightning_resumed")
    every = ModelCheckpoint(dirpath=Path(out) / "ckpt", filename="stopped", every_n_train_steps=K_L, save_top_k=-1)
    trainer(K_L, tracker, every).fit(Lit(), loader)
    ckpt = Path(out) / "ckpt" / "stopped.ckpt"
    tracker = AlignmentTracker(X, y, Path(out) / "lightning_resumed", resume=True)
    loaded = []
    load = tracker.load_state_dict
    tracker.load_state_dict = lambda state: (loaded.append(True), load(state))[1]  # type: ignore[method-assign]
    trainer(T_L, tracker).fit(Lit(), loader, ckpt_path=ckpt)
    assert loaded == [True]  # the checkpointed state reached the fresh tracker (not only the jsonl's records)
    _dump(tracker, Path(out) / f"records_lightning_resumed_{rank}.json")


class _Holder(nn.Module):
    """The network under the same layer names as in the LightningModule ("net.2")."""

    def __init__(self) -> None:
        super().__init__()
        self.net = _model()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _one_process_like_lightning(out: Path) -> None:
    """The same training in one process: DistributedSampler(shuffle=False) gives rank r the points r, r+2, ...,
    so global batch j of an epoch is points 8j .. 8j+7."""
    X, y = _data()
    X, y = X[:N_L], y[:N_L]
    holder = _Holder()
    opt = _optimizer(holder)
    tracker = AlignmentTracker(X, y, out)
    tracker.on_start(0, holder, total_steps=T_L)
    per_epoch = N_L // B_L
    for t in range(1, T_L + 1):
        j = (t - 1) % per_epoch
        opt.zero_grad()
        loss = F.cross_entropy(holder.net(X[B_L * j:B_L * (j + 1)]), y[B_L * j:B_L * (j + 1)])
        loss.backward()
        opt.step()
        if tracker.wants(t):
            tracker.on_step(t, holder, loss=float(loss.detach()))




def _worker(rank: int, world: int, out: str) -> None:
    """Both clients in one pair of processes (one start-up, one torch import): Lightning first (it creates the
    process group inside ``fit``, after its tracker was made), when it is installed; then the plain DDP loop."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    try:
        import lightning.pytorch  # noqa: F401
    except ImportError:
        pass
    else:
        _lightning_worker(rank, world, out)
    _ddp_worker(rank, world, out)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The one-process references here, and the 2-process runs of :func:`_worker`."""
    if not (torch.distributed.is_available() and torch.distributed.is_gloo_available()):
        pytest.skip("torch.distributed with the gloo backend is not available")
    out = tmp_path_factory.mktemp("ddp")
    torch.set_num_threads(1)
    _one_process(out / "one")
    try:
        import lightning.pytorch  # noqa: F401
    except ImportError:
        pass
    else:
        _one_process_like_lightning(out / "one_lightning")
    run_ranks(_worker, str(out), timeout=240.0)
    return out


@gloo
def test_two_process_ddp_gives_the_one_process_rows_and_resumes(runs):
    one = _rows(runs / "one" / "metrics.jsonl")
    assert [r["step"] for r in one] == STEPS and one[-1]["separable"] and one[-1]["head"] == "2"
    assert one[-1]["angle_deg"] < one[1]["angle_deg"]  # training moved the head (a non-trivial comparison)
    ddp = _rows(runs / "ddp" / "metrics.jsonl")  # one line per evaluation: rank 1 wrote nothing
    assert_same_rows(ddp, one)
    assert_same_rows(_rows(runs / "resumed" / "metrics.jsonl"), one)
    for run in ("ddp", "resumed"):  # every rank holds rank 0's records, timings included
        r0, r1 = ((runs / f"records_{run}_{r}.json").read_text() for r in (0, 1))
        assert r0 == r1
    resumed = json.loads((runs / "records_resumed_0.json").read_text())
    assert [r["step"] for r in resumed] == STEPS


@gloo
def test_lightning_callback_under_ddp_gives_the_one_process_rows_and_resumes(runs):
    pytest.importorskip("lightning")
    one = _rows(runs / "one_lightning" / "metrics.jsonl")
    assert [r["step"] for r in one] == [0, 1, 2, 5, 10] and one[-1]["head"] == "net.2"
    for run in ("lightning", "lightning_resumed"):
        assert_same_rows(_rows(runs / run / "metrics.jsonl"), one)
        r0, r1 = ((runs / f"records_{run}_{r}.json").read_text() for r in (0, 1))
        assert r0 == r1
