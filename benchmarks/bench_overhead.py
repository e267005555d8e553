"""Per-op overhead of the tape: forward + backward of a small MLP in minigrad vs the same
arithmetic written by hand in NumPy, timed in one process.

    python benchmarks/bench_overhead.py [--sizes 64,10,8,10] [--batch 32] [--repeat 2000]

The ratio minigrad / NumPy is the cost of the tape: Tensor objects, dispatch, the
topological sort, gradient bookkeeping. Absolute times drift on a shared machine; the ratio
is what to compare."""
import argparse
import json
import time

import numpy as np

import minigrad as mg


def build(sizes, batch, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, sizes[0])).astype(np.float32)
    ws = [(rng.standard_normal((o, i)) / np.sqrt(i)).astype(np.float32) for i, o in zip(sizes, sizes[1:])]
    bs = [np.zeros(o, np.float32) for o in sizes[1:]]
    return x, ws, bs


def numpy_step(x, ws, bs):
    """Forward and backward of relu MLP with loss mean(out**2), by hand."""
    hs, h = [x], x
    for i, (w, b) in enumerate(zip(ws, bs)):
        h = h @ w.T + b
        if i < len(ws) - 1:
            h = np.maximum(h, 0)
        hs.append(h)
    g = 2 * h / h.size
    grads = []
    for i in reversed(range(len(ws))):
        grads.append((g.T @ hs[i], g.sum(0)))
        if i:
            g = (g @ ws[i]) * (hs[i] > 0)
    return (h * h).mean(), grads


def minigrad_step(x, ws, bs):
    h = x
    for i, (w, b) in enumerate(zip(ws, bs)):
        h = h @ w.T + b
        if i < len(ws) - 1:
            h = h.relu()
    loss = (h * h).mean()
    for p in ws + bs:
        p.grad = None
    loss.backward()
    return loss


def minigrad_fused_step(x, ws, bs):
    F = mg.nn.functional
    h = x
    for i, (w, b) in enumerate(zip(ws, bs)):
        h = F.linear(h, w, b, activation="relu" if i < len(ws) - 1 else None)
    loss = (h * h).mean()
    for p in ws + bs:
        p.grad = None
    loss.backward()
    return loss


def timeit(fn, repeat):
    for _ in range(max(10, repeat // 10)):
        fn()
    best = []
    for _ in range(5):  # median of five blocks resists the noise of a shared machine
        t = time.perf_counter()
        for _ in range(repeat // 5):
            fn()
        best.append((time.perf_counter() - t) / (repeat // 5))
    return float(np.median(best))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="64,10,8,10")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--repeat", type=int, default=2000)
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    x, ws, bs = build(sizes, args.batch)
    mx = mg.tensor(x)
    mws = [mg.tensor(w, requires_grad=True) for w in ws]
    mbs = [mg.tensor(b, requires_grad=True) for b in bs]
    np_loss, _ = numpy_step(x, ws, bs)
    assert np.isclose(minigrad_step(mx, mws, mbs).item(), np_loss, rtol=1e-5), "minigrad and NumPy disagree"
    rows = {"numpy": timeit(lambda: numpy_step(x, ws, bs), args.repeat),
            "minigrad ops": timeit(lambda: minigrad_step(mx, mws, mbs), args.repeat)}
    if hasattr(getattr(mg, "nn", None), "functional"):
        rows["minigrad F.linear"] = timeit(lambda: minigrad_fused_step(mx, mws, mbs), args.repeat)
    print(f"MLP {args.sizes}, batch {args.batch}, forward + backward, float32")
    print(f"{'':20s} {'us/step':>9s} {'/ numpy':>8s}")
    for name, t in rows.items():
        print(f"{name:20s} {t * 1e6:9.1f} {t / rows['numpy']:8.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"sizes": sizes, "batch": args.batch, "seconds": rows}, f, indent=1)


if __name__ == "__main__":
    main()
