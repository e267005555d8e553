"""Pipeline and tensor parallelism: measured pipeline efficiency against the ideal m / (m + p - 1),
per-rank parameter and activation memory, and bytes sent per step against the formula.

    python benchmarks/bench_parallel.py [--stages 2 4] [--max-micro 16] [--backend mpi|nccl] [--quick]

launches itself as `mpiexec -n p python benchmarks/bench_parallel.py --worker` for each p, prints
tables and writes benchmarks/results/bench_parallel.json and .png, and the schedules' timelines
(drawn from their action lists) as benchmarks/results/timeline_gpipe.png and timeline_1f1b.png.
Every rank runs with one thread (BLAS and minigrad's kernels). With --backend nccl each rank runs on its GPU (local rank %
GPU count) and the activations travel over NCCL; stage busy times are then the CPU's (kernel
launches), so only the throughput column measures the GPU pipeline.

Each of the p stages is the same: `--layers` Linear(width, width, tanh) layers (float32), fed
micro-batches of `--micro-batch` rows; the batch is m micro-batches. t_mb is one stage's forward +
backward of one micro-batch with no communication, timed on each rank alone (the others wait in a
barrier) and the slowest rank's kept. Two efficiencies are reported:

* utilization: the share of the step each stage spends computing (its forwards and backwards,
  timed inside the schedule: PipelineSchedule.stats["compute_s"]), averaged over the stages.
  This is 1 - the bubble, measured; a perfect pipeline reaches m / (m + p - 1). Work and wait
  are timed in the same run, so load from other processes stretches both alike.
* throughput: m * t_mb / step time, the work of the step at the speed of a stage running alone.
  It also charges the pipeline for stages that compete for cores: on a machine with fewer cores
  than ranks the steady state cannot beat cores / p (see "cores" in the JSON).

Each configuration reports its fastest of --repeat steps (the least disturbed by other work on
the machine): its time and each stage's busy share within it.
"""
import argparse
import json
import os
import platform
import sys
import time

import numpy as np

from _ranks import ROOT, run_ranks
sys.path.insert(0, ROOT)
RESULTS = os.path.join(ROOT, "benchmarks", "results")


def _saved_bytes(root, params):
    """Bytes of the memory the tape holds for `root`'s backward (one micro-batch's activations):
    the arrays its ops saved, each block of memory once (views share it), parameters left out."""
    skip = {id(p.data) for p in params}
    owners, total, stack, seen = set(), 0, [root._ctx], set()
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        for a in node.saved_tensors or ():
            if a is None or not hasattr(a, "nbytes") or id(a) in skip:
                continue
            while getattr(a, "base", None) is not None and hasattr(a.base, "nbytes"):
                a = a.base
            if id(a) not in owners:
                owners.add(id(a))
                total += a.nbytes
        stack.extend(t._ctx for t in node.inputs)
    return total


def worker(args):
    import minigrad as mg
    import minigrad.distributed as dist
    from minigrad import backend
    from minigrad.nn.functional import mse_loss

    group = dist.init_process_group(args.backend)
    rank, p, device = group.rank, group.world_size, dist.get_device()
    width, b = args.width, args.micro_batch
    mg.manual_seed(rank)
    module = mg.nn.Sequential(*[mg.nn.Linear(width, width, activation="tanh") for _ in range(args.layers)])
    module.to(device)
    stage = dist.PipelineStage(module, rank, p)
    rng = np.random.default_rng(0)
    out = {"stages": p, "width": width, "layers_per_stage": args.layers, "micro_batch": b,
           "dtype": "float32", "backend": group.name, "device": device, "runs": []}

    def barrier():
        backend.synchronize(device if device != "cpu" else None)
        group.barrier()

    # One stage's forward + backward of a micro-batch, alone on the machine.
    xb = mg.tensor(rng.normal(size=(b, width)).astype(np.float32), device=device, requires_grad=True)
    t_mb, act_bytes = 0.0, 0
    for r in range(p):
        barrier()
        if r == rank:
            times = []
            for _ in range(2 * args.repeat + 2):
                t0 = time.perf_counter()
                y = module(xb)
                act_bytes = _saved_bytes(y, module.parameters())
                y.backward(mg.ones_like(y))
                backend.synchronize(device if device != "cpu" else None)
                times.append(time.perf_counter() - t0)
            t_mb = min(times[2:])
    group.barrier()
    t_mbs = group.all_gather_object(t_mb)
    out["t_microbatch_ms"] = [1e3 * t for t in t_mbs]
    out["activation_bytes_per_microbatch"] = act_bytes
    t_mb = max(t_mbs)

    kinds = {"gpipe": dist.ScheduleGPipe, "1f1b": dist.Schedule1F1B}
    for m in args.micro:
        x = mg.tensor(rng.normal(size=(m * b, width)).astype(np.float32), device=device)
        y = mg.tensor(rng.normal(size=(m * b, width)).astype(np.float32), device=device)
        for name, kind in kinds.items():
            sched = kind(stage, m, loss_fn=mse_loss)

            def step():
                module.zero_grad()
                if stage.is_first and stage.is_last:
                    sched.step(x, target=y)
                elif stage.is_first:
                    sched.step(x)
                elif stage.is_last:
                    sched.step(target=y)
                else:
                    sched.step()

            step()                                   # warm-up: buffers, the shape header
            sent0 = sched.stats["bytes_sent"]
            times, busy = [], []
            for _ in range(args.repeat):
                barrier()
                busy0, t0 = sched.stats["compute_s"], time.perf_counter()
                step()
                barrier()                            # the step ends when the last stage is done
                times.append(time.perf_counter() - t0)
                busy.append(sched.stats["compute_s"] - busy0)
            fastest = int(np.argmin(group.all_gather_object(times)[0]))     # rank 0's fastest step, for all
            t_step = times[fastest]
            busy = group.all_gather_object(busy[fastest] / t_step)
            sent = group.all_gather_object((sched.stats["bytes_sent"] - sent0) / args.repeat)
            peaks = group.all_gather_object(sched.stats["peak_in_flight"])
            itemsize = 4
            out["runs"].append({
                "schedule": name, "m": m, "step_ms": 1e3 * t_step, "work_ms": 1e3 * m * t_mb,
                "utilization": float(np.mean(busy)), "utilization_per_stage": busy,
                "efficiency": m * t_mb / t_step, "ideal": m / (m + p - 1),
                "bytes_sent_per_step": sum(sent),
                "bytes_formula": 2 * (p - 1) * m * b * width * itemsize,
                "peak_in_flight": peaks,
                "activation_bytes_peak": [n * act_bytes for n in peaks]})

    # Tensor parallel: a ColumnParallelLinear(width, 4 width) + RowParallelLinear(4 width, width)
    # block on k = 1 .. p ranks (sub-groups of the world): each rank's share of the weights.
    out["tensor_parallel"] = []
    k = 1
    while k <= p:
        sub = group.split(rank // k, rank % k)
        col = dist.ColumnParallelLinear(width, 4 * width, activation="gelu", group=sub, device=device)
        row = dist.RowParallelLinear(4 * width, width, group=sub, device=device)
        mine = sum(q.data.nbytes for q in (*col.parameters(), *row.parameters()))
        full = (width * 4 * width + 4 * width) * 4 + (4 * width * width + width) * 4
        out["tensor_parallel"].append({"k": k, "param_bytes_per_rank": mine, "full_bytes": full,
                                       "share": mine / full})
        k *= 2
    if rank == 0:
        with open(args.out, "w") as f:
            json.dump(out, f)


def launch(p, args):
    # one thread per rank, for BLAS and for minigrad's kernels alike (OMP_NUM_THREADS sizes both)
    return run_ranks(p, __file__, ["--width", str(args.width), "--layers", str(args.layers),
                                   "--micro-batch", str(args.micro_batch), "--repeat", str(args.repeat),
                                   "--backend", args.backend, "--micro", *map(str, args.micro)],
                     env={"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})


def draw_timelines(p, m):
    from minigrad.distributed import schedule
    for kind, title in (("gpipe", "GPipe"), ("1f1b", "1F1B")):
        steps = schedule.pipeline_steps(schedule.SCHEDULES[kind](p, m))
        # a backward costs about twice a forward
        timeline = schedule.simulate(steps, forward_time=1, backward_time=2)
        peak = max(schedule.peak_in_flight(schedule.SCHEDULES[kind](p, m)))
        schedule.draw_timeline(timeline, os.path.join(RESULTS, f"timeline_{kind}.png"),
                               f"{title}, {p} stages, {m} micro-batches, up to {peak} in flight")


def plot(runs, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(runs), figsize=(5.5 * len(runs), 4), squeeze=False)
    for ax, run in zip(axes[0], runs):
        p = run["stages"]
        ms = sorted({r["m"] for r in run["runs"]})
        dense = np.linspace(1, max(ms), 200)
        ax.plot(dense, dense / (dense + p - 1), "k-", label="ideal m/(m+p-1)")
        ax.plot(dense, 0.9 * dense / (dense + p - 1), "k:", label="0.9 x ideal")
        if run["cores"] < p:
            ax.axhline(run["cores"] / p, color="grey", lw=0.8, ls="--", label=f"{run['cores']} cores / {p} ranks")
        for kind, marker, color in (("gpipe", "o", "C0"), ("1f1b", "s", "C1")):
            rows = [r for r in run["runs"] if r["schedule"] == kind]
            ms_ = [r["m"] for r in rows]
            ax.plot(ms_, [r["utilization"] for r in rows], marker, ls="-", ms=4, color=color,
                    label=f"{kind}: stages' busy share")
            ax.plot(ms_, [r["efficiency"] for r in rows], marker, ls=":", ms=3, color=color, alpha=0.5,
                    label=f"{kind}: m t_mb / step")
        ax.set_title(f"{p} stages over {run['backend'].upper()} ({run['cores']} cores)")
        ax.set_xlabel("micro-batches m")
        ax.set_ylabel("pipeline efficiency")
        ax.set_ylim(0, 1.05)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stages", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--max-micro", type=int, default=16)
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--micro-batch", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--backend", default="mpi", choices=["mpi", "nccl"])
    ap.add_argument("--micro", type=int, nargs="+", help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true", help="small sizes, m in 1 2 4: a smoke test")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help="[benchmarks/results/bench_parallel.json, _nccl.json for NCCL]")
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    if args.out is None:
        name = "bench_parallel_nccl.json" if args.backend == "nccl" else "bench_parallel.json"
        args.out = os.path.join(RESULTS, name)
    if args.quick:
        args.width, args.layers, args.micro_batch, args.repeat, args.max_micro = 64, 1, 8, 2, 4
    args.micro = list(range(1, args.max_micro + 1)) if not args.quick else [1, 2, 4]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    runs, load_before = [], os.getloadavg()
    for p in args.stages:
        run = launch(p, args)
        run["cores"] = cores
        runs.append(run)
        print(f"\n{p} stages ({cores} cores), t_mb = {max(run['t_microbatch_ms']):.2f} ms per micro-batch "
              f"(forward + backward of {args.layers} x Linear({args.width}, {args.width}) on {args.micro_batch} rows)")
        print(f"{'m':>3} {'schedule':>8} {'step ms':>9} {'busy':>6} {'ideal':>6} {'ratio':>6} {'m t_mb/step':>11} "
              f"{'MB sent':>8} {'formula':>8} {'peak in flight per stage':>26}")
        for r in run["runs"]:
            print(f"{r['m']:3d} {r['schedule']:>8} {r['step_ms']:9.2f} {r['utilization']:6.3f} {r['ideal']:6.3f} "
                  f"{r['utilization'] / r['ideal']:6.2f} {r['efficiency']:11.3f} {r['bytes_sent_per_step'] / 1e6:8.3f} "
                  f"{r['bytes_formula'] / 1e6:8.3f} {str(r['peak_in_flight']):>26}")
        for t in run["tensor_parallel"]:
            print(f"tensor parallel k={t['k']}: {t['param_bytes_per_rank'] / 2**20:.2f} MiB of "
                  f"{t['full_bytes'] / 2**20:.2f} MiB per rank ({t['share']:.3f})")
    result = {"command": "python benchmarks/bench_parallel.py " + " ".join(sys.argv[1:]),
              "machine": {"platform": platform.platform(), "processor": platform.processor(),
                          "cpus": os.cpu_count(), "cores_available": cores,
                          "python": platform.python_version(), "numpy": np.__version__,
                          "load_average_1_5_15_min": {"before": load_before, "after": os.getloadavg()}},
              "threads_per_rank": 1, "runs": runs}
    if not args.quick:
        os.makedirs(RESULTS, exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
        plot(runs, os.path.splitext(args.out)[0] + ".png")
        draw_timelines(4, 8)
        print(f"\nwrote {os.path.relpath(args.out)}, its plot and the timelines")


if __name__ == "__main__":
    main()
