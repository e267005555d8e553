"""cupy.cuda.nccl of the test double: a world of one rank. Buffers are device pointers
(`array.data.ptr`), copied with memmove as NCCL would copy them on the GPU."""
import ctypes
import os

available = True

(NCCL_INT8, NCCL_UINT8, NCCL_INT32, NCCL_UINT32, NCCL_INT64, NCCL_UINT64,
 NCCL_FLOAT16, NCCL_FLOAT32, NCCL_FLOAT64) = range(9)
NCCL_CHAR, NCCL_INT, NCCL_HALF, NCCL_FLOAT, NCCL_DOUBLE = NCCL_INT8, NCCL_INT32, NCCL_FLOAT16, NCCL_FLOAT32, NCCL_FLOAT64
NCCL_SUM, NCCL_PROD, NCCL_MAX, NCCL_MIN, NCCL_AVG = range(5)
_SIZES = {NCCL_INT8: 1, NCCL_UINT8: 1, NCCL_INT32: 4, NCCL_UINT32: 4, NCCL_INT64: 8, NCCL_UINT64: 8,
          NCCL_FLOAT16: 2, NCCL_FLOAT32: 4, NCCL_FLOAT64: 8}
_group_depth = 0


class NcclError(RuntimeError):
    pass


def get_version():
    return 22805  # 2.28.5: below 2.30, the first that lets two ranks share a GPU (gpu_check.sh skips that step)


def get_unique_id():
    return tuple(os.urandom(128))


def groupStart():
    global _group_depth
    _group_depth += 1


def groupEnd():
    global _group_depth
    if _group_depth == 0:
        raise NcclError("NCCL_ERROR_INVALID_USAGE: groupEnd without groupStart")
    _group_depth -= 1


def _nbytes(count, datatype):
    if datatype not in _SIZES:
        raise NcclError(f"NCCL_ERROR_INVALID_ARGUMENT: unknown datatype {datatype}")
    return count * _SIZES[datatype]


class NcclCommunicator:
    def __init__(self, ndev, commId, rank):
        if ndev != 1 or rank != 0:
            raise NcclError(f"NCCL_ERROR_INVALID_ARGUMENT: the test double is a world of one rank, "
                            f"asked for rank {rank} of {ndev}")
        if not isinstance(commId, tuple) or len(commId) != 128:
            raise NcclError("NCCL_ERROR_INVALID_ARGUMENT: commId must be get_unique_id()'s tuple")
        from . import _current
        self._device, self._alive, self._mailbox = _current(), True, []

    def _live(self):
        if not self._alive:
            raise NcclError("NCCL_ERROR_INVALID_USAGE: the communicator was destroyed or aborted")

    def _copy(self, dst, src, count, datatype):
        self._live()
        if dst != src:
            ctypes.memmove(dst, src, _nbytes(count, datatype))

    def allReduce(self, sendbuf, recvbuf, count, datatype, op, stream):
        if op not in range(5):
            raise NcclError(f"NCCL_ERROR_INVALID_ARGUMENT: unknown op {op}")
        self._copy(recvbuf, sendbuf, count, datatype)

    def reduce(self, sendbuf, recvbuf, count, datatype, op, root, stream):
        self._root(root)
        self._copy(recvbuf, sendbuf, count, datatype)

    def broadcast(self, sendbuf, recvbuf, count, datatype, root, stream):
        self._root(root)
        self._copy(recvbuf, sendbuf, count, datatype)

    def allGather(self, sendbuf, recvbuf, count, datatype, stream):
        self._copy(recvbuf, sendbuf, count, datatype)

    def send(self, sendbuf, count, datatype, peer, stream):
        self._root(peer)
        self._live()
        self._mailbox.append(ctypes.string_at(sendbuf, _nbytes(count, datatype)))

    def recv(self, recvbuf, count, datatype, peer, stream):
        self._root(peer)
        self._live()
        if not self._mailbox:
            raise NcclError("NCCL_ERROR_INVALID_USAGE: recv with nothing sent (a world of one)")
        data = self._mailbox.pop(0)
        ctypes.memmove(recvbuf, data, min(len(data), _nbytes(count, datatype)))

    @staticmethod
    def _root(rank):
        if rank != 0:
            raise NcclError(f"NCCL_ERROR_INVALID_ARGUMENT: rank {rank} in a world of one")

    def check_async_error(self):
        pass

    def device_id(self):
        return self._device

    def size(self):
        return 1

    def abort(self):
        self._alive = False

    def destroy(self):
        self._alive = False
