"""Training-step benchmark of minigrad against PyTorch on CPU and GPU: JSON, PNG plot and a table.

    python benchmarks/bench_train.py [--quick] [--workloads iris,digits] [--backends minigrad-cpu,torch-cpu] [--out DIR]

The same as `minigrad bench`; the code lives in minigrad/bench.py (see its docstring)."""
import sys

from minigrad.bench import main

if __name__ == "__main__":
    sys.exit(main())
