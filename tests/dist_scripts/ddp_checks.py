"""Run under `mpiexec -n 2`: DistributedDataParallel against one process on the full batch.

Every check runs on every rank; rank 0 writes {check: "ok" | error} to argv[1] after each one.
"""
import numpy as np
from _common import check, make_model, make_sgd, max_diff, mg, mse, weights

import minigrad.distributed as dist

SIZES = (5, 7, 6, 3)
STEPS, BATCH, LR, MOMENTUM = 6, 16, 0.1, 0.9
TOL = 1e-10

dist.init_process_group()
rank, world = dist.get_rank(), dist.get_world_size()
rng = np.random.default_rng(0)
X = rng.normal(size=(STEPS, BATCH, SIZES[0]))
Y = rng.normal(size=(STEPS, BATCH, SIZES[-1]))
half = BATCH // world


def train_reference():
    """One process, no DDP, the full batch of every step."""
    model = make_model(SIZES, seed=1)
    opt = make_sgd(model.parameters(), LR, MOMENTUM)
    for s in range(STEPS):
        opt.zero_grad()
        mse(model(mg.tensor(X[s])), mg.tensor(Y[s])).backward()
        opt.step()
    return weights(model)


def train_ddp(seed, bucket_mb=25, micro=1):
    """This rank's half of every batch, in `micro` micro-batches accumulated under no_sync."""
    model = dist.DistributedDataParallel(make_model(SIZES, seed=seed), bucket_mb=bucket_mb)
    opt = make_sgd(model.parameters(), LR, MOMENTUM)
    lo, n = rank * half, half // micro
    for s in range(STEPS):
        opt.zero_grad()
        for m in range(micro):
            x, y = X[s, lo + m * n:lo + (m + 1) * n], Y[s, lo + m * n:lo + (m + 1) * n]
            loss = mse(model(mg.tensor(x)), mg.tensor(y)) * (1.0 / micro)
            if m < micro - 1:
                with model.no_sync():
                    loss.backward()
            else:
                loss.backward()
        opt.step()
    return model, weights(model)


REF = train_reference()


def assert_same_on_all_ranks(w):
    everyone = dist.all_gather_object(w)
    for r, theirs in enumerate(everyone):
        assert max_diff(w, theirs) == 0.0, f"rank {r}'s weights differ from rank {rank}'s"


@check
def matches_single_process():
    _, w = train_ddp(seed=1)
    assert max_diff(w, REF) < TOL, f"max |ddp - single process| = {max_diff(w, REF):.3g}"
    assert_same_on_all_ranks(w)


@check
def different_inits_end_identical():
    model = dist.DistributedDataParallel(make_model(SIZES, seed=1 if rank == 0 else 100 + rank))
    start = weights(model)
    assert_same_on_all_ranks(start)            # rank 0's weights were broadcast
    _, w = train_ddp(seed=1 if rank == 0 else 100 + rank)
    assert max_diff(w, REF) < TOL, f"max |ddp - single process| = {max_diff(w, REF):.3g}"
    assert_same_on_all_ranks(w)


@check
def bucket_sizes_do_not_change_results():
    runs = {}
    for bucket_mb in (1e-9, 2e-4, 25):          # one parameter per bucket, a few buckets, one bucket
        model, runs[bucket_mb] = train_ddp(seed=1, bucket_mb=bucket_mb)
        if bucket_mb == 1e-9:
            assert len(model._buckets) == 2 * (len(SIZES) - 1), len(model._buckets)
        if bucket_mb == 25:
            assert len(model._buckets) == 1, len(model._buckets)
    for bucket_mb, w in runs.items():
        assert max_diff(w, REF) < TOL, f"bucket_mb={bucket_mb}: max diff {max_diff(w, REF):.3g}"
        assert max_diff(w, runs[25]) < TOL


@check
def no_sync_accumulates():
    _, w = train_ddp(seed=1, micro=2)
    assert max_diff(w, REF) < TOL, f"max |no_sync accumulation - single process| = {max_diff(w, REF):.3g}"
    assert_same_on_all_ranks(w)


@check
def grads_are_the_mean_when_backward_returns():
    model = dist.DistributedDataParallel(make_model(SIZES, seed=3), bucket_mb=1e-4)
    x = np.random.default_rng(10 + rank).normal(size=(4, SIZES[0]))
    mse(model(mg.tensor(x)), mg.tensor(np.zeros((4, SIZES[-1])))).backward()
    mine = {n: p.grad.data.copy() for n, p in model.named_parameters()}
    # the same gradients by hand: every rank's local gradient, averaged
    local = make_model(SIZES, seed=3)
    for (_, p), (_, q) in zip(local.named_parameters(), model.named_parameters()):
        p.data[...] = q.data
    mse(local(mg.tensor(x)), mg.tensor(np.zeros((4, SIZES[-1])))).backward()
    grads = dist.all_gather_object({n: p.grad.data for n, p in local.named_parameters()})
    for n, g in mine.items():
        expected = sum(r[n] for r in grads) / world
        assert np.max(np.abs(g - expected)) < 1e-12, n


@check
def unused_parameters():
    """A parameter no rank uses keeps grad None; one used on rank 1 only gets the mean."""
    base = make_model(SIZES, seed=4)
    extra = mg.tensor(np.ones(3), requires_grad=True)
    unused = mg.tensor(np.ones(2), requires_grad=True)

    class Wrapper:
        def named_parameters(self):
            return list(base.named_parameters()) + [("extra", extra), ("unused", unused)]

        def parameters(self):
            return [p for _, p in self.named_parameters()]

        def __call__(self, x):
            out = base(x)
            return out * extra if rank == world - 1 else out

    model = dist.DistributedDataParallel(Wrapper(), bucket_mb=1e-4)
    x = mg.tensor(np.full((2, SIZES[0]), 0.5))
    for _ in range(2):                          # twice: the state resets between backward passes
        extra.grad = unused.grad = None
        for _, p in base.named_parameters():
            p.grad = None
        model(x).sum().backward()
        assert unused.grad is None
        assert extra.grad is not None, "the mean of a gradient only rank 1 has"
        g = dist.all_gather_object(extra.grad.data)
        assert all(np.array_equal(g[0], gi) for gi in g)


@check
def mismatched_models_are_reported():
    sizes = SIZES if rank == 0 else (5, 8, 6, 3)
    try:
        dist.DistributedDataParallel(make_model(sizes, seed=0))
    except RuntimeError as exc:
        assert "differs" in str(exc) and "shape" in str(exc), str(exc)
    else:
        assert world == 1, "no error for models of different shapes"


@check
def check_equal_reports_uneven_values():
    assert dist.check_equal(7, "batches") == 7
    try:
        dist.check_equal(3 + rank, "the number of batches")
    except dist.DistributedError as exc:
        assert "rank 0: 3" in str(exc) and "rank 1: 4" in str(exc), str(exc)
    else:
        assert world == 1


@check
def collectives_api():
    for dtype in ("float16", "float32", "float64", "int32", "int64"):
        a = np.arange(6, dtype=dtype).reshape(2, 3) + rank
        expected = sum(np.arange(6, dtype=dtype).reshape(2, 3) + r for r in range(world))
        assert np.array_equal(dist.all_reduce(a), expected), dtype
    t = mg.tensor(np.full(4, float(rank + 1)))
    assert dist.all_reduce(t, op="mean") is t
    assert np.allclose(t.data, (world + 1) / 2)
    m = np.array([rank, -rank], dtype=np.float64)
    assert dist.all_reduce(m.copy(), op="max").tolist() == [world - 1, 0]
    assert dist.all_reduce(m.copy(), op="min").tolist() == [0, -(world - 1)]
    flags = np.array([True, rank == 0])
    dist.all_reduce(flags, op="max")
    assert flags.tolist() == [True, True]
    strided = np.ones((4, 4))[:, ::2]           # not contiguous
    dist.all_reduce(strided)
    assert np.all(strided == world)
    assert dist.all_reduce([1, 2.5]) == [world * 1.0, world * 2.5]
    assert dist.all_reduce(3) == 3 * world and isinstance(dist.all_reduce(3), int)
    b = mg.tensor(np.full((2, 2), float(rank)))
    dist.broadcast(b, src=world - 1)
    assert np.all(b.data == world - 1)
    dist.barrier()
    try:
        dist.all_reduce(np.ones(2), op="avg")
    except ValueError:
        pass
    else:
        raise AssertionError("bad op accepted")


@check
def sampler_shards_partition_the_data():
    for n, drop_last in ((10, False), (11, False), (11, True), (3, False)):
        s = dist.DistributedSampler(n, shuffle=True, seed=5, drop_last=drop_last)
        s.set_epoch(2)
        everyone = dist.all_gather_object(list(s))
        assert len({len(e) for e in everyone}) == 1, "equal shard sizes"
        flat = sorted(sum(everyone, []))
        if drop_last:
            assert len(set(flat)) == len(flat) and len(flat) == n // world * world
        else:
            assert set(flat) == set(range(n)) and len(flat) == -(-n // world) * world



@check
def dataloader_with_sampler_matches_single_process():
    """The recipe the Trainer follows: DistributedSampler + DataLoader + DDP, over two epochs."""
    n, per_rank, classes = 40, 4, 3
    data = np.random.default_rng(1).normal(size=(n, SIZES[0]))
    labels = np.random.default_rng(2).integers(0, classes, n)
    sizes = SIZES[:-1] + (classes,)

    def run(model, sampler, batch):
        loader = mg.data.DataLoader((data, labels), batch_size=batch, sampler=sampler)
        opt = make_sgd(model.parameters(), LR, MOMENTUM)
        for epoch in range(2):
            loader.set_epoch(epoch)
            dist.check_equal(len(loader), "batches per epoch")
            for x, y in loader:
                opt.zero_grad()
                mg.nn.functional.cross_entropy(model(x), y).backward()
                opt.step()
        return weights(model)

    ref = run(make_model(sizes, seed=6), dist.DistributedSampler(n, 1, 0, seed=9), per_rank * world)
    sampler = dist.DistributedSampler(n, shuffle=True, seed=9)
    w = run(dist.DistributedDataParallel(make_model(sizes, seed=6 + rank)), sampler, per_rank)
    assert max_diff(w, ref) < TOL, f"max |ddp - single process| = {max_diff(w, ref):.3g}"
    assert_same_on_all_ranks(w)


@check
def exception_in_backward_does_not_stop_averaging():
    """A hook raises in the middle of step 2's backward on every rank; the loop catches it and
    goes on. Every later step still averages: the ranks end identical, equal to one process
    that skipped step 2, and every backward pass (the failed one too) ran one all-reduce per bucket."""
    model = dist.DistributedDataParallel(make_model(SIZES, seed=1), bucket_mb=1e-9)
    params = list(model.parameters())
    state = {"step": 0}

    def fail_on_step_2(p):
        if state["step"] == 2:
            raise RuntimeError("a hook fails on purpose")

    params[2].register_post_accumulate_grad_hook(fail_on_step_2)
    opt = make_sgd(model.parameters(), LR, MOMENTUM)
    lo = rank * half
    failures = 0
    for s in range(STEPS):
        state["step"] = s
        opt.zero_grad()
        try:
            mse(model(mg.tensor(X[s, lo:lo + half])), mg.tensor(Y[s, lo:lo + half])).backward()
        except RuntimeError as exc:
            assert "fails on purpose" in str(exc), str(exc)
            failures += 1
            continue
        opt.step()
    assert failures == 1
    assert model.stats["all_reduces"] == STEPS * len(model._buckets), model.stats
    w = weights(model)
    assert_same_on_all_ranks(w)
    ref = make_model(SIZES, seed=1)
    ref_opt = make_sgd(ref.parameters(), LR, MOMENTUM)
    for s in range(STEPS):
        ref_opt.zero_grad()
        if s != 2:
            mse(ref(mg.tensor(X[s])), mg.tensor(Y[s])).backward()
            ref_opt.step()
    assert max_diff(w, weights(ref)) < TOL, f"max |ddp - single process| = {max_diff(w, weights(ref)):.3g}"


class WithBuffers(mg.nn.Module):
    """A Linear layer and buffers of several shapes and dtypes (a 0-d one among them)."""

    def __init__(self, stats_shape=(3,), stats_dtype="float64"):
        super().__init__()
        self.linear = mg.nn.Linear(2, 3).double()
        self.register_buffer("running", mg.tensor(np.full(stats_shape, float(rank + 1), dtype=stats_dtype)))
        self.register_buffer("counts", mg.tensor(np.arange(4, dtype=np.int32) + 10 * rank))
        self.register_buffer("steps", mg.tensor(np.int64(7 + rank)))


@check
def buffers_are_broadcast_from_rank_0():
    model = dist.DistributedDataParallel(WithBuffers())
    assert model.running.tolist() == [1.0, 1.0, 1.0], model.running.tolist()
    assert model.counts.tolist() == [0, 1, 2, 3] and model.counts.dtype == mg.int32
    assert model.steps.tolist() == 7 and model.steps.shape == ()


@check
def mismatched_buffers_are_reported():
    for kwargs, expected in (({"stats_shape": (3,) if rank == 0 else (4,)}, "shape (4,) on rank 1 but (3,)"),
                             ({"stats_dtype": "float64" if rank == 0 else "int64"},
                              "dtype int64 on rank 1 but float64")):
        try:
            dist.DistributedDataParallel(WithBuffers(**kwargs))
        except RuntimeError as exc:
            assert f"buffer 'running' has {expected} on rank 0" in str(exc), str(exc)
        else:
            assert world == 1, f"no error for buffers that differ ({kwargs})"
