"""Fused bias + activation: minigrad's kernel vs NumPy's unfused expression vs PyTorch (CPU).

    python benchmarks/bench_fused.py [--repeat 30] [--quick] [--device cuda]

For each shape: forward y = relu(z + b) returning a new array and in place, and the backward
(gz = gy * relu'(y), gb = gz.sum(0)); then every activation on the main shape. Times are medians
(and best runs) in ms; the implementations compared in one block take turns, 5 passes of
back-to-back calls each, so that load from elsewhere on the machine hits them alike. GB/s counts
the bytes each must move (forward: read z, write y; backward: read gy and y, write gz), compared
with np.copyto's measured copy bandwidth. Prints a table, writes benchmarks/results/bench_fused.json.

"new array" rows differ in where the output memory comes from: minigrad's kernel takes it from the
extension's buffer cache (mapped pages reused, as in a training step), NumPy and PyTorch from
malloc (a large block may come back freshly mmapped and be page-faulted on first touch, depending
on the allocator's state); the "fresh np.empty" row runs minigrad's kernel into memory from
np.empty for comparison.

--device cuda runs the same comparison on the GPU: minigrad's CuPy kernel vs CuPy's unfused
expression vs PyTorch CUDA, each timed over a batch of back-to-back launches closed by a device
synchronize, against cupy.copyto's bandwidth; it writes bench_fused_cuda.json.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from minigrad import backend, kernels  # noqa: E402

try:
    import torch
except ImportError:
    torch = None


def bench_group(fns, repeat, min_time=0.3, passes=5):
    """{name: (median, min) seconds per call} of each fn(). The functions take turns in `passes`
    passes of back-to-back calls, so that load from elsewhere on the machine hits all of them
    alike while each call still finds the state its own previous call left (caches, allocator)."""
    for fn in fns.values():
        fn()
        fn()
    t0 = time.perf_counter()
    for fn in fns.values():
        fn()
    once = time.perf_counter() - t0
    calls = max(repeat, min(1000, int(min_time / max(once, 1e-7))))
    per_pass = max(1, calls // passes)
    times = {name: [] for name in fns}
    for _ in range(passes):
        for name, fn in fns.items():
            fn()  # settle after the previous function
            for _ in range(per_pass):
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    return {name: (float(np.median(t)), float(np.min(t))) for name, t in times.items()}


def bench(fn, repeat):
    return bench_group({"f": fn}, repeat)["f"][0]


def copy_bandwidth(nbytes, repeat):
    src = np.ones(nbytes // 8)
    dst = np.empty_like(src)
    return 2 * nbytes / bench(lambda: np.copyto(dst, src), repeat) / 1e9


def relu_rows(shape, dtype, repeat):
    rng = np.random.default_rng(0)
    z = rng.standard_normal(shape).astype(dtype)
    b = rng.standard_normal(shape[-1]).astype(dtype)
    gy = rng.standard_normal(shape).astype(dtype)
    y = np.maximum(z + b, 0)
    zw = z.copy()  # scratch for the in-place rows
    fwd = {
        "numpy np.maximum(z + b, 0)": lambda: np.maximum(z + b, 0),
        "numpy in place add(out=z); maximum(out=z)":
            lambda: (np.add(zw, b, out=zw), np.maximum(zw, 0, out=zw)),
        "minigrad fused, new array (cached buffer)": lambda: kernels.bias_act_forward(z, b, "relu"),
        "minigrad fused, new array (fresh np.empty)":
            lambda: kernels.bias_act_forward(z, b, "relu", out=np.empty_like(z)),
        "minigrad fused, in place": lambda: kernels.bias_act_forward(zw, b, "relu", out=zw),
    }
    bwd = {
        "numpy gz = gy * (y > 0); gz.sum(0)": lambda: (lambda g: (g, g.sum(0)))(gy * (y > 0)),
        "minigrad fused backward (gz, gb)": lambda: kernels.bias_act_backward(gy, y, "relu"),
    }
    if torch is not None:
        tz, tb, tgy, ty = (torch.from_numpy(a) for a in (z, b, gy, y))
        tzw = tz.clone()
        fwd["torch torch.relu(z + b)"] = lambda: torch.relu(tz + tb)
        fwd["torch in place z.add_(b).relu_()"] = lambda: tzw.add_(tb).relu_()
        bwd["torch threshold_backward + sum(0)"] = \
            lambda: (lambda g: (g, g.sum(0)))(torch.ops.aten.threshold_backward(tgy, ty, 0))
    rows = []
    for direction, fns, nbytes in (("forward", fwd, 2 * z.nbytes), ("backward", bwd, 3 * z.nbytes)):
        for name, (med, best) in bench_group(fns, repeat).items():
            rows.append({"pass": direction, "impl": name, "seconds": med, "min_seconds": best, "bytes": nbytes})
    return rows


def activation_rows(shape, dtype, repeat):
    rng = np.random.default_rng(1)
    z = rng.standard_normal(shape).astype(dtype)
    b = rng.standard_normal(shape[-1]).astype(dtype)
    gy = rng.standard_normal(shape).astype(dtype)
    tacts = {} if torch is None else {"relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
                                      "gelu": torch.nn.functional.gelu}
    rows = []
    for act in ("relu", "sigmoid", "tanh", "gelu"):
        y = kernels.bias_act_forward(z, b, act)
        saved = z if act == "gelu" else y
        fwd = {f"minigrad {act}": lambda: kernels.bias_act_forward(z, b, act)}
        bwd = {f"minigrad {act}": lambda: kernels.bias_act_backward(gy, saved, act, b=b)}
        if act in tacts:
            f = tacts[act]
            tz, tb, tgy = torch.from_numpy(z), torch.from_numpy(b), torch.from_numpy(gy)
            th = (tz + tb).requires_grad_()
            fwd[f"torch {act}(z + b)"] = lambda: f(tz + tb)
            # torch's backward alone: autograd through act, then the bias gradient, minus the forward
            bwd["torch: forward + autograd.grad + sum(0)"] = \
                lambda: torch.autograd.grad(f(th), th, tgy)[0].sum(0)
            bwd["torch: forward only"] = lambda: f(th.detach())
        for name, (med, best) in bench_group(fwd, repeat).items():
            rows.append({"pass": "forward", "impl": name, "seconds": med, "min_seconds": best, "bytes": 2 * z.nbytes})
        res = bench_group(bwd, repeat)
        rows.append({"pass": "backward", "impl": f"minigrad {act}", "seconds": res[f"minigrad {act}"][0],
                     "min_seconds": res[f"minigrad {act}"][1], "bytes": 3 * z.nbytes})
        if act in tacts:
            both, alone = res["torch: forward + autograd.grad + sum(0)"][0], res["torch: forward only"][0]
            rows.append({"pass": "backward", "impl": f"torch {act} (autograd + sum(0) - forward)",
                         "seconds": max(both - alone, 1e-9), "bytes": 3 * z.nbytes})
    return rows


def print_table(title, rows, bw):
    print(f"\n{title}")
    print(f"  {'pass':9s} {'implementation':46s} {'ms':>8s} {'min ms':>8s} {'GB/s':>7s} {'% copy':>7s}")
    for r in rows:
        gbs = r["bytes"] / r["seconds"] / 1e9
        r["ms"], r["gb_per_s"], r["fraction_of_copy"] = r["seconds"] * 1e3, gbs, gbs / bw
        best = f"{r['min_seconds'] * 1e3:8.3f}" if "min_seconds" in r else f"{'':8s}"
        print(f"  {r['pass']:9s} {r['impl']:46s} {r['ms']:8.3f} {best} {gbs:7.1f} {100 * gbs / bw:6.0f}%")


def cuda_rows(shape, dtype, repeat, batch=50):
    """The relu forward and backward rows and the other activations' forward, on the GPU."""
    cp = backend.cupy()
    tcuda = torch is not None and torch.cuda.is_available()
    rng = np.random.default_rng(0)
    z, b, gy = (cp.asarray(rng.standard_normal(s).astype(dtype)) for s in (shape, shape[-1:], shape))
    y = cp.maximum(z + b, 0)
    fwd = {"cupy cp.maximum(z + b, 0)": lambda: cp.maximum(z + b, 0),
           "minigrad fused (CuPy kernel)": lambda: kernels.bias_act_forward(z, b, "relu")}
    bwd = {"cupy gz = gy * (y > 0); gz.sum(0)": lambda: (lambda g: (g, g.sum(0)))(gy * (y > 0)),
           "minigrad fused backward (gz, gb)": lambda: kernels.bias_act_backward(gy, y, "relu")}
    acts = {f"minigrad {a}": (lambda a=a: kernels.bias_act_forward(z, b, a)) for a in ("sigmoid", "tanh", "gelu")}
    if tcuda:
        tz, tb, tgy, ty = (torch.as_tensor(a, device="cuda") for a in (z, b, gy, y))
        fwd["torch torch.relu(z + b)"] = lambda: torch.relu(tz + tb)
        bwd["torch threshold_backward + sum(0)"] = \
            lambda: (lambda g: (g, g.sum(0)))(torch.ops.aten.threshold_backward(tgy, ty, 0))
        acts["torch gelu(z + b)"] = lambda: torch.nn.functional.gelu(tz + tb)
    rows = []
    for direction, fns, nbytes in (("forward", fwd, 2 * z.nbytes), ("backward", bwd, 3 * z.nbytes),
                               ("forward", acts, 2 * z.nbytes)):
        for name, fn in fns.items():
            med, best = _cuda_time(cp, fn, repeat, batch)
            rows.append({"pass": direction, "impl": name, "seconds": med, "min_seconds": best, "bytes": nbytes})
    return rows


def main_cuda(args):
    cp = backend.cupy()
    if cp is None:
        sys.exit(f"--device cuda: CUDA is not usable here: {backend.backend_info()['cuda']}")
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "bench_fused_cuda.json")
    props = cp.cuda.runtime.getDeviceProperties(0)
    gpu = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    src = cp.ones(1024 * 4096 * 4 // 8)
    dst = cp.empty_like(src)
    bw = 2 * src.nbytes / _cuda_time(cp, lambda: cp.copyto(dst, src), args.repeat)[0] / 1e9
    print(f"GPU: {gpu}; minigrad kernels: {backend.backend_info()}")
    print(f"cupy.copyto bandwidth (16 MiB): {bw:.0f} GB/s (read + write)")
    results = dict(gpu=gpu, backend=backend.backend_info(), copy_gb_per_s=bw, cupy=cp.__version__,
                   torch=torch.__version__ if torch else None, command=" ".join(["python"] + sys.argv), cases=[])
    for shape, dtype in CASES[:1] if args.quick else CASES:
        case = dict(shape=list(shape), dtype=dtype, rows=cuda_rows(shape, np.dtype(dtype), args.repeat))
        print_table(f"GPU relu (and other activations), {shape} {dtype}", case["rows"], bw)
        results["cases"].append(case)
    t = {r["impl"]: r["seconds"] for r in results["cases"][0]["rows"]}
    ratios = {"cupy unfused / minigrad": t["cupy cp.maximum(z + b, 0)"] / t["minigrad fused (CuPy kernel)"]}
    if "torch torch.relu(z + b)" in t:
        ratios["minigrad / torch.relu(z + b)"] = t["minigrad fused (CuPy kernel)"] / t["torch torch.relu(z + b)"]
    results["ratios_1024x4096_f32"] = ratios
    print("\n(1024, 4096) float32 relu forward, medians:")
    for k, v in ratios.items():
        print(f"  {k:32s} {v:6.2f}x")
    _write(results, out)


def _cuda_time(cp, fn, repeat, batch=50):
    """(median, best) seconds per call of fn over `repeat` batches of `batch` back-to-back calls,
    each batch closed by a device synchronize (one launch alone would time the launch latency)."""
    fn()
    cp.cuda.Device().synchronize()
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(batch):
            fn()
        cp.cuda.Device().synchronize()
        ts.append((time.perf_counter() - t0) / batch)
    return float(np.median(ts)), float(np.min(ts))


CASES = [((1024, 4096), "float32"), ((256, 1024), "float32"), ((4096, 4096), "float32"),
         ((1024, 4096), "float64"), ((128, 64), "float32")]


def run_case(index, repeat):
    """One table in this process: a relu case, or (index == len(CASES)) every activation."""
    if index < len(CASES):
        shape, dtype = CASES[index]
        return dict(shape=list(shape), dtype=dtype, activation="relu",
                    rows=relu_rows(shape, np.dtype(dtype), repeat))
    shape, dtype = CASES[0]
    return dict(shape=list(shape), dtype=dtype, activation="all",
                rows=activation_rows(shape, np.dtype(dtype), repeat))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--quick", action="store_true", help="only the (1024, 4096) float32 case")
    ap.add_argument("--out", help="the JSON file to write [benchmarks/results/bench_fused.json, "
                                   "or bench_fused_cuda.json with --device cuda]")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--case", type=int, help=argparse.SUPPRESS)  # internal: run one case, print JSON
    args = ap.parse_args()
    if args.device == "cuda":
        return main_cuda(args)
    args.out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "bench_fused.json")
    if args.case is not None:
        print(json.dumps(run_case(args.case, args.repeat)))
        return

    info = backend.backend_info()
    print(f"minigrad kernels: {info}")
    if torch is not None:
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    bw = copy_bandwidth(1024 * 4096 * 4, args.repeat)
    print(f"np.copyto bandwidth (16 MiB): {bw:.1f} GB/s (read + write)")

    results = dict(machine=dict(platform=platform.platform(), processor=platform.processor(),
                                cpus=os.cpu_count(), python=platform.python_version(),
                                numpy=np.__version__, torch=torch.__version__ if torch else None),
                   backend=info, copy_gb_per_s=bw, command=" ".join(["python"] + sys.argv),
                   load_average_before=os.getloadavg(), cases=[])
    # Each case runs in a fresh process, as a fresh script would: what one case leaves in the
    # allocator (glibc adapts its mmap threshold to the sizes freed) must not speed up the next.
    for index in [0, len(CASES)] if args.quick else range(len(CASES) + 1):
        out = subprocess.run([sys.executable, os.path.abspath(__file__), "--case", str(index),
                              "--repeat", str(args.repeat)], capture_output=True, text=True, check=True)
        case = json.loads(out.stdout.strip().splitlines()[-1])
        title = f"all activations, {tuple(case['shape'])} {case['dtype']} (new array)" \
            if case["activation"] == "all" else f"relu, {tuple(case['shape'])} {case['dtype']}"
        print_table(title, case["rows"], bw)
        results["cases"].append(case)

    ratios = {}
    for stat in ("seconds", "min_seconds"):  # medians, and the best runs (least disturbed by load)
        t = {r["impl"]: r[stat] for r in results["cases"][0]["rows"]}
        fused = t["minigrad fused, new array (cached buffer)"]
        r = {"numpy / minigrad (new array)": t["numpy np.maximum(z + b, 0)"] / fused,
             "numpy / minigrad (fresh np.empty)":
                 t["numpy np.maximum(z + b, 0)"] / t["minigrad fused, new array (fresh np.empty)"]}
        if torch is not None:
            r["minigrad / torch.relu(z + b)"] = fused / t["torch torch.relu(z + b)"]
            r["minigrad in place / torch in place"] = \
                t["minigrad fused, in place"] / t["torch in place z.add_(b).relu_()"]
        ratios["median" if stat == "seconds" else "best"] = r
    results["ratios_1024x4096_f32"] = ratios
    print("\n(1024, 4096) float32 forward ratios (median / best run):")
    for k in ratios["median"]:
        print(f"  {k:40s} {ratios['median'][k]:6.2f}x {ratios['best'][k]:6.2f}x")

    results["load_average_after"] = os.getloadavg()
    print(f"load average before / after: {results['load_average_before'][0]:.1f} / "
          f"{results['load_average_after'][0]:.1f} (other work on the machine skews the timings)")
    _write(results, args.out)


def _write(results, path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(results, f, indent=1)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
