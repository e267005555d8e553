// minigrad._C: the pybind11 module around csrc/kernels_cpu.cpp, plus a small caching allocator
// for kernel outputs.
//
// Why a cache: a fresh 16 MiB array comes from mmap, and first touching its pages costs about as
// much as the kernel itself. Outputs allocated here are returned to a small free list when the
// last NumPy array viewing them dies (the capsule owning the memory is the array's base), and the
// next output of the same size reuses those already-mapped pages. Memory is handed out again only
// after Python has dropped every reference to it.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdlib>
#if defined(__linux__)
#include <sys/mman.h>
#endif
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels.h"

namespace py = pybind11;
using minigrad::Act;

namespace minigrad {
void bind_blas(py::module_& m);  // csrc/blas.cpp
}

namespace {

// ---------------------------------------------------------------------------------------------
// output buffers

class BufferCache {
 public:
  void* get(size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = free_.find(bytes);
      if (it != free_.end()) {
        void* p = it->second;
        free_.erase(it);
        cached_ -= bytes;
        return p;
      }
    }
    return allocate(bytes);
  }
  // Blocks of 4 MiB and more are aligned to 2 MiB and asked to use transparent huge pages, as
  // NumPy does for its large arrays: far fewer page faults and TLB misses when streaming.
  static void* allocate(size_t bytes) {
    const size_t align = bytes >= 2 * kHugePage ? kHugePage : 64;
    const size_t size = (bytes + align - 1) / align * align;
    void* p = std::aligned_alloc(align, size);
    if (!p) throw std::bad_alloc();
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (align == kHugePage) madvise(p, size, MADV_HUGEPAGE);
#endif
    return p;
  }

  void put(void* p, size_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    if (bytes < kMinBytes || cached_ + bytes > limit_) {
      std::free(p);
      return;
    }
    free_.emplace(bytes, p);
    cached_ += bytes;
  }
  void clear() {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& kv : free_) std::free(kv.second);
    free_.clear();
    cached_ = 0;
  }
  void set_limit(size_t bytes) {
    limit_ = bytes;
    if (cached_ > limit_) clear();
  }
  py::dict stats() {
    std::lock_guard<std::mutex> lock(mu_);
    py::dict d;
    d["cached_bytes"] = cached_;
    d["cached_blocks"] = free_.size();
    d["limit_bytes"] = limit_;
    return d;
  }

 private:
  static constexpr size_t kMinBytes = 1 << 16;  // small blocks are cheap from malloc anyway
  static constexpr size_t kHugePage = 1 << 21;
  std::mutex mu_;
  std::multimap<size_t, void*> free_;
  size_t cached_ = 0;
  size_t limit_ = size_t(256) << 20;
};

// Never destroyed: arrays may outlive the module at interpreter exit.
BufferCache& cache() {
  static BufferCache* c = new BufferCache();
  return *c;
}

struct Block {
  void* ptr;
  size_t bytes;
};

// A new C-contiguous array of the given shape whose memory comes from the cache.
template <typename T> py::array_t<T> cached_empty(const std::vector<py::ssize_t>& shape) {
  size_t count = 1;
  for (auto s : shape) {
    if (s < 0) throw py::value_error("negative dimension");
    count *= static_cast<size_t>(s);
  }
  size_t bytes = std::max<size_t>(count * sizeof(T), 1);
  auto* block = new Block{cache().get(bytes), bytes};
  py::capsule owner(block, [](void* p) {
    auto* blk = static_cast<Block*>(p);
    cache().put(blk->ptr, blk->bytes);
    delete blk;
  });
  return py::array_t<T>(shape, static_cast<T*>(block->ptr), owner);
}

// ---------------------------------------------------------------------------------------------
// argument checks (kernels.py only calls in with arrays that pass them; these guard direct use)

Act parse_activation(const py::object& a) {
  if (a.is_none()) return Act::Identity;
  std::string s = py::str(a);
  if (s == "identity" || s == "linear" || s == "none") return Act::Identity;
  if (s == "relu") return Act::Relu;
  if (s == "sigmoid") return Act::Sigmoid;
  if (s == "tanh") return Act::Tanh;
  if (s == "gelu") return Act::Gelu;
  throw py::value_error("unknown activation '" + s +
                        "' (expected None, 'relu', 'sigmoid', 'tanh' or 'gelu')");
}

std::string describe(const py::array& a) {  // e.g. "float32 array of shape (3, 4)"
  std::string shape;
  for (py::ssize_t i = 0; i < a.ndim(); ++i)
    shape += (i ? ", " : "") + std::to_string(a.shape(i));
  if (a.ndim() == 1) shape += ",";
  return std::string(py::str(a.dtype())) + " array of shape (" + shape + ")";
}

// Checks that `a` is a C-contiguous array of dtype T (never converts: no hidden copies).
template <typename T>
void check(const py::array& a, const char* name, bool writeable = false) {
  if (!py::isinstance<py::array_t<T>>(a) || !a.dtype().is(py::dtype::of<T>()))
    throw py::type_error(std::string(name) + ": expected dtype " +
                         std::string(py::str(py::dtype::of<T>())) + ", got " + describe(a));
  if (!(a.flags() & py::array::c_style))
    throw py::value_error(std::string(name) + " must be C-contiguous, got " + describe(a));
  if (writeable && !a.writeable()) throw py::value_error(std::string(name) + " is read-only");
}

// (n, m) of a 1-d or 2-d array: a 1-d array is one row.
void rows_cols(const py::array& a, py::ssize_t& n, py::ssize_t& m) {
  if (a.ndim() == 2) n = a.shape(0), m = a.shape(1);
  else if (a.ndim() == 1) n = 1, m = a.shape(0);
  else throw py::value_error("expected a 1-d or 2-d array, got " + describe(a));
}

void check_bias(const py::array& b, py::ssize_t m, const char* name) {
  if (b.ndim() != 1 || b.shape(0) != m)
    throw py::value_error(std::string(name) + " must have shape (" + std::to_string(m) +
                          ",), got " + describe(b));
}

std::vector<py::ssize_t> shape_of(const py::array& a) {
  return std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim());
}

// ---------------------------------------------------------------------------------------------
// kernels

template <typename T>
py::array forward(const py::array& z, const py::object& b_obj, Act act, const py::object& out_obj) {
  check<T>(z, "z");
  py::ssize_t n, m;
  rows_cols(z, n, m);
  const T* b = nullptr;
  py::array b_arr;
  if (!b_obj.is_none()) {
    b_arr = b_obj.cast<py::array>();
    check<T>(b_arr, "b");
    check_bias(b_arr, m, "b");
    b = static_cast<const T*>(b_arr.data());
  }
  py::array out;
  if (out_obj.is_none()) {
    out = cached_empty<T>(shape_of(z));
  } else {
    out = out_obj.cast<py::array>();
    check<T>(out, "out", true);
    if (shape_of(out) != shape_of(z))
      throw py::value_error("out has shape " + describe(out) + " but z has " + describe(z));
  }
  const T* zp = static_cast<const T*>(z.data());
  T* yp = static_cast<T*>(out.mutable_data());
  {
    py::gil_scoped_release release;
    minigrad::bias_act_forward<T>(zp, b, yp, n, m, act);
  }
  return out;
}

template <typename T>
py::tuple backward(const py::array& gy, const py::array& saved, Act act, const py::object& b_obj,
                   bool need_gz, bool need_gb) {
  check<T>(gy, "grad_output");
  check<T>(saved, "saved");
  if (shape_of(gy) != shape_of(saved))
    throw py::value_error("grad_output has shape " + describe(gy) + " but the saved array has " +
                          describe(saved));
  py::ssize_t n, m;
  rows_cols(gy, n, m);
  const T* b = nullptr;
  py::array b_arr;
  if (!b_obj.is_none() && act == Act::Gelu) {
    b_arr = b_obj.cast<py::array>();
    check<T>(b_arr, "b");
    check_bias(b_arr, m, "b");
    b = static_cast<const T*>(b_arr.data());
  }
  py::object gz_obj = py::none(), gb_obj = py::none();
  T* gz = nullptr;
  T* gb = nullptr;
  if (need_gz && act == Act::Identity) {
    gz_obj = gy;  // d(identity) is the identity: hand back grad_output itself
  } else if (need_gz) {
    auto a = cached_empty<T>(shape_of(gy));
    gz = a.mutable_data();
    gz_obj = a;
  }
  if (need_gb) {
    auto a = py::array_t<T>(std::vector<py::ssize_t>{m});
    gb = a.mutable_data();
    gb_obj = a;
  }
  const T* gyp = static_cast<const T*>(gy.data());
  const T* sp = static_cast<const T*>(saved.data());
  {
    py::gil_scoped_release release;
    minigrad::bias_act_backward<T>(gyp, sp, b, gz, gb, n, m, act);
  }
  return py::make_tuple(gz_obj, gb_obj);
}

bool is_f64(const py::array& a) { return a.dtype().is(py::dtype::of<double>()); }

// A flat optimizer buffer of dtype T, writeable, with n elements (checked, never converted).
template <typename T> T* flat(const py::object& obj, const char* name, py::ssize_t n) {
  if (obj.is_none()) return nullptr;
  auto a = obj.cast<py::array>();
  check<T>(a, name, true);
  if (a.size() != n)
    throw py::value_error(std::string(name) + " has " + std::to_string(a.size()) +
                          " elements, expected " + std::to_string(n));
  return static_cast<T*>(a.mutable_data());
}

// The gradient of a flat buffer of n elements: one flat array, or a list of arrays (each
// parameter's own .grad, in the buffer's order) read where backward left them instead of being
// gathered into one buffer first. Holds references to the arrays while the update runs.
template <typename T> struct GradPieces {
  std::vector<py::array> arrays;
  GradPieces(const py::object& g, py::ssize_t n) {
    if (py::isinstance<py::list>(g) || py::isinstance<py::tuple>(g)) {
      for (auto h : g) arrays.push_back(py::reinterpret_borrow<py::object>(h).cast<py::array>());
    } else {
      arrays.push_back(g.cast<py::array>());
    }
    py::ssize_t total = 0;
    for (auto& a : arrays) {
      check<T>(a, "g");
      total += a.size();
    }
    if (total != n)
      throw py::value_error("g has " + std::to_string(total) + " elements, expected " + std::to_string(n));
  }
  // f(offset, pointer, length) for each piece, in order
  template <typename F> void each(const F& f) const {
    py::ssize_t offset = 0;
    for (auto& a : arrays) {
      f(offset, static_cast<const T*>(a.data()), a.size());
      offset += a.size();
    }
  }
};

template <typename T> T* at(T* p, py::ssize_t offset) { return p ? p + offset : nullptr; }

template <typename T>
void adam(const py::array& p, const py::object& g, const py::object& m, const py::object& v,
          const py::object& vmax, const minigrad::AdamArgs& args) {
  auto n = p.size();
  T* pp = flat<T>(p, "p", n);
  GradPieces<T> grads(g, n);
  T *mp = flat<T>(m, "m", n), *vp = flat<T>(v, "v", n), *xp = flat<T>(vmax, "vmax", n);
  py::gil_scoped_release release;
  grads.each([&](py::ssize_t o, const T* gp, py::ssize_t k) {
    minigrad::adam_step<T>(pp + o, gp, mp + o, vp + o, at(xp, o), k, args);
  });
}

template <typename T>
void sgd(const py::array& p, const py::object& g, const py::object& buf, const minigrad::SGDArgs& args) {
  auto n = p.size();
  T* pp = flat<T>(p, "p", n);
  GradPieces<T> grads(g, n);
  T* bp = flat<T>(buf, "momentum_buffer", n);
  py::gil_scoped_release release;
  grads.each([&](py::ssize_t o, const T* gp, py::ssize_t k) {
    minigrad::sgd_step<T>(pp + o, gp, at(bp, o), k, args);
  });
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "minigrad's C++ kernels: fused bias + activation (float32, float64, C-contiguous)";

  m.def(
      "bias_act_forward",
      [](const py::array& z, const py::object& b, const py::object& activation,
         const py::object& out) {
        Act act = parse_activation(activation);
        return is_f64(z) ? forward<double>(z, b, act, out) : forward<float>(z, b, act, out);
      },
      py::arg("z"), py::arg("b"), py::arg("activation") = py::none(), py::arg("out") = py::none(),
      "y = act(z + b) for z (n, m) or (m,) and b (m,) or None; writes into `out` when given "
      "(out may be z: in place), else into a new array from the buffer cache.");

  m.def(
      "bias_act_backward",
      [](const py::array& gy, const py::array& saved, const py::object& activation,
         const py::object& b, bool need_gz, bool need_gb) {
        Act act = parse_activation(activation);
        return is_f64(gy) ? backward<double>(gy, saved, act, b, need_gz, need_gb)
                          : backward<float>(gy, saved, act, b, need_gz, need_gb);
      },
      py::arg("grad_output"), py::arg("saved"), py::arg("activation") = py::none(),
      py::arg("b") = py::none(), py::arg("need_gz") = true, py::arg("need_gb") = true,
      "(gz, gb) for y = act(z + b): saved is y (identity, relu, sigmoid, tanh) or z (gelu, with "
      "b added on the fly); gz (n, m) is grad_output itself for identity, gb (m,) = gz.sum(0). "
      "Either is None when not asked for.");

  m.def(
      "empty",
      [](const std::vector<py::ssize_t>& shape, const py::object& dtype) -> py::array {
        const auto dt = py::dtype::from_args(dtype);
        if (dt.is(py::dtype::of<double>())) return cached_empty<double>(shape);
        if (dt.is(py::dtype::of<float>())) return cached_empty<float>(shape);
        throw py::type_error("empty: only float32 and float64");
      },
      py::arg("shape"), py::arg("dtype"),
      "An uninitialized C-contiguous array whose memory comes from (and returns to) the cache.");

  m.def(
      "adam_step",
      [](const py::array& p, const py::object& g, const py::object& exp_avg, const py::object& exp_avg_sq,
         const py::object& max_exp_avg_sq, double lr, double beta1, double beta2, double eps,
         double weight_decay, bool decoupled, double step_size, double bias2_sqrt) {
        minigrad::AdamArgs a{lr, beta1, beta2, eps, weight_decay, decoupled, step_size, bias2_sqrt};
        is_f64(p) ? adam<double>(p, g, exp_avg, exp_avg_sq, max_exp_avg_sq, a)
                  : adam<float>(p, g, exp_avg, exp_avg_sq, max_exp_avg_sq, a);
      },
      py::arg("p"), py::arg("g"), py::arg("exp_avg"), py::arg("exp_avg_sq"), py::arg("max_exp_avg_sq"),
      py::arg("lr"), py::arg("beta1"), py::arg("beta2"), py::arg("eps"), py::arg("weight_decay"),
      py::arg("decoupled"), py::arg("step_size"), py::arg("bias2_sqrt"),
      "One Adam/AdamW step in place over flat C-contiguous buffers of one dtype (max_exp_avg_sq None without "
      "amsgrad); g is a flat buffer or a list of C-contiguous arrays that together cover p in order.");

  m.def(
      "sgd_step",
      [](const py::array& p, const py::object& g, const py::object& buf, double lr, double momentum,
         double dampening, double weight_decay, bool nesterov, bool first_step) {
        minigrad::SGDArgs a{lr, momentum, dampening, weight_decay, nesterov, first_step};
        is_f64(p) ? sgd<double>(p, g, buf, a) : sgd<float>(p, g, buf, a);
      },
      py::arg("p"), py::arg("g"), py::arg("momentum_buffer"), py::arg("lr"), py::arg("momentum"),
      py::arg("dampening"), py::arg("weight_decay"), py::arg("nesterov"), py::arg("first_step"),
      "One SGD step in place over flat C-contiguous buffers (momentum_buffer None without momentum); g as "
      "for adam_step.");

  minigrad::bind_blas(m);

  m.def("set_num_threads", &minigrad::set_num_threads, py::arg("n"),
        "Threads used for large inputs (rows or columns are split between them).");
  m.def("get_num_threads", &minigrad::get_num_threads);
  m.def("cache_info", [] { return cache().stats(); }, "Bytes and blocks held by the buffer cache.");
  m.def("empty_cache", [] { cache().clear(); }, "Frees every cached output buffer.");
  m.def("set_cache_limit", [](size_t bytes) { cache().set_limit(bytes); }, py::arg("bytes"),
        "Most bytes the cache keeps (default 256 MiB); 0 disables it.");
}
