"""Data-parallel cost: all-reduce time against bucket size, and the share of a training step spent
communicating, on 1 and 2 ranks.

    python benchmarks/bench_dp.py [--ranks 1 2] [--backend mpi|nccl] [--quick]

launches itself as `mpiexec -n R python benchmarks/bench_dp.py --worker` for each R, prints tables
and writes benchmarks/results/bench_dp.json. Thread counts are minigrad's defaults: each rank uses
its share of the cores (cores / R, at least 1) for BLAS and kernel threads, so one rank uses them
all; set MINIGRAD_NUM_THREADS or OMP_NUM_THREADS to fix a count instead.

1. all-reduce (sum, in place, float32) of one flat buffer of each size: time per call, algorithm
   bandwidth (bytes / time) and bus bandwidth (x 2(R-1)/R, the bytes each rank actually moves in a
   ring), as nccl-tests report them.
2. training steps (SGD momentum, MSE) of MLP workloads with DistributedDataParallel at several
   bucket sizes, each rank on global_batch / R samples: step time, the same step under no_sync()
   (compute only), the difference (communication the step pays for, i.e. not hidden behind the
   backward pass) as a share of the step, and the time spent waiting for all-reduces at the end
   of backward.
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

WORKLOADS = {  # name: (layer sizes, global batch, steps per timed block)
    "mnist-shaped 784-64-64-10": ((784, 64, 64, 10), 128, 20),
    "wide 784-1024-1024-10": ((784, 1024, 1024, 10), 512, 2),
}
SIZES_KIB = [4, 16, 64, 256, 1024, 4096, 16384, 65536]


def block_times(fn, blocks, per_block, sync):
    """Seconds per call of the fastest and of the median of ``blocks`` blocks of ``per_block`` calls,
    every rank starting each block together. Other processes on the machine only ever add time, so
    the fastest block is the closest to what the hardware does (timeit's rule); the median shows
    how far interference moved it."""
    fn()
    times = []
    for _ in range(blocks):
        sync()
        t0 = time.perf_counter()
        for _ in range(per_block):
            fn()
        sync()
        times.append((time.perf_counter() - t0) / per_block)
    return min(times), float(np.median(times))


def worker(args):
    import minigrad as mg
    import minigrad.distributed as dist
    from minigrad import backend

    group = dist.init_process_group(args.backend)
    rank, world, device = dist.get_rank(), dist.get_world_size(), dist.get_device()
    xp = np if device == "cpu" else backend.cupy()

    def sync():
        backend.synchronize(device if device != "cpu" else None)
        group.barrier()        # every rank starts each timed call together

    out = {"world_size": world, "backend": group.name, "device": device, "allreduce": [], "training": [],
           "threads_per_rank": mg.get_num_threads(), "threads": backend.threads_info()}
    sizes = SIZES_KIB[:5] if args.quick else SIZES_KIB
    for kib in sizes:
        buf = xp.ones(kib * 1024 // 4, dtype=np.float32)
        per_block = max(1, min(50, int(2e4 / kib)))
        t, t_median = block_times(lambda: group.all_reduce(buf, "sum"), 3 if args.quick else 15, per_block, sync)
        nbytes = buf.nbytes
        out["allreduce"].append({"bytes": nbytes, "time_ms": 1e3 * t, "median_ms": 1e3 * t_median,
                                 "algbw_GBps": nbytes / t / 1e9,
                                 "busbw_GBps": nbytes / t / 1e9 * 2 * (world - 1) / world})

    rng = np.random.default_rng(0)
    for name, (layers, global_batch, per_block) in WORKLOADS.items():
        if args.quick and global_batch > 128:
            continue
        batch = global_batch // world
        x = mg.tensor(rng.normal(size=(batch, layers[0])).astype(np.float32), device=device)
        y = mg.tensor(rng.normal(size=(batch, layers[-1])).astype(np.float32), device=device)
        for bucket_mb in (0.25, 1, 25):
            mg.manual_seed(0)
            mods = []
            for i, (a, b) in enumerate(zip(layers[:-1], layers[1:])):
                mods += [mg.nn.Linear(a, b)] + ([mg.nn.ReLU()] if i + 2 < len(layers) else [])
            model = dist.DistributedDataParallel(mg.nn.Sequential(*mods).to(device), bucket_mb=bucket_mb)
            opt = mg.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

            def step():
                opt.zero_grad()
                mg.nn.functional.mse_loss(model(x), y).backward()
                opt.step()

            def local_step():
                with model.no_sync():
                    step()

            blocks = 3 if args.quick else 15
            t_local, _ = block_times(local_step, blocks, per_block, sync)
            model.stats.update(wait_s=0.0, all_reduces=0)
            t_step, t_step_median = block_times(step, blocks, per_block, sync)
            calls = blocks * per_block + 1
            grad_bytes = sum(p.data.nbytes for p in model.parameters())
            out["training"].append({
                "workload": name, "global_batch": global_batch, "batch_per_rank": batch,
                "bucket_mb": bucket_mb, "buckets": len(model._buckets), "grad_MB": grad_bytes / 2**20,
                "step_ms": 1e3 * t_step, "step_median_ms": 1e3 * t_step_median, "compute_only_ms": 1e3 * t_local,
                "comm_overhead_ms": 1e3 * max(t_step - t_local, 0.0),
                "comm_share": max(t_step - t_local, 0.0) / t_step,
                "end_of_backward_wait_ms": 1e3 * model.stats["wait_s"] / calls,
                "samples_per_s": global_batch / t_step})
            model.remove_hooks()
    if rank == 0:
        with open(args.out, "w") as f:
            json.dump(out, f)


def launch(ranks, args):
    return run_ranks(ranks, __file__, ["--backend", args.backend] + (["--quick"] if args.quick else []))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    p.add_argument("--backend", default="mpi", choices=["mpi", "nccl"])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "bench_dp.json"))
    args = p.parse_args()
    if args.worker:
        return worker(args)

    load_before = os.getloadavg()       # other processes on the machine skew the ranks' timings
    runs = [launch(r, args) for r in args.ranks]
    print("all-reduce (sum, float32), time per call in the fastest block")
    print(f"{'size':>10} " + " ".join(f"{f'{r} rank(s) ms':>14} {'busbw GB/s':>10}" for r in args.ranks))
    for i, row in enumerate(runs[0]["allreduce"]):
        cells = " ".join(f"{run['allreduce'][i]['time_ms']:14.4f} {run['allreduce'][i]['busbw_GBps']:10.2f}"
                         for run in runs)
        print(f"{row['bytes'] / 1024:8.0f}Ki {cells}")
    print("\ntraining step with DistributedDataParallel (comm share = (step - no_sync step) / step)")
    print(f"{'workload':28} {'ranks':>5} {'bucket MB':>9} {'buckets':>7} {'step ms':>9} {'compute ms':>10} "
          f"{'comm share':>10} {'samples/s':>10}")
    for run in runs:
        for t in run["training"]:
            print(f"{t['workload']:28} {run['world_size']:5d} {t['bucket_mb']:9g} {t['buckets']:7d} "
                  f"{t['step_ms']:9.3f} {t['compute_only_ms']:10.3f} {100 * t['comm_share']:9.1f}% "
                  f"{t['samples_per_s']:10.0f}")
    print("\nthreads per rank: " + ", ".join(f"{run['world_size']} rank(s): {run['threads']}" for run in runs))
    best = {}
    for run in runs:
        for t in run["training"]:
            key = (t["workload"], run["world_size"])
            best[key] = min(best.get(key, float("inf")), t["step_ms"])
    print(f"\nfastest step over bucket sizes, ms  ({' / '.join(f'{r} rank(s)' for r in args.ranks)}; "
          f"speed-up of the most ranks over 1)")
    speedup = {}
    for name in WORKLOADS:
        times = [best.get((name, r)) for r in args.ranks]
        if None in times:
            continue
        speedup[name] = times[0] / times[-1]
        print(f"{name:28} " + " ".join(f"{t:9.3f}" for t in times) + f"   x{speedup[name]:.2f}")
    result = {"command": "python benchmarks/bench_dp.py " + " ".join(sys.argv[1:]),
              "machine": {"platform": platform.platform(), "processor": platform.processor(),
                          "cpus": os.cpu_count(), "python": platform.python_version(),
                          "numpy": np.__version__, "loadavg_before": load_before,
                          "loadavg_after": os.getloadavg()},
              "fastest_step_ms": {f"{name} / {r} rank(s)": t for (name, r), t in best.items()},
              "speedup": speedup, "runs": runs}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"\nwrote {os.path.relpath(args.out)}")


if __name__ == "__main__":
    main()
