"""Run under `mpiexec -n 2`: Trainer.fit trains data-parallel; ranks end identical, rank 0 alone prints.

Rank 0 writes {"history": ..., "same_weights": bool} to argv[1]."""
import numpy as np
from _common import make_model, make_sgd, max_diff, mg, weights, write_result

import minigrad.distributed as dist

rng = np.random.default_rng(0)
x = rng.normal(size=(101, 5))                   # 101 samples: the shards need padding
y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
mg.manual_seed(0)
model = make_model((5, 8, 2), seed=dist.get_rank())   # different inits: DDP broadcasts rank 0's
trainer = mg.Trainer(model, make_sgd(model.parameters(), 0.1, 0.9), mg.nn.CrossEntropyLoss())
history = trainer.fit(x, y, epochs=3, batch_size=16, validation_data=(x[:30], y[:30]), verbose=2)
w = weights(model)
same = all(max_diff(w, other) == 0 for other in dist.all_gather_object(w))
histories = dist.all_gather_object(history)
write_result({"history": history, "same_weights": same,
              "same_history": all(h == histories[0] for h in histories), "world": dist.get_world_size()})
