"""Training-step benchmark: minigrad against PyTorch, on CPU and (when present) GPU.

    python benchmarks/bench_train.py [--quick] [--workloads iris,digits] [--backends minigrad-cpu,torch-cpu] [--out DIR]
    minigrad bench [same options]          (the same run without the project's targets)

One training step is zero_grad + forward + backward + optimizer step of a float32 ReLU MLP with a
cross-entropy loss on pre-generated standard-normal batches and random labels. Every (backend,
workload) runs in a fresh process (this file run with ``--worker``), warms up, and times blocks of
steps; the figure is the median over the blocks of all its rounds, rounds alternating between
backends so that a burst of load on a shared machine hits both sides of a ratio. The same run
also measures the NumPy float32 matmul peak, the peak RSS of a digits training process, the time
of ``import minigrad`` and records the environment; it writes ``<date>-<host>.json`` and a PNG
plot to --out (the current folder by default) and prints a table of minigrad / PyTorch ratios, run
as this script against the project's targets (RATIO_TARGETS and below). It warns when the machine
is busy enough that the ratios cannot be trusted.

This file imports only the standard library at the top: workers run it with runpy, so a PyTorch
worker never imports minigrad. `minigrad bench` (minigrad/bench.py) finds it and calls main().
"""
import argparse
import datetime
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

# name: layer sizes, batch, optimizer
WORKLOADS = {
    "iris": ((4, 3, 3, 3), 32, "adam"),
    "digits": ((64, 10, 8, 10), 32, "sgd-nesterov"),
    "mnist_mlp": ((784, 64, 64, 10), 128, "adam"),
    "wide": ((784, 1024, 1024, 10), 512, "adam"),
    "huge": ((4096, 4096, 4096, 4096), 1024, "sgd"),
}
BACKENDS = ("minigrad-cpu", "torch-cpu", "minigrad-cuda", "torch-cuda")

# The project's targets (checked when this file runs as a script, not by `minigrad bench`).
# minigrad / PyTorch step-time ratio targets, on the CPU and on a GPU
RATIO_TARGETS = {"cpu": {"iris": 0.5, "digits": 0.5, "mnist_mlp": 0.9, "wide": 1.0},
                 "cuda": {"huge": 1.1}}
HUGE_PEAK_FRACTION = 0.8    # huge's achieved GFLOP/s over the NumPy matmul peak, at least
RSS_MIB = 80                # peak RSS of a minigrad digits training process, at most
IMPORT_S = 0.2              # `import minigrad`, at most


def _timing(workload, quick, gpu=False):
    """(warm-up steps, timed blocks per round, minimum seconds per block, rounds)."""
    if quick:
        return (2, 3, 0.0, 1) if workload in ("wide", "huge") else (10, 5, 0.005, 1)
    if workload == "huge":  # about 2 s a step on a 2-core CPU, milliseconds on a GPU
        return (10, 20, 0.05, 2) if gpu else (2, 5, 0.0, 1)
    if workload == "wide":
        return 5, 15, 0.05, 2
    return 300, 20, 0.02, 3


# ---------------------------------------------------------------------------------------------
# Workers: each runs in its own process and prints one JSON line.

def _batches(sizes, batch, n, seed=0):
    import numpy as np
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((batch, sizes[0]), dtype=np.float32),
             rng.integers(0, sizes[-1], batch).astype(np.int64)) for _ in range(n)]


def _minigrad_model(sizes, device):
    import minigrad as mg
    last = len(sizes) - 2
    return mg.nn.Sequential(*[mg.nn.Linear(i, o, activation=None if k == last else "relu", device=device)
                              for k, (i, o) in enumerate(zip(sizes, sizes[1:]))])


def _torch_model(sizes, device):
    import torch
    layers = []
    for i, o in zip(sizes, sizes[1:]):
        layers += [torch.nn.Linear(i, o), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers[:-1]).to(device)


def _optimizer(lib, params, kind):
    if kind == "adam":
        return lib.optim.Adam(params, lr=1e-3)
    if kind == "sgd-nesterov":
        return lib.optim.SGD(params, lr=0.01, momentum=0.9, nesterov=True)
    return lib.optim.SGD(params, lr=0.01)


def _minigrad_step(sizes, batch, kind, device, n_batches):
    import minigrad as mg
    mg.manual_seed(0)
    model = _minigrad_model(sizes, device)
    opt = _optimizer(mg, model.parameters(), kind)
    loss_fn = mg.nn.CrossEntropyLoss()
    data = [(mg.tensor(x, device=device), mg.tensor(y, device=device)) for x, y in _batches(sizes, batch, n_batches)]
    return _step(model, opt, loss_fn, data, mg.cuda.synchronize if device == "cuda" else None)


def _step(model, opt, loss_fn, data, sync):
    """One training step on the next of the pre-made batches, written once for both frameworks;
    on a GPU it waits for the device so that the time is the work's."""
    it = [0]

    def step():
        x, y = data[it[0] % len(data)]
        it[0] += 1
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        if sync is not None:
            sync()
    return step


def _torch_step(sizes, batch, kind, device, n_batches):
    import torch
    torch.manual_seed(0)
    model = _torch_model(sizes, device)
    opt = _optimizer(torch, model.parameters(), kind)
    loss_fn = torch.nn.CrossEntropyLoss()
    data = [(torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)) for x, y in _batches(sizes, batch, n_batches)]
    return _step(model, opt, loss_fn, data, torch.cuda.synchronize if device == "cuda" else None)


def _worker_env(lib):
    """Thread counts and kernel paths as this worker sees them."""
    env = {}
    try:
        from threadpoolctl import threadpool_info
        env["threadpools"] = [{k: i.get(k) for k in ("user_api", "internal_api", "version", "num_threads",
                                                     "architecture", "filepath")} for i in threadpool_info()]
    except ImportError:
        pass
    if lib == "torch":
        import torch
        env.update(torch=torch.__version__, torch_threads=torch.get_num_threads(),
                   torch_cuda=torch.version.cuda, torch_parallel=torch.__config__.parallel_info().splitlines()[:8])
        if torch.cuda.is_available():
            env["gpu"] = torch.cuda.get_device_name(0)
    else:
        import minigrad as mg
        env["kernels"] = {k: str(v) for k, v in mg.backend.backend_info().items()}
    return env


def worker_step(spec):
    """Time one (backend, workload): {"times_ms": [per-step ms of each block], ...}."""
    lib, device = spec["backend"].split("-")
    sizes, batch, kind = WORKLOADS[spec["workload"]]
    if lib == "torch":
        import torch
        torch.set_num_threads(spec["threads"])
    make = _torch_step if lib == "torch" else _minigrad_step
    n_batches = 2 if spec["workload"] == "huge" else 8
    step = make(sizes, batch, kind, device, n_batches)
    warmup, blocks, min_block_s = spec["warmup"], spec["blocks"], spec["min_block_s"]
    for _ in range(warmup):
        step()
    per_block, t = 0, time.perf_counter()  # a block is as many steps as fill min_block_s
    while per_block == 0 or time.perf_counter() - t < min_block_s:
        step()
        per_block += 1
    times = []
    for _ in range(blocks):
        t = time.perf_counter()
        for _ in range(per_block):
            step()
        times.append((time.perf_counter() - t) / per_block * 1e3)
    return {"times_ms": times, "steps_per_block": per_block, "warmup": warmup, "env": _worker_env(lib)}


def worker_matmul(spec):
    """NumPy float32 (n, n) @ (n, n): GFLOP/s of each repeat after one warm-up."""
    import numpy as np
    n = spec["n"]
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)
    out = np.empty((n, n), np.float32)
    np.matmul(a, b, out=out)
    rates = []
    for _ in range(spec["repeats"]):
        t = time.perf_counter()
        np.matmul(a, b, out=out)
        rates.append(2 * n ** 3 / (time.perf_counter() - t) / 1e9)
    return {"gflops": rates, "n": n}


def worker_rss(spec):
    """Train 64-10-8-10 on digits (SGD Nesterov, batch 32) and report this process's peak RSS."""
    import numpy as np
    lib = spec["lib"]
    if lib != "numpy":
        data = np.load(spec["data"])
        x, y = data["x"], data["y"]
        rng = np.random.default_rng(0)
        if lib == "torch":
            import torch
            torch.set_num_threads(spec["threads"])
            model = _torch_model((64, 10, 8, 10), "cpu")
            opt, loss_fn, wrap = _optimizer(torch, model.parameters(), "sgd-nesterov"), torch.nn.CrossEntropyLoss(), torch.from_numpy
        else:
            import minigrad as mg
            model = _minigrad_model((64, 10, 8, 10), "cpu")
            opt, loss_fn, wrap = _optimizer(mg, model.parameters(), "sgd-nesterov"), mg.nn.CrossEntropyLoss(), mg.tensor
        for _ in range(spec["epochs"]):
            order = rng.permutation(len(x))
            for i in range(0, len(x), 32):
                idx = order[i:i + 32]
                opt.zero_grad()
                loss = loss_fn(model(wrap(x[idx])), wrap(y[idx]))
                loss.backward()
                opt.step()
    return {"maxrss_mib": _peak_rss_mib()}


def _peak_rss_mib():
    """This process's peak RSS. Linux's VmHWM, not getrusage's ru_maxrss: that one carries over the
    parent's peak across fork + exec, so a child of a big process would report the parent's size."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2 ** 20 if sys.platform == "darwin" else 1024)


def worker_probe(spec):
    """Which optional backends this machine has (PyTorch, CUDA for PyTorch and for minigrad)."""
    import importlib.util
    import shutil
    out = {"torch": None, "torch_cuda": False}
    if importlib.util.find_spec("torch") is not None:
        from importlib.metadata import version
        out["torch"] = version("torch")
        if shutil.which("nvidia-smi"):  # importing torch takes seconds: only to ask about a GPU
            import torch
            out["torch_cuda"] = torch.cuda.is_available()
    try:
        import minigrad as mg
        out["minigrad_cuda"] = mg.cuda.is_available()
        out["minigrad_kernels"] = {k: str(v) for k, v in mg.backend.backend_info().items()}
    except Exception as e:  # noqa: BLE001 -- report, do not crash the run
        out["minigrad_cuda"] = False
        out["minigrad_error"] = repr(e)
    return out


WORKERS = {"step": worker_step, "matmul": worker_matmul, "rss": worker_rss, "probe": worker_probe}

_RUN_WORKER = "import runpy, sys; runpy.run_path(sys.argv[1], run_name='__main__')"


def _spawn(spec, timeout=1800):
    """Run a worker in a fresh interpreter; returns its JSON answer (or {"error": ...})."""
    cmd = [sys.executable, "-c", _RUN_WORKER, os.path.abspath(__file__), "--worker", json.dumps(spec)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    lines = [line for line in p.stdout.splitlines() if line.startswith("{")]
    if p.returncode != 0 or not lines:
        return {"error": (p.stderr.strip().splitlines() or [f"exit status {p.returncode}"])[-1]}
    return json.loads(lines[-1])


def _import_time(repeats):
    code = "import time; t = time.perf_counter(); import minigrad; print(time.perf_counter() - t)"
    runs = []
    for _ in range(repeats):
        p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        if p.returncode == 0:
            runs.append(float(p.stdout.strip().splitlines()[-1]))
    return {"median_s": statistics.median(runs) if runs else None, "runs_s": runs}


# ---------------------------------------------------------------------------------------------
# The environment

def _cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _git_commit():
    root = Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True).stdout
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "minigrad", "csrc"], cwd=root,
                               capture_output=True, text=True).stdout.strip()
        return sha.strip() + (" (minigrad/ or csrc/ modified)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def environment(probe):
    import numpy as np
    env = {
        "cpu": _cpu_model(), "cores": _cores(), "os_cpu_count": os.cpu_count(), "platform": platform.platform(),
        "python": platform.python_version(), "numpy": np.__version__,
        "loadavg_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "env_vars": {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                                                 "MKL_NUM_THREADS", "MINIGRAD_DISABLE_EXT", "MINIGRAD_DISABLE_MKL",
                                                 "CUDA_VISIBLE_DEVICES")
                     if k in os.environ},
        "minigrad_commit": _git_commit(),
        "torch": probe.get("torch"),
        "minigrad_kernels": probe.get("minigrad_kernels"),
    }
    try:
        env["numpy_blas"] = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    except Exception:  # noqa: BLE001 -- older NumPy
        env["numpy_blas"] = None
    try:
        from threadpoolctl import threadpool_info
        env["blas_threadpools"] = [{k: i.get(k) for k in ("internal_api", "version", "num_threads", "architecture",
                                                          "threading_layer")} for i in threadpool_info()
                                   if i.get("user_api") == "blas"]
    except ImportError:
        env["blas_threadpools"] = "threadpoolctl not installed"
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
        env["gpus"] = [g.strip() for g in smi.stdout.splitlines() if g.strip()] if smi.returncode == 0 else []
    except (OSError, subprocess.TimeoutExpired):
        env["gpus"] = []
    return env


# ---------------------------------------------------------------------------------------------
# The run

def _flops_per_step(workload):
    """6 * batch * sum(in * out): forward (2), input gradient (2) and weight gradient (2) of every matmul."""
    sizes, batch, _ = WORKLOADS[workload]
    return 6 * batch * sum(i * o for i, o in zip(sizes, sizes[1:]))


def _summary(times):
    q = statistics.quantiles(times, n=4) if len(times) > 1 else [times[0]] * 3
    return {"ms": statistics.median(times), "ms_min": min(times), "ms_q1": q[0], "ms_q3": q[2], "blocks": len(times)}


def _digits_file(out_dir):
    """digits features and labels (scikit-learn's, or random ones of its shape) as a .npz in ``out_dir``
    for the RSS workers."""
    import numpy as np
    try:
        from sklearn.datasets import load_digits
        d = load_digits()
        x, y, source = d.data.astype(np.float32), d.target.astype(np.int64), "scikit-learn digits"
    except ImportError:
        rng = np.random.default_rng(0)
        x, y, source = rng.integers(0, 17, (1797, 64)).astype(np.float32), rng.integers(0, 10, 1797), "random (1797, 64)"
    x = (x - x.mean(0)) / (x.std(0) + 1e-7)
    path = Path(out_dir) / ".digits-rss.npz"
    np.savez(path, x=x, y=y)
    return path, source


def run(workloads=None, backends=None, quick=False, out=None, progress=True, targets=True):
    """Run the benchmark; returns the results dict (also written as JSON and PNG under ``out``, the
    current folder by default). targets: check the project's targets."""
    import tempfile
    from tqdm import tqdm
    workloads = list(workloads or [w for w in WORKLOADS if not (quick and w == "huge")])
    unknown = [w for w in workloads if w not in WORKLOADS]
    if unknown:
        raise ValueError(f"unknown workloads {unknown}; choose from {list(WORKLOADS)}")
    probe = _spawn({"kind": "probe"})
    have = {"minigrad-cpu": True, "torch-cpu": bool(probe.get("torch")),
            "minigrad-cuda": bool(probe.get("minigrad_cuda")), "torch-cuda": bool(probe.get("torch_cuda"))}
    if backends:
        unknown = [b for b in backends if b not in BACKENDS]
        if unknown:
            raise ValueError(f"unknown backends {unknown}; choose from {list(BACKENDS)}")
        skipped = [b for b in backends if not have[b]]
        backends = [b for b in backends if have[b]]
    else:
        backends, skipped = [b for b in BACKENDS if have[b]], []
    out = Path(out) if out else Path.cwd()
    out.mkdir(parents=True, exist_ok=True)
    cores = _cores()
    env = environment(probe)
    for message in _warnings(env, backends, skipped, have):
        print(f"warning: {message}", file=sys.stderr, flush=True)

    jobs = []  # (label, spec); rounds interleave the backends of one workload
    for w in workloads:
        for r in range(max(_timing(w, quick, b.endswith("cuda"))[3] for b in backends)):
            for b in backends:
                warmup, blocks, min_block_s, rounds = _timing(w, quick, b.endswith("cuda"))
                if r >= rounds:
                    continue
                jobs.append((f"{w} {b}", {"kind": "step", "backend": b, "workload": w, "threads": cores,
                                          "warmup": warmup, "blocks": blocks, "min_block_s": min_block_s}))
    jobs.append(("matmul peak", {"kind": "matmul", "n": 1024 if quick else 4096, "repeats": 3 if quick else 7}))
    want_rss = "minigrad-cpu" in backends
    if want_rss:
        scratch = tempfile.TemporaryDirectory(prefix="minigrad-bench-")
        data, data_source = _digits_file(scratch.name)
        for lib in ["minigrad"] if quick else ["numpy", "minigrad"] + (["torch"] if have["torch-cpu"] else []):
            jobs.append((f"rss {lib}", {"kind": "rss", "lib": lib, "data": str(data), "threads": cores,
                                        "epochs": 1 if quick else 5}))

    answers = []
    # on a pipe or in a log file, carriage-return frames would only clutter it: the table follows anyway
    bar = tqdm(jobs, desc="bench", unit="run", disable=not (progress and sys.stderr.isatty()), file=sys.stderr)
    for label, spec in bar:
        bar.set_postfix_str(label)
        answers.append((spec, _spawn(spec)))
    imp = _import_time(3 if quick else 9)
    if want_rss:
        scratch.cleanup()

    res = {"schema": 1, "date": datetime.datetime.now().isoformat(timespec="seconds"), "host": socket.gethostname(),
           "command": " ".join((["minigrad"] if _invoked_as_cli() else ["python", sys.argv[0]]) + sys.argv[1:]),
           "quick": quick, "env": env, "workloads": {w: {"sizes": WORKLOADS[w][0], "batch": WORKLOADS[w][1],
                                                        "optimizer": WORKLOADS[w][2]} for w in workloads},
           "backends": backends, "backends_unavailable": skipped or [b for b in BACKENDS if not have[b]],
           "results": {b: {} for b in backends}, "errors": []}
    pooled = {}
    for spec, ans in answers:
        if "error" in ans:
            res["errors"].append({"spec": spec, "error": ans["error"]})
            continue
        if spec["kind"] == "step":
            key = (spec["backend"], spec["workload"])
            p = pooled.setdefault(key, {"times_ms": [], "rounds": 0, "steps_per_block": []})
            p["times_ms"] += ans["times_ms"]
            p["rounds"] += 1
            p["steps_per_block"].append(ans["steps_per_block"])
            res["env"].setdefault("workers", {}).setdefault(spec["backend"], ans["env"])
        elif spec["kind"] == "matmul":
            res["matmul_peak"] = {"n": ans["n"], "gflops": statistics.median(ans["gflops"]),
                                  "gflops_max": max(ans["gflops"]), "runs": ans["gflops"]}
        elif spec["kind"] == "rss":
            res.setdefault("rss_mib", {"data": data_source})[spec["lib"]] = ans["maxrss_mib"]
    for (b, w), p in pooled.items():
        res["results"][b][w] = {**_summary(p["times_ms"]), "rounds": p["rounds"],
                                "steps_per_block": p["steps_per_block"], "times_ms": p["times_ms"]}
    res["import_minigrad"] = imp
    res["env"]["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    _derive(res, targets)
    res["warnings"] = _warnings(res["env"], backends, skipped, have)
    stem = out / f"{datetime.date.today().isoformat()}-{socket.gethostname()}{'-quick' if quick else ''}"
    res["files"] = {"json": str(stem.with_suffix(".json")), "png": str(stem.with_suffix(".png"))}
    if not plot(res, stem.with_suffix(".png")):
        res["files"]["png"] = None
    stem.with_suffix(".json").write_text(json.dumps(res, indent=1) + "\n")
    return res


def _invoked_as_cli():
    return Path(sys.argv[0]).name in ("minigrad", "__main__.py")


BASELINE_HINT = 'install it with pip install -e ".[bench]" in a source checkout (or pip install "minigrad[bench]")'
BUSY_FRACTION = 0.5     # a 1-minute load average above this share of the cores makes ratios unreliable


def _warnings(env, backends, skipped, have):
    """What makes this run's figures incomplete or unreliable: no PyTorch baseline, a busy machine."""
    out = []
    if not have["torch-cpu"]:
        out.append(f"PyTorch is not installed, so there is no baseline to compare with: {BASELINE_HINT}")
    elif skipped:
        out.append(f"not available here, skipped: {', '.join(skipped)}")
    cores = env["cores"]
    for when in ("start", "end"):
        load = (env.get(f"loadavg_{when}") or [None])[0]
        # at the end the benchmark's own last worker (up to one core per thread) is still in the average
        busy = cores * BUSY_FRACTION + (cores if when == "end" else 0)
        if load is not None and load > busy:
            out.append(f"the machine is busy: load average {load:.1f} on {cores} cores at the {when} of the run "
                       f"(other processes compete for the cores), so step times and minigrad/PyTorch ratios are "
                       f"unreliable; rerun when the load average is below {cores * BUSY_FRACTION:g}")
            break
    return out


def _derive(res, targets=True):
    """Ratios, GFLOP/s, GPU speedups and, with ``targets``, the project's target checks."""
    r = res["results"]
    ms = {(b, w): v["ms"] for b in r for w, v in r[b].items()}
    res["ratios"], res["targets"] = {}, []
    res["ratio_targets"] = RATIO_TARGETS if targets else {"cpu": {}, "cuda": {}}
    ratio_targets = res["ratio_targets"]
    for dev in ("cpu", "cuda"):
        for w in res["workloads"]:
            if (f"minigrad-{dev}", w) in ms and (f"torch-{dev}", w) in ms:
                ratio = ms[f"minigrad-{dev}", w] / ms[f"torch-{dev}", w]
                res["ratios"].setdefault(dev, {})[w] = ratio
                # best block against best block: less sensitive to bursts of load on a shared machine
                res.setdefault("ratios_of_min", {}).setdefault(dev, {})[w] = \
                    r[f"minigrad-{dev}"][w]["ms_min"] / r[f"torch-{dev}"][w]["ms_min"]
                if w in ratio_targets[dev]:
                    res["targets"].append({"name": f"{w} minigrad/torch ({dev})", "value": ratio, "op": "<=",
                                           "limit": ratio_targets[dev][w], "pass": ratio <= ratio_targets[dev][w]})
    if "huge" in res["workloads"]:
        flops = _flops_per_step("huge")
        res["huge_flops_per_step"] = {"flops": flops, "formula": _flops_per_step.__doc__.strip()}
        res["huge_gflops"] = {b: flops / (ms[b, "huge"] / 1e3) / 1e9 for b in r if (b, "huge") in ms}
        peak = res.get("matmul_peak", {}).get("gflops")
        if peak and "minigrad-cpu" in res["huge_gflops"] and targets:
            frac = res["huge_gflops"]["minigrad-cpu"] / peak
            res["huge_fraction_of_peak"] = {b: g / peak for b, g in res["huge_gflops"].items() if b.endswith("cpu")}
            res["targets"].append({"name": "huge GFLOP/s / NumPy matmul peak (cpu)", "value": frac, "op": ">=",
                                   "limit": HUGE_PEAK_FRACTION, "pass": frac >= HUGE_PEAK_FRACTION})
    for lib in ("minigrad", "torch"):
        sp = {w: ms[f"{lib}-cpu", w] / ms[f"{lib}-cuda", w] for w in res["workloads"]
              if (f"{lib}-cpu", w) in ms and (f"{lib}-cuda", w) in ms}
        if sp:
            res.setdefault("gpu_speedup", {})[lib] = sp
    rss = res.get("rss_mib", {}).get("minigrad")
    if rss is not None and targets:
        res["targets"].append({"name": "digits training peak RSS, MiB", "value": rss, "op": "<=", "limit": RSS_MIB,
                               "pass": rss <= RSS_MIB})
    imp = res["import_minigrad"]["median_s"]
    if imp is not None and targets:
        res["targets"].append({"name": "import minigrad, s", "value": imp, "op": "<=", "limit": IMPORT_S,
                               "pass": imp <= IMPORT_S})


# ---------------------------------------------------------------------------------------------
# Reporting

def format_table(res):
    r, lines = res["results"], [f"warning: {m}" for m in res.get("warnings", [])]
    lines += [""] if lines else []
    backends = res["backends"]
    ratio_targets = res["ratio_targets"]
    checked = any(ratio_targets.values())
    head = f"{'workload':<10}" + "".join(f"{b + ' ms':>18}" for b in backends)
    devs = [d for d in ("cpu", "cuda") if d in res["ratios"]]
    head += "".join(f"{'ratio ' + d:>12}" + (f"{'target':>8}{'':>6}" if checked else "") + f"{'(of min)':>10}"
                    for d in devs)
    lines += [head, "-" * len(head)]
    for w in res["workloads"]:
        row = f"{w:<10}" + "".join(f"{r[b][w]['ms']:>18.4g}" if w in r[b] else f"{'-':>18}" for b in backends)
        for d in devs:
            ratio, limit = res["ratios"][d].get(w), ratio_targets[d].get(w)
            verdict = "" if ratio is None or limit is None else ("PASS" if ratio <= limit else "FAIL")
            row += f"{ratio:>12.3f}" if ratio is not None else f"{'-':>12}"
            if checked:
                row += (f"{'<=' + str(limit):>8}" if limit else f"{'':>8}") + f"{verdict:>6}"
            best = res.get("ratios_of_min", {}).get(d, {}).get(w)
            row += f"{best:>10.3f}" if best is not None else f"{'-':>10}"
        lines.append(row)
    lines.append("ratio: minigrad / PyTorch, of the median step times; of min: of the fastest blocks")
    lines.append("")
    if "matmul_peak" in res:
        mp = res["matmul_peak"]
        lines.append(f"NumPy float32 matmul {mp['n']}x{mp['n']}: {mp['gflops']:.1f} GFLOP/s (median), "
                     f"{mp['gflops_max']:.1f} best")
    for b, g in res.get("huge_gflops", {}).items():
        frac = res.get("huge_fraction_of_peak", {}).get(b)
        lines.append(f"huge on {b}: {g:.1f} GFLOP/s" + (f" = {frac:.2f} of the matmul peak" if frac else ""))
    for lib, sp in res.get("gpu_speedup", {}).items():
        lines.append(f"{lib} GPU over CPU: " + ", ".join(f"{w} {s:.1f}x" for w, s in sp.items()))
    if "rss_mib" in res:
        lines.append("digits training peak RSS: " + ", ".join(f"{k} {v:.0f} MiB" for k, v in res["rss_mib"].items()
                                                             if k != "data") + " (numpy = python + numpy alone)")
    if res["import_minigrad"]["median_s"] is not None:
        lines.append(f"import minigrad: {res['import_minigrad']['median_s'] * 1e3:.0f} ms (median)")
    lines.append("")
    for t in res["targets"]:
        lines.append(f"{'PASS' if t['pass'] else 'FAIL'}  {t['name']}: {t['value']:.3g} (target {t['op']} {t['limit']})")
    for e in res["errors"]:
        lines.append(f"ERROR {e['spec'].get('kind')} {e['spec'].get('backend', e['spec'].get('lib', ''))} "
                     f"{e['spec'].get('workload', '')}: {e['error']}")
    env = res["env"]
    blas = env.get("blas_threadpools")
    blas = ", ".join(f"{b['internal_api']} {b['version']} {b['architecture']} {b['num_threads']} threads"
                     for b in blas) if isinstance(blas, list) else blas
    matmul = (env.get("minigrad_kernels") or {}).get("cpu_matmul", "unknown")
    lines.append(f"{env['cpu']}, {env['cores']} cores; NumPy's BLAS: {blas}; minigrad's CPU matmul: {matmul}; "
                 f"OPENBLAS_CORETYPE="
                 f"{env['env_vars'].get('OPENBLAS_CORETYPE', '(unset)')}; "
                 f"{'torch ' + env['torch'] if env.get('torch') else 'PyTorch not installed'}; "
                 f"GPU: {', '.join(env['gpus']) or 'none'}; load average {env['loadavg_start'][0]:.1f} -> "
                 f"{env['loadavg_end'][0]:.1f}" if env.get("loadavg_start") else "")
    return "\n".join(lines)


def plot(res, path):
    """ms/step per workload and backend (log scale) and minigrad/PyTorch ratios with their targets."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        print("matplotlib is not installed: no plot", file=sys.stderr)
        return False
    workloads, backends, r = list(res["workloads"]), res["backends"], res["results"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5))
    width = 0.8 / max(len(backends), 1)
    colors = {"minigrad-cpu": "tab:blue", "torch-cpu": "tab:orange", "minigrad-cuda": "tab:cyan",
              "torch-cuda": "tab:red"}
    for k, b in enumerate(backends):
        xs = [i + (k - (len(backends) - 1) / 2) * width for i, w in enumerate(workloads) if w in r[b]]
        ys = [r[b][w]["ms"] for w in workloads if w in r[b]]
        bars = ax1.bar(xs, ys, width, label=b, color=colors.get(b))
        ax1.bar_label(bars, labels=[f"{y:.0f}" if y >= 100 else f"{y:.3g}" for y in ys], fontsize=7, rotation=90,
                      padding=2)
    ax1.set_yscale("log")
    ax1.set_xticks(range(len(workloads)), workloads)
    ax1.set_ylabel("ms per training step (median, log scale)")
    ax1.set_title("training step time")
    ax1.margins(y=0.25)
    ax1.legend(fontsize=8)
    devs = [d for d in ("cpu", "cuda") if d in res["ratios"]]
    width = 0.8 / max(len(devs), 1)
    for k, d in enumerate(devs):
        off = (k - (len(devs) - 1) / 2) * width
        xs = [i + off for i, w in enumerate(workloads) if w in res["ratios"][d]]
        ys = [res["ratios"][d][w] for w in workloads if w in res["ratios"][d]]
        bars = ax2.bar(xs, ys, width, label=f"minigrad / PyTorch ({d})", color="tab:blue" if d == "cpu" else "tab:cyan")
        # inside the bars: above them the fastest-blocks markers would cover the numbers
        ax2.bar_label(bars, labels=[f"{y:.2f}" for y in ys], fontsize=8, label_type="center", color="white")
        best = res.get("ratios_of_min", {}).get(d, {})
        ax2.scatter([i + off for i, w in enumerate(workloads) if w in best], [best[w] for w in workloads if w in best],
                    marker="D", s=18, color="black", zorder=3, label=f"same, fastest blocks ({d})")
        targets = res["ratio_targets"]
        for i, w in enumerate(workloads):
            if w in targets[d]:
                ax2.hlines(targets[d][w], i + off - width / 2, i + off + width / 2, colors="red", linewidth=2,
                           label="target" if (d, w) == next(((dd, ww) for dd in devs for ww in workloads
                                                              if ww in targets[dd]), None) else None)
    ax2.axhline(1.0, color="gray", linestyle=":", linewidth=1)
    ax2.set_yscale("log")  # ratios span decades when PyTorch's per-op overhead dominates
    ax2.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax2.set_xticks(range(len(workloads)), workloads)
    ax2.set_ylabel("step time ratio, log scale (below 1: minigrad is faster)")
    ax2.set_title("minigrad / PyTorch" + (" (red: target)" if any(res["ratio_targets"].values()) else ""))
    ax2.margins(y=0.2)
    if devs:
        ax2.legend(fontsize=8, loc="upper left")
    env = res["env"]
    fig.suptitle(f"minigrad vs PyTorch {env.get('torch') or '(not installed)'} - {env['cpu']}, {env['cores']} cores"
                 f"{', ' + env['gpus'][0] if env['gpus'] else ''} - {res['date'][:10]}"
                 + (f" - load average {env['loadavg_start'][0]:.1f} to {env['loadavg_end'][0]:.1f}"
                    if env.get("loadavg_start") and env.get("loadavg_end") else ""), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# ---------------------------------------------------------------------------------------------
# Command line

def add_arguments(p):
    p.add_argument("--quick", action="store_true", help="a smoke run: few repeats, no huge workload (seconds)")
    p.add_argument("--workloads", type=_names, metavar="W1,W2", default=None,
                   help=f"comma-separated, from {','.join(WORKLOADS)} [all; all but huge with --quick]")
    p.add_argument("--backends", type=_names, metavar="B1,B2", default=None,
                   help=f"comma-separated, from {','.join(BACKENDS)} [every one available]")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="folder for the JSON and PNG (with --replot: for the PNG) [the current folder]")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--replot", metavar="JSON", default=None,
                   help="measure nothing: print the table and redraw the plot of an earlier results file")


def _names(text):
    return [s.strip() for s in text.split(",") if s.strip()]


def main_args(args, targets=True):
    if args.replot:
        res = json.loads(Path(args.replot).read_text())
        _derive(res, targets)
        print(format_table(res))
        out = Path(args.out) if args.out else Path.cwd()
        out.mkdir(parents=True, exist_ok=True)
        png = out / Path(args.replot).with_suffix(".png").name
        if plot(res, png):
            print(f"\nwrote {png}")
        return 0
    res = run(workloads=args.workloads, backends=args.backends, quick=args.quick, out=args.out,
              progress=not args.no_progress, targets=targets)
    print(format_table(res))
    print(f"\nwrote {res['files']['json']}" + (f" and {res['files']['png']}" if res["files"]["png"] else ""))
    return 1 if res["errors"] else 0


def main(argv=None, targets=True, prog="bench_train.py"):
    """The command line; ``minigrad bench`` calls it with targets=False (the project's targets are
    this repository's business, not a user's)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        spec = json.loads(argv[1])
        print(json.dumps(WORKERS[spec["kind"]](spec)))
        return 0
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    add_arguments(p)
    args = p.parse_args(argv)
    try:
        return main_args(args, targets)
    except ValueError as e:
        p.error(str(e))


if __name__ == "__main__":
    # a worker runs as `python -c "runpy.run_path(...)" PATH --worker SPEC`
    sys.exit(main(sys.argv[sys.argv.index("--worker"):] if "--worker" in sys.argv else None))
