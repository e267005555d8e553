"""Run under `mpiexec -n 2` or `-n 4`: tensor and pipeline parallelism against one process.

Every configuration trains the same MLP for 10 steps of SGD with momentum and 10 of Adam
(float64) and compares this rank's parameters (whole, or its tensor-parallel shard) with one
process trained on the same batches. Rank 0 writes {check: "ok" | error} to argv[1].
"""
from collections import OrderedDict

import numpy as np
from _common import check, make_model, mg, mse

import minigrad.distributed as dist

STEPS, BATCH, TOL = 10, 16, 1e-10
SIZES = (6, 8, 6, 4)                   # Linear, Tanh, Linear, Tanh, Linear: 5 modules
DEEP = (6, 8, 8, 6, 6, 4)              # 9 modules, for 4 stages and uneven splits

dist.init_process_group()
world = dist.get_process_group()
rank, size = world.rank, world.world_size
rng = np.random.default_rng(0)
X = rng.normal(size=(STEPS, BATCH, SIZES[0]))
Y = rng.normal(size=(STEPS, BATCH, SIZES[-1]))
OPTIMIZERS = {"sgd": lambda ps: mg.optim.SGD(ps, lr=0.1, momentum=0.9),
              "adam": lambda ps: mg.optim.Adam(ps, lr=0.01)}

_refs = {}


def reference(sizes, opt):
    """One process, the full batch of every step: {parameter name: array}."""
    if (sizes, opt) not in _refs:
        model = make_model(sizes, seed=1)
        o = OPTIMIZERS[opt](model.parameters())
        for s in range(STEPS):
            o.zero_grad()
            mse(model(mg.tensor(X[s])), mg.tensor(Y[s])).backward()
            o.step()
        _refs[sizes, opt] = {n: p.numpy().copy() for n, p in model.named_parameters()}
    return _refs[sizes, opt]


def tensor_parallel(model, plan, group):
    """model's modules, those named in plan replaced by their tensor-parallel slice:
    plan[i] = ("col", gather_output) or ("row", input_is_parallel)."""
    mods = OrderedDict()
    for name, m in model._modules.items():
        kind = plan.get(int(name))
        if kind is None:
            mods[name] = m
        elif kind[0] == "col":
            mods[name] = dist.ColumnParallelLinear.from_linear(m, group=group, gather_output=kind[1])
        else:
            mods[name] = dist.RowParallelLinear.from_linear(m, group=group, input_is_parallel=kind[1])
    return mg.nn.Sequential(mods)


def expected_slice(module, name, ref):
    """The part of the reference parameter `name` that this rank holds in `module`."""
    full = ref[name]
    layer = dict(module.named_modules())[name.rsplit(".", 1)[0]]
    if isinstance(layer, dist.ColumnParallelLinear):
        k, r = layer.group.world_size, layer.group.rank
        n = full.shape[0] // k
        return full[r * n:(r + 1) * n]
    if isinstance(layer, dist.RowParallelLinear) and name.endswith("weight"):
        k, r = layer.group.world_size, layer.group.rank
        n = full.shape[1] // k
        return full[:, r * n:(r + 1) * n]
    return full


def assert_matches(module, sizes, opt):
    ref = reference(sizes, opt)
    for name, p in module.named_parameters():
        want = expected_slice(module, name, ref)
        assert p.shape == want.shape, (name, p.shape, want.shape)
        rel = np.max(np.abs(p.numpy() - want)) / np.max(np.abs(want))
        assert rel <= TOL, f"{opt}: {name} differs from one process by {rel:.3g} (relative)"


def train_pipeline(sizes, opt, schedule, m, pp_group, stage_index, num_stages, balance=None,
                   tp=None, dp=None):
    """This rank's stage of `sizes`' MLP, trained for STEPS steps; returns (stage module, sched)."""
    model = make_model(sizes, seed=1)
    if tp is not None:
        model = tensor_parallel(model, *tp)
    piece = dist.split_sequential(model, num_stages, balance)[stage_index]
    module = piece if dp is None else dist.DistributedDataParallel(piece, group=dp)
    stage = dist.PipelineStage(module, stage_index, num_stages, group=pp_group)
    sched = schedule(stage, m, loss_fn=mse)
    params = list(piece.parameters())       # a stage of only Tanh (SIZES on 4 stages) has none
    o = OPTIMIZERS[opt](params) if params else None
    lo, hi = (0, BATCH) if dp is None else (dp.rank * BATCH // dp.world_size, (dp.rank + 1) * BATCH // dp.world_size)
    for s in range(STEPS):
        if o is not None:
            o.zero_grad()
        x, y = mg.tensor(X[s, lo:hi]), mg.tensor(Y[s, lo:hi])
        if stage.is_first and stage.is_last:
            sched.step(x, target=y)
        elif stage.is_first:
            sched.step(x)
        elif stage.is_last:
            losses = []
            sched.step(target=y, losses=losses)
            assert len(losses) == m and all(v.shape == () for v in losses)
        else:
            sched.step()
        if o is not None:
            o.step()
    return piece, sched


def pipeline_case(sizes, schedule, m, balance=None, num_stages=None):
    num_stages = num_stages or size
    for opt in OPTIMIZERS:
        piece, sched = train_pipeline(sizes, opt, schedule, m, world, rank, num_stages, balance)
        assert_matches(piece, sizes, opt)
    return sched


# --- checks for any world size ---------------------------------------------------------------

@check
def gpipe_matches_single_process():
    pipeline_case(SIZES, dist.ScheduleGPipe, 4)


@check
def one_f_one_b_matches_single_process():
    sched = pipeline_case(SIZES, dist.Schedule1F1B, 8)
    assert sched.stats["peak_in_flight"] <= size - rank, sched.stats


@check
def one_microbatch():
    for schedule in (dist.ScheduleGPipe, dist.Schedule1F1B):
        pipeline_case(SIZES, schedule, 1)


@check
def two_microbatches():
    for schedule in (dist.ScheduleGPipe, dist.Schedule1F1B):
        pipeline_case(SIZES, schedule, 2)


@check
def uneven_stages():
    """9 modules on `size` stages: the default split (earlier stages take the extra ones) and an
    explicit, lopsided balance; no module is dropped."""
    pipeline_case(DEEP, dist.Schedule1F1B, 4)
    balance = [1] * (size - 1) + [9 - (size - 1)]
    pipeline_case(DEEP, dist.ScheduleGPipe, 4, balance=balance)


@check
def bad_batches_are_reported():
    piece = dist.split_sequential(make_model(SIZES, seed=1), size)[rank]
    stage = dist.PipelineStage(piece, rank, size, group=world)
    sched = dist.Schedule1F1B(stage, 3, loss_fn=mse)
    if stage.is_first or stage.is_last:     # both check the batch before any communication
        try:
            sched.step(mg.tensor(X[0])) if stage.is_first else sched.step(target=mg.tensor(Y[0]))
        except ValueError as e:
            assert "does not split into 3 equal micro-batches" in str(e), e
        else:
            raise AssertionError("a batch of 16 in 3 micro-batches was accepted")
    try:
        dist.PipelineStage(piece, (rank + 1) % size, size, group=world)
    except ValueError as e:
        assert "stage_index" in str(e), e
    else:
        raise AssertionError("a stage index that is not this rank's place was accepted")


@check
def a_missing_peer_times_out_naming_stage_microbatch_and_peer():
    group = world.split(0, rank)            # a fresh group: nothing stale can match later
    group.timeout = group.host.timeout = 1.0
    piece = dist.split_sequential(make_model(SIZES, seed=1), size)[rank]
    stage = dist.PipelineStage(piece, rank, size, group=group)
    sched = dist.ScheduleGPipe(stage, 2, loss_fn=mse)
    if stage.is_last:                       # the other stages never call step()
        try:
            sched.step(target=mg.tensor(Y[0]))
        except dist.DistributedTimeoutError as e:
            want = (f"stage {size - 1} receiving the activation of micro-batch 0 from stage {size - 2} "
                    f"(rank {size - 2})")
            assert want in str(e) and "MINIGRAD_DIST_TIMEOUT" in str(e), str(e)
        else:
            raise AssertionError("step() returned without its input")
    world.barrier()


def hybrid_case(pp, tp, batch=BATCH):
    """Trainer's path: HybridParallel over (dp, pp, tp) on an mlp with fused tanh, the optimizer
    built over the full model and adopted; gather() then gives every rank the trained model."""
    from minigrad.train import mlp
    from minigrad.distributed.hybrid import HybridParallel
    sizes = (6, 8, 6, 8, 4)
    for opt in OPTIMIZERS:
        mg.manual_seed(1)
        ref = mlp(sizes, activation="tanh").double()
        ro = OPTIMIZERS[opt](ref.parameters())
        mg.manual_seed(1)
        model = mlp(sizes, activation="tanh").double()
        o = OPTIMIZERS[opt](model.parameters())
        runner = HybridParallel(model, pipeline_parallel=pp, tensor_parallel=tp, n_microbatches=4)
        runner.adopt(o)
        replicas, mine = runner.data_parallel
        lo, hi = mine * batch // replicas, (mine + 1) * batch // replicas
        for s in range(STEPS):
            ro.zero_grad()
            ref_loss = mse(ref(mg.tensor(X[s, :batch])), mg.tensor(Y[s, :batch]))
            ref_out = ref(mg.tensor(X[s, lo:hi])).numpy()
            ref_loss.backward()
            ro.step()
            o.zero_grad()
            out, loss = runner.train_step(mg.tensor(X[s, lo:hi]), mg.tensor(Y[s, lo:hi]), mse)
            o.step()
            assert np.allclose(out.numpy(), ref_out, rtol=1e-10, atol=1e-12), "the output of the batch"
            if replicas == 1:
                assert abs(loss.item() - ref_loss.item()) <= 1e-10 * abs(ref_loss.item()), (loss, ref_loss)
        runner.gather()
        want = {n: p.numpy() for n, p in ref.named_parameters()}
        for n, p in model.named_parameters():
            rel = np.max(np.abs(p.numpy() - want[n])) / np.max(np.abs(want[n]))
            assert rel <= TOL, f"{opt} pp={pp} tp={tp}: {n} differs from one process by {rel:.3g}"


# --- two ranks ----------------------------------------------------------------------------------

if size == 2:
    @check
    def f_and_g_operators_are_exact():
        """f: identity forward, sum of gradients backward; g: sum forward, identity backward;
        gather and scatter along the last axis; compared exactly with NumPy on gathered values."""
        r = np.random.default_rng(10 + rank)
        xs = world.all_gather_object(r.normal(size=(3, 4)))
        gs = world.all_gather_object(r.normal(size=(3, 4)))
        x = mg.tensor(xs[rank], requires_grad=True)
        y = dist.copy_to_tensor_parallel(x, world)
        assert np.array_equal(y.numpy(), xs[rank])
        y.backward(mg.tensor(gs[rank]))
        assert np.array_equal(x.grad.numpy(), gs[0] + gs[1])

        x = mg.tensor(xs[rank], requires_grad=True)
        y = dist.reduce_from_tensor_parallel(x, world)
        assert np.array_equal(y.numpy(), xs[0] + xs[1]) and np.array_equal(x.numpy(), xs[rank])
        y.backward(mg.tensor(gs[rank]))
        assert np.array_equal(x.grad.numpy(), gs[rank])

        x = mg.tensor(xs[rank], requires_grad=True)
        y = dist.gather_from_tensor_parallel(x, world)
        assert np.array_equal(y.numpy(), np.concatenate(xs, axis=-1))
        g = np.concatenate(gs, axis=-1)
        y.backward(mg.tensor(g))
        assert np.array_equal(x.grad.numpy(), g[:, rank * 4:(rank + 1) * 4])

        full = xs[0]                            # the same full input on both ranks
        x = mg.tensor(full, requires_grad=True)
        y = dist.scatter_to_tensor_parallel(x, world)
        assert np.array_equal(y.numpy(), full[:, rank * 2:(rank + 1) * 2])
        y.backward(mg.tensor(gs[rank][:, :2]))
        assert np.array_equal(x.grad.numpy(), np.concatenate([gs[0][:, :2], gs[1][:, :2]], axis=-1))

        try:
            dist.ColumnParallelLinear(4, 5, group=world)
        except ValueError as e:
            assert "out_features (5) must be divisible" in str(e), e
        else:
            raise AssertionError("ColumnParallelLinear(4, 5) on 2 ranks was accepted")
        try:
            dist.RowParallelLinear(3, 4, group=world)
        except ValueError as e:
            assert "in_features (3) must be divisible" in str(e), e
        else:
            raise AssertionError("RowParallelLinear(3, 4) on 2 ranks was accepted")

    @check
    def hybrid_two_ranks():
        hybrid_case(2, 1)
        hybrid_case(1, 2)
        hybrid_case(1, 1)

    @check
    def trainer_fit_pipelined_equals_tensor_parallel():
        """Trainer.fit with pipeline_parallel=2 and with tensor_parallel=2 (the same batches: one
        data-parallel replica): the same history and weights, on both ranks; a partial last batch."""
        from minigrad.train import mlp
        r = np.random.default_rng(5)
        xs, ys = r.normal(size=(42, 6)), r.integers(0, 3, size=42)

        def fit(pp, tp):
            mg.manual_seed(0)
            model = mlp((6, 8, 8, 3)).double()
            trainer = mg.Trainer(model, mg.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), "cross_entropy",
                                 pipeline_parallel=pp, tensor_parallel=tp, n_microbatches=4)
            history = trainer.fit(xs, ys, epochs=3, batch_size=8, validation_data=(xs[:10], ys[:10]), verbose=0)
            return history, {n: p.numpy().copy() for n, p in model.named_parameters()}, trainer

        h_pp, w_pp, trainer = fit(2, 1)
        h_tp, w_tp, _ = fit(1, 2)
        for k in h_pp:
            assert np.allclose(h_pp[k], h_tp[k], rtol=1e-10, atol=0), (k, h_pp[k], h_tp[k])
        assert h_pp["loss"][-1] < h_pp["loss"][0]
        for n in w_pp:
            assert np.allclose(w_pp[n], w_tp[n], rtol=1e-10, atol=1e-14), n
        for theirs in world.all_gather_object(w_pp):
            assert all(np.array_equal(theirs[n], w_pp[n]) for n in w_pp), "ranks hold different models"
        assert np.isclose(trainer.evaluate(xs[:10], ys[:10])["loss"], h_pp["val_loss"][-1], rtol=1e-12)
        try:
            fit_model = mlp((6, 8, 3)).double()
            mg.Trainer(fit_model, "sgd", "cross_entropy", pipeline_parallel=2).fit(
                xs, ys, batch_size=8, checkpoint="unused.safetensors", verbose=0)
        except ValueError as e:
            assert "checkpoints of a pipeline- or tensor-parallel fit" in str(e), e
        else:
            raise AssertionError("a pipeline-parallel fit with checkpoint= was accepted")

    @check
    def tensor_parallel_layers_hold_their_slice():
        mg.manual_seed(3)
        full = mg.nn.Linear(6, 8, activation="tanh").double()
        mg.manual_seed(3)
        col = dist.ColumnParallelLinear(6, 8, activation="tanh", group=world).double()
        assert col.weight.shape == (4, 6) and col.bias.shape == (4,)
        assert np.array_equal(col.weight.numpy(), full.weight.numpy()[rank * 4:(rank + 1) * 4])
        row = dist.RowParallelLinear.from_linear(mg.nn.Linear(8, 3).double(), group=world)
        assert row.weight.shape == (3, 4) and row.bias.shape == (3,)

    @check
    def tensor_parallel_matches_single_process():
        for plan in ({0: ("col", False), 2: ("row", True), 4: ("col", True)},
                     {0: ("row", False), 2: ("col", True), 4: ("row", False)}):
            for opt in OPTIMIZERS:
                model = tensor_parallel(make_model(SIZES, seed=1), plan, world)
                o = OPTIMIZERS[opt](model.parameters())
                for s in range(STEPS):
                    o.zero_grad()
                    mse(model(mg.tensor(X[s])), mg.tensor(Y[s])).backward()
                    o.step()
                assert_matches(model, SIZES, opt)


# --- four ranks -------------------------------------------------------------------------------

if size == 4:
    @check
    def data_parallel_times_pipeline():
        mesh = dist.init_device_mesh("cpu", (2, 2), mesh_dim_names=("dp", "pp"))
        assert mesh.get_local_rank("dp") == rank // 2 and mesh.get_local_rank("pp") == rank % 2
        pp, dp = mesh.get_group("pp"), mesh.get_group("dp")
        assert (pp.world_size, dp.world_size, pp.rank, dp.rank) == (2, 2, rank % 2, rank // 2)
        for schedule in (dist.ScheduleGPipe, dist.Schedule1F1B):
            for opt in OPTIMIZERS:
                piece, _ = train_pipeline(SIZES, opt, schedule, 2, pp, pp.rank, 2, dp=dp)
                assert_matches(piece, SIZES, opt)

    @check
    def pipeline_times_tensor_parallel():
        mesh = dist.init_device_mesh("cpu", (2, 2), mesh_dim_names=("pp", "tp"))
        pp, tp = mesh.get_group("pp"), mesh.get_group("tp")
        plan = ({0: ("col", False), 2: ("row", True), 4: ("col", True)}, tp)
        for schedule in (dist.ScheduleGPipe, dist.Schedule1F1B):
            for opt in OPTIMIZERS:
                # stage 0: [Column, Tanh] sends its tensor-parallel slice to stage 1's [Row, Tanh, Column]
                piece, _ = train_pipeline(SIZES, opt, schedule, 4, pp, pp.rank, 2, balance=[2, 3], tp=plan)
                assert_matches(piece, SIZES, opt)

    @check
    def hybrid_four_ranks():
        hybrid_case(2, 2)
        hybrid_case(4, 1)
        hybrid_case(2, 1)
        hybrid_case(1, 2)

    @check
    def four_stages_eight_microbatches_hold_at_most_p():
        for schedule, bound in ((dist.ScheduleGPipe, 8), (dist.Schedule1F1B, 4 - rank)):
            sched = pipeline_case(DEEP, schedule, 8)
            assert sched.stats["peak_in_flight"] == bound, (schedule.__name__, sched.stats)

dist.destroy_process_group()
