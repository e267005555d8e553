"""Run under `mpiexec -n 2` on GPUs: NCCL collectives and DDP on CuPy arrays.

Each rank uses GPU local_rank % device_count; prints "nccl checks ok" when every check passed."""
import numpy as np
from _common import make_model, make_sgd, max_diff, mg, mse, weights

import minigrad.distributed as dist

group = dist.init_process_group("nccl")
rank, world, device = dist.get_rank(), dist.get_world_size(), dist.get_device()
assert group.name == "nccl" and device.startswith("cuda:"), (group, device)

for dtype in ("float32", "float64", "int64"):
    t = mg.tensor(np.arange(6, dtype=dtype) + rank, device=device)
    dist.all_reduce(t)
    expected = sum(np.arange(6, dtype=dtype) + r for r in range(world))
    assert np.array_equal(t.numpy(), expected), (dtype, t.numpy(), expected)
t = mg.tensor(np.full(5, float(rank)), device=device)
dist.all_reduce(t, op="mean")
assert np.allclose(t.numpy(), (world - 1) / 2)
dist.broadcast(t, src=world - 1)
assert np.all(t.numpy() == (world - 1) / 2)
dist.all_reduce(np.ones(3))                    # NumPy arrays still go over MPI
dist.barrier()

SIZES, STEPS, BATCH = (5, 32, 16, 3), 4, 8
rng = np.random.default_rng(0)
X, Y = rng.normal(size=(STEPS, BATCH, SIZES[0])), rng.normal(size=(STEPS, BATCH, SIZES[-1]))
ref = make_model(SIZES, seed=1, device=device)
opt = make_sgd(ref.parameters(), 0.1, 0.9)
for s in range(STEPS):
    opt.zero_grad()
    mse(ref(mg.tensor(X[s], device=device)), mg.tensor(Y[s], device=device)).backward()
    opt.step()
model = dist.DistributedDataParallel(make_model(SIZES, seed=1 if rank == 0 else 7, device=device),
                                     bucket_mb=1e-3)
opt = make_sgd(model.parameters(), 0.1, 0.9)
half = BATCH // world
for s in range(STEPS):
    opt.zero_grad()
    sl = slice(rank * half, (rank + 1) * half)
    mse(model(mg.tensor(X[s, sl], device=device)), mg.tensor(Y[s, sl], device=device)).backward()
    opt.step()
w = weights(model)
assert max_diff(w, weights(ref)) < 1e-10, max_diff(w, weights(ref))
assert all(max_diff(w, other) == 0 for other in dist.all_gather_object(w))
print(f"rank {rank}: nccl checks ok", flush=True)
dist.destroy_process_group()
