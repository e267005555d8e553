"""Fused bias + activation: minigrad's kernel vs NumPy's unfused expression vs PyTorch (CPU).

    python benchmarks/bench_fused.py [--repeat 30] [--quick]

For each shape: forward y = relu(z + b) returning a new array and in place, and the backward
(gz = gy * relu'(y), gb = gz.sum(0)); then every activation on the main shape. Times are medians
in ms; GB/s counts the bytes each must move (forward: read z, write y; backward: read gy and y,
write gz) against np.copyto's measured copy bandwidth. Prints a table and writes
benchmarks/results/bench_fused.json.

"new array" rows differ in where the output memory comes from: minigrad's kernel takes it from the
extension's buffer cache (pages reused, as a training step sees), NumPy and PyTorch from malloc
(fresh 16 MiB blocks are mmapped and page-faulted on first touch); the "fresh np.empty" row runs
minigrad's kernel into freshly allocated memory for comparison.
"""
import argparse
import json
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from minigrad import backend, kernels  # noqa: E402

try:
    import torch
except ImportError:
    torch = None


def bench(fn, repeat, min_time=0.2):
    """Median seconds of fn() over `repeat` runs (more for fast functions), after a warm-up."""
    fn()
    fn()
    t0 = time.perf_counter()
    fn()
    once = time.perf_counter() - t0
    n = max(repeat, min(2000, int(min_time / max(once, 1e-7))))
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


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
    nbytes = z.nbytes
    rows = []
    for name, fn in fwd.items():
        rows.append(dict(pass_="forward", impl=name, seconds=bench(fn, repeat), bytes=2 * nbytes))
    for name, fn in bwd.items():
        rows.append(dict(pass_="backward", impl=name, seconds=bench(fn, repeat), bytes=3 * nbytes))
    return rows


def activation_rows(shape, dtype, repeat):
    rng = np.random.default_rng(1)
    z = rng.standard_normal(shape).astype(dtype)
    b = rng.standard_normal(shape[-1]).astype(dtype)
    gy = rng.standard_normal(shape).astype(dtype)
    rows = []
    tacts = {} if torch is None else {"relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
                                      "gelu": torch.nn.functional.gelu}
    for act in ("relu", "sigmoid", "tanh", "gelu"):
        y = kernels.bias_act_forward(z, b, act)
        saved = z if act == "gelu" else y
        rows.append(dict(pass_="forward", impl=f"minigrad {act}", seconds=bench(
            lambda: kernels.bias_act_forward(z, b, act), repeat), bytes=2 * z.nbytes))
        rows.append(dict(pass_="backward", impl=f"minigrad {act}", seconds=bench(
            lambda: kernels.bias_act_backward(gy, saved, act, b=b), repeat), bytes=3 * z.nbytes))
        if act in tacts:
            tz, tb = torch.from_numpy(z), torch.from_numpy(b)
            rows.append(dict(pass_="forward", impl=f"torch {act}(z + b)", seconds=bench(
                lambda: tacts[act](tz + tb), repeat), bytes=2 * z.nbytes))
            tzz = (tz + tb).requires_grad_()
            tgy = torch.from_numpy(gy)

            def torch_bwd():
                out = tacts[act](tzz)
                g, = torch.autograd.grad(out, tzz, tgy)
                return g.sum(0)
            t_both = bench(torch_bwd, repeat)
            t_fwd = bench(lambda: tacts[act](tzz.detach()), repeat)
            rows.append(dict(pass_="backward", impl=f"torch {act} autograd + sum(0)",
                             seconds=max(t_both - t_fwd, 1e-9), bytes=3 * z.nbytes))
    return rows


def print_table(title, rows, bw):
    print(f"\n{title}")
    print(f"  {'pass':9s} {'implementation':46s} {'ms':>8s} {'GB/s':>7s} {'% copy':>7s}")
    for r in rows:
        gbs = r["bytes"] / r["seconds"] / 1e9
        r["ms"], r["gb_per_s"], r["fraction_of_copy"] = r["seconds"] * 1e3, gbs, gbs / bw
        print(f"  {r['pass_']:9s} {r['impl']:46s} {r['ms']:8.3f} {gbs:7.1f} {100 * gbs / bw:6.0f}%")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--quick", action="store_true", help="only the (1024, 4096) float32 case")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                                  "bench_fused.json"))
    args = ap.parse_args()

    info = backend.backend_info()
    print(f"minigrad kernels: {info}")
    if torch is not None:
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    main_shape = ((1024, 4096), np.float32)
    cases = [main_shape] if args.quick else [
        main_shape, ((256, 1024), np.float32), ((4096, 4096), np.float32), ((1024, 4096), np.float64),
        ((128, 64), np.float32)]
    bw = copy_bandwidth(1024 * 4096 * 4, args.repeat)
    print(f"np.copyto bandwidth (16 MiB): {bw:.1f} GB/s (read + write)")

    results = dict(machine=dict(platform=platform.platform(), processor=platform.processor(),
                                cpus=os.cpu_count(), python=platform.python_version(),
                                numpy=np.__version__, torch=torch.__version__ if torch else None),
                   backend=info, copy_gb_per_s=bw, cases=[])
    for shape, dtype in cases:
        rows = relu_rows(shape, dtype, args.repeat)
        print_table(f"relu, {shape} {np.dtype(dtype).name}", rows, bw)
        results["cases"].append(dict(shape=list(shape), dtype=np.dtype(dtype).name, activation="relu",
                                     rows=rows))
    rows = activation_rows(*main_shape, args.repeat)
    print_table(f"all activations, {main_shape[0]} float32 (new array)", rows, bw)
    results["cases"].append(dict(shape=list(main_shape[0]), dtype="float32", activation="all", rows=rows))

    main = {r["impl"]: r["seconds"] for r in results["cases"][0]["rows"]}
    fused = main["minigrad fused, new array (cached buffer)"]
    ratios = {"numpy / minigrad (new array)": main["numpy np.maximum(z + b, 0)"] / fused,
              "numpy / minigrad (fresh np.empty)":
                  main["numpy np.maximum(z + b, 0)"] / main["minigrad fused, new array (fresh np.empty)"]}
    if torch is not None:
        ratios["minigrad / torch.relu(z + b)"] = fused / main["torch torch.relu(z + b)"]
        ratios["minigrad in place / torch in place"] = \
            main["minigrad fused, in place"] / main["torch in place z.add_(b).relu_()"]
    results["ratios_1024x4096_f32"] = ratios
    print("\n(1024, 4096) float32 forward:")
    for k, v in ratios.items():
        print(f"  {k}: {v:.2f}x")

    for case in results["cases"]:
        for r in case["rows"]:
            r["pass"] = r.pop("pass_")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
