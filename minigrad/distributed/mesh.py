"""The device mesh: the world's ranks laid out as an n-dimensional grid, one process group per axis.

``init_device_mesh("cpu", (2, 2), mesh_dim_names=("pp", "tp"))`` on 4 ranks lays the ranks out
row-major (the last name varies fastest)::

            tp=0  tp=1
    pp=0  [  0     1  ]
    pp=1  [  2     3  ]

On rank 2, ``mesh.get_group("tp")`` is the group {2, 3} (its row) and ``get_group("pp")`` is
{0, 2} (its column). A rank's place in a group is its coordinate on that axis, so
``get_local_rank("pp")`` is also its rank in ``get_group("pp")``.
"""
from __future__ import annotations

import math

import numpy as np


class DeviceMesh:
    """Ranks on a grid of shape ``mesh_shape``; built by :func:`init_device_mesh`."""

    def __init__(self, device_type, mesh_shape, mesh_dim_names=None, group=None):
        from . import get_process_group
        if device_type not in ("cpu", "cuda"):
            raise ValueError(f"device_type must be 'cpu' or 'cuda', got {device_type!r}")
        shape = tuple(int(n) for n in mesh_shape)
        if not shape or any(n < 1 for n in shape):
            raise ValueError(f"mesh_shape must be a non-empty tuple of positive sizes, got {mesh_shape!r}")
        names = None if mesh_dim_names is None else tuple(mesh_dim_names)
        if names is not None and (len(names) != len(shape) or len(set(names)) != len(names)):
            raise ValueError(f"mesh_dim_names must name each of the {len(shape)} dimensions once, "
                             f"got {mesh_dim_names!r}")
        world = group if group is not None else get_process_group()
        if math.prod(shape) != world.world_size:
            raise ValueError(f"a mesh of shape {shape} holds {math.prod(shape)} ranks, but the world has "
                             f"{world.world_size}; the sizes must multiply to the world size")
        if device_type == "cuda" and world.world_size > 1 and getattr(world, "nccl", None) is None:
            raise RuntimeError("init_device_mesh('cuda', ...) needs the NCCL backend: "
                               "init_process_group('nccl') on a machine with GPUs")
        self.device_type, self.shape, self.mesh_dim_names = device_type, shape, names
        self.mesh = np.arange(world.world_size).reshape(shape)      # rank at each coordinate
        self.coordinate = tuple(int(c) for c in np.unravel_index(world.rank, shape))
        self._groups = []
        for d in range(len(shape)):
            # Ranks that agree on every other coordinate form one group, ordered along axis d.
            others = self.coordinate[:d] + (0,) + self.coordinate[d + 1:]
            color = int(np.ravel_multi_index(others, shape))
            self._groups.append(world.split(color, self.coordinate[d]))

    @property
    def ndim(self):
        return len(self.shape)

    def _dim(self, mesh_dim):
        if mesh_dim is None:
            if self.ndim != 1:
                raise ValueError(f"this mesh has {self.ndim} dimensions {self.mesh_dim_names or ''}: name one")
            return 0
        if isinstance(mesh_dim, str):
            if self.mesh_dim_names is None or mesh_dim not in self.mesh_dim_names:
                raise KeyError(f"no mesh dimension named {mesh_dim!r}; the mesh has {self.mesh_dim_names}")
            return self.mesh_dim_names.index(mesh_dim)
        if not -self.ndim <= mesh_dim < self.ndim:
            raise IndexError(f"mesh dimension {mesh_dim} is out of range for a {self.ndim}-D mesh")
        return mesh_dim % self.ndim

    def get_group(self, mesh_dim=None):
        """The process group along ``mesh_dim`` (a name or an index) that contains this rank."""
        return self._groups[self._dim(mesh_dim)]

    def get_local_rank(self, mesh_dim=None) -> int:
        """This rank's coordinate along ``mesh_dim`` (= its rank in ``get_group(mesh_dim)``)."""
        return self.coordinate[self._dim(mesh_dim)]

    def size(self, mesh_dim=None) -> int:
        """The number of ranks along ``mesh_dim``; with no argument, in the whole mesh."""
        return math.prod(self.shape) if mesh_dim is None else self.shape[self._dim(mesh_dim)]

    def get_coordinate(self) -> list:
        """This rank's index along every dimension, as PyTorch's (a list)."""
        return list(self.coordinate)

    def __repr__(self):
        names = "" if self.mesh_dim_names is None else f", mesh_dim_names={self.mesh_dim_names}"
        return f"DeviceMesh({self.device_type!r}, {self.mesh.tolist()}{names})"


def init_device_mesh(device_type, mesh_shape, *, mesh_dim_names=None, group=None) -> DeviceMesh:
    """Lay the ranks of ``group`` (default: the world) out row-major on ``mesh_shape``, whose
    sizes multiply to the world size, and build one process group per dimension.
    Every rank must call it with the same arguments."""
    return DeviceMesh(device_type, mesh_shape, mesh_dim_names, group)
