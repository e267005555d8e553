"""Line count of minigrad's core (tensor, autograd, ops, backend): it should stay readable in one sitting."""
import pathlib

root = pathlib.Path(__file__).resolve().parents[1] / "minigrad"
core = [root / "tensor.py", root / "autograd.py", root / "backend.py", root / "gradcheck.py",
        *sorted((root / "ops").glob("*.py"))]
total = 0
for f in core:
    n = sum(1 for line in f.read_text().splitlines() if line.strip() and not line.strip().startswith("#"))
    total += n
    print(f"{n:5d}  {f.relative_to(root.parent)}")
print(f"{total:5d}  core total (non-blank, non-comment lines)")
