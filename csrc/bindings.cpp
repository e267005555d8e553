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

#include <algorithm>
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

#define MINIGRAD_ACT_NAME(e, name) name,
const std::vector<std::string> kActNames = {MINIGRAD_ACTIVATIONS(MINIGRAD_ACT_NAME)};
#undef MINIGRAD_ACT_NAME

Act parse_activation(const py::object& a) {
  if (a.is_none()) return Act::Identity;
  std::string s = py::str(a);
  for (size_t i = 0; i < kActNames.size(); ++i)
    if (s == kActNames[i]) return static_cast<Act>(i);
  std::string known;
  for (const auto& k : kActNames) known += (known.empty() ? "" : ", ") + k;
  throw py::value_error("unknown activation '" + s + "' (expected None or one of " + known + ")");
}

minigrad::ActParams parse_params(const std::vector<double>& p) {
  if (p.size() > 2)
    throw py::value_error("an activation takes at most 2 parameters, got " +
                          std::to_string(p.size()));
  minigrad::ActParams ps;
  if (p.size() > 0) ps.p0 = p[0];
  if (p.size() > 1) ps.p1 = p[1];
  return ps;
}

std::string describe(const py::array& a) {  // e.g. "float32 array of shape (3, 4)"
  std::string shape;
  for (py::ssize_t i = 0; i < a.ndim(); ++i)
    shape += (i ? ", " : "") + std::to_string(a.shape(i));
  if (a.ndim() == 1) shape += ",";
  return std::string(py::str(a.dtype())) + " array of shape (" + shape + ")";
}

// Whether dt is T's dtype, compared by value: an unpickled or deep-copied dtype equals NumPy's own
// but is another object.
template <typename T>
bool has_dtype(const py::dtype& dt) {
  const auto want = py::dtype::of<T>();
  return dt.is(want) || py::detail::npy_api::get().PyArray_EquivTypes_(dt.ptr(), want.ptr());
}

// Checks that `a` is a C-contiguous array of dtype T (never converts: no hidden copies).
template <typename T>
void check(const py::array& a, const char* name, bool writeable = false) {
  if (!py::isinstance<py::array_t<T>>(a) || !has_dtype<T>(a.dtype()))
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
py::array forward(const py::array& z, const py::object& b_obj, Act act, const py::object& out_obj,
                  const minigrad::ActParams& ps) {
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
    minigrad::bias_act_forward<T>(zp, b, yp, n, m, act, ps);
  }
  return out;
}

template <typename T>
py::tuple backward(const py::array& gy, const py::array& saved, Act act, const py::object& b_obj,
                   bool need_gz, bool need_gb, const minigrad::ActParams& ps) {
  check<T>(gy, "grad_output");
  check<T>(saved, "saved");
  if (shape_of(gy) != shape_of(saved))
    throw py::value_error("grad_output has shape " + describe(gy) + " but the saved array has " +
                          describe(saved));
  py::ssize_t n, m;
  rows_cols(gy, n, m);
  const T* b = nullptr;
  py::array b_arr;
  if (!b_obj.is_none() && act != Act::Identity) {
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
    minigrad::bias_act_backward<T>(gyp, sp, b, gz, gb, n, m, act, ps);
  }
  return py::make_tuple(gz_obj, gb_obj);
}

bool is_f64(const py::array& a) { return has_dtype<double>(a.dtype()); }

// ---------------------------------------------------------------------------------------------
// optimizers: one call per parameter group over lists with one entry per parameter, as PyTorch's
// fused optimizers take them; each parameter's arrays are read and written where they are.

// The arrays of one fused optimizer step: the parameters, their gradients and each state list
// (None for a state the update does not keep). ok is false, and nothing may be written, unless
// every array is a NumPy array of dtype T, C-contiguous and of its parameter's shape (parameters
// and states writeable): the caller then runs its plain update, which also names what is wrong.
template <typename T> struct StepLists {
  bool ok = false;
  size_t count;
  std::vector<py::array> keep;      // holds the arrays while the GIL is released
  std::vector<T*> p;
  std::vector<const T*> g;
  std::vector<std::vector<T*>> s;   // s[k][i]: state list k's array for parameter i (null: no list)
  std::vector<int64_t> n;

  StepLists(const py::list& params, const py::list& grads, std::initializer_list<py::object> states)
      : count(params.size()), s(states.size(), std::vector<T*>(params.size(), nullptr)) {
    if (grads.size() != count) return;
    for (const auto& st : states)
      if (!st.is_none() && py::len(st) != count) return;
    keep.reserve(count * (2 + states.size()));
    for (size_t i = 0; i < count; ++i) {
      T* pp;
      if (!take(params[i], nullptr, true, pp)) return;
      const std::vector<py::ssize_t> shape(keep.back().shape(), keep.back().shape() + keep.back().ndim());
      T* gp;
      if (!take(grads[i], &shape, false, gp)) return;
      size_t k = 0;
      for (const auto& st : states) {
        if (!st.is_none() && !take(py::reinterpret_borrow<py::list>(st)[i], &shape, true, s[k][i])) return;
        ++k;
      }
      p.push_back(pp);
      g.push_back(gp);
      n.push_back(static_cast<int64_t>(keep.back().size()));
    }
    ok = true;
  }

  bool take(const py::handle& h, const std::vector<py::ssize_t>* shape, bool writeable, T*& ptr) {
    if (!py::isinstance<py::array_t<T>>(h)) return false;
    auto a = py::reinterpret_borrow<py::array>(h);
    if (!(a.flags() & py::array::c_style) || (writeable && !a.writeable())) return false;
    if (shape && (static_cast<size_t>(a.ndim()) != shape->size() ||
                  !std::equal(shape->begin(), shape->end(), a.shape())))
      return false;
    ptr = static_cast<T*>(const_cast<void*>(a.data()));
    keep.push_back(std::move(a));
    return true;
  }
};

// Whether a step's parameters are float64 (else float32, or something the kernels do not take).
bool f64_params(const py::list& params) {
  return params.size() && py::isinstance<py::array_t<double>>(params[0]);
}

template <typename T>
bool adam(const py::list& params, const py::list& grads, const py::object& m, const py::object& v,
          const py::object& vmax, const std::vector<double>& step_sizes,
          const std::vector<double>& bias2_sqrts, minigrad::AdamArgs args) {
  StepLists<T> l(params, grads, {m, v, vmax});
  if (!l.ok || m.is_none() || v.is_none() || step_sizes.size() != l.count || bias2_sqrts.size() != l.count)
    return false;
  py::gil_scoped_release release;
  for (size_t i = 0; i < l.count; ++i) {
    args.step_size = step_sizes[i];
    args.bias2_sqrt = bias2_sqrts[i];
    minigrad::adam_step<T>(l.p[i], l.g[i], l.s[0][i], l.s[1][i], l.s[2][i], l.n[i], args);
  }
  return true;
}

template <typename T>
bool sgd(const py::list& params, const py::list& grads, const py::object& bufs,
         const std::vector<bool>& first_steps, minigrad::SGDArgs args) {
  StepLists<T> l(params, grads, {bufs});
  if (!l.ok || (!bufs.is_none() && first_steps.size() != l.count)) return false;
  py::gil_scoped_release release;
  for (size_t i = 0; i < l.count; ++i) {
    args.first_step = !bufs.is_none() && first_steps[i];
    minigrad::sgd_step<T>(l.p[i], l.g[i], l.s[0][i], l.n[i], args);
  }
  return true;
}

template <typename T>
bool rmsprop(const py::list& params, const py::list& grads, const py::object& square_avgs,
             const py::object& grad_avgs, const py::object& bufs, const minigrad::RMSpropArgs& args) {
  StepLists<T> l(params, grads, {square_avgs, grad_avgs, bufs});
  if (!l.ok || square_avgs.is_none() || args.centered == grad_avgs.is_none() ||
      (args.momentum > 0) == bufs.is_none())
    return false;
  py::gil_scoped_release release;
  for (size_t i = 0; i < l.count; ++i)
    minigrad::rmsprop_step<T>(l.p[i], l.g[i], l.s[0][i], l.s[1][i], l.s[2][i], l.n[i], args);
  return true;
}

template <typename T>
bool adagrad(const py::list& params, const py::list& grads, const py::object& sums,
             const std::vector<double>& clrs, minigrad::AdagradArgs args) {
  StepLists<T> l(params, grads, {sums});
  if (!l.ok || sums.is_none() || clrs.size() != l.count) return false;
  py::gil_scoped_release release;
  for (size_t i = 0; i < l.count; ++i) {
    args.clr = clrs[i];
    minigrad::adagrad_step<T>(l.p[i], l.g[i], l.s[0][i], l.n[i], args);
  }
  return true;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "minigrad's C++ kernels: fused bias + activation (float32, float64, C-contiguous)";

  m.def(
      "bias_act_forward",
      [](const py::array& z, const py::object& b, const py::object& activation,
         const py::object& out, const std::vector<double>& params) {
        Act act = parse_activation(activation);
        auto ps = parse_params(params);
        return is_f64(z) ? forward<double>(z, b, act, out, ps) : forward<float>(z, b, act, out, ps);
      },
      py::arg("z"), py::arg("b"), py::arg("activation") = py::none(), py::arg("out") = py::none(),
      py::arg("params") = std::vector<double>(),
      "y = act(z + b) for z (n, m) or (m,) and b (m,) or None; writes into `out` when given "
      "(out may be z: in place), else into a new array from the buffer cache. params: the "
      "activation's scalar parameters, in minigrad.kernels.ACTIVATIONS' order.");

  m.def(
      "bias_act_backward",
      [](const py::array& gy, const py::array& saved, const py::object& activation,
         const py::object& b, bool need_gz, bool need_gb, const std::vector<double>& params) {
        Act act = parse_activation(activation);
        auto ps = parse_params(params);
        return is_f64(gy) ? backward<double>(gy, saved, act, b, need_gz, need_gb, ps)
                          : backward<float>(gy, saved, act, b, need_gz, need_gb, ps);
      },
      py::arg("grad_output"), py::arg("saved"), py::arg("activation") = py::none(),
      py::arg("b") = py::none(), py::arg("need_gz") = true, py::arg("need_gb") = true,
      py::arg("params") = std::vector<double>(),
      "(gz, gb) for y = act(z + b): saved is what the activation's derivative reads (the table's "
      "`saves`): y, or z with b (when given) added on the fly; gz (n, m) is grad_output itself for "
      "identity, gb (m,) = gz.sum(0). Either is None when not asked for.");

  m.def(
      "activations", [] { return kActNames; },
      "The activations the C++ kernels implement, by the names minigrad.kernels.ACTIVATIONS uses.");

  m.def(
      "empty",
      [](const std::vector<py::ssize_t>& shape, const py::object& dtype) -> py::array {
        const auto dt = py::dtype::from_args(dtype);
        if (has_dtype<double>(dt)) return cached_empty<double>(shape);
        if (has_dtype<float>(dt)) return cached_empty<float>(shape);
        throw py::type_error("empty: only float32 and float64");
      },
      py::arg("shape"), py::arg("dtype"),
      "An uninitialized C-contiguous array whose memory comes from (and returns to) the cache.");

  m.def(
      "adam_step",
      [](const py::list& params, const py::list& grads, const py::object& exp_avgs,
         const py::object& exp_avg_sqs, const py::object& max_exp_avg_sqs,
         const std::vector<double>& step_sizes, const std::vector<double>& bias2_sqrts, double lr,
         double beta1, double beta2, double eps, double weight_decay, bool decoupled) {
        minigrad::AdamArgs a{lr, beta1, beta2, eps, weight_decay, decoupled, 0, 0};
        return f64_params(params) ? adam<double>(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs,
                                                 step_sizes, bias2_sqrts, a)
                                  : adam<float>(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs,
                                                step_sizes, bias2_sqrts, a);
      },
      py::arg("params"), py::arg("grads"), py::arg("exp_avgs"), py::arg("exp_avg_sqs"),
      py::arg("max_exp_avg_sqs"), py::arg("step_sizes"), py::arg("bias2_sqrts"), py::arg("lr"),
      py::arg("beta1"), py::arg("beta2"), py::arg("eps"), py::arg("weight_decay"), py::arg("decoupled"),
      "One Adam/AdamW step in place over lists with one array per parameter (max_exp_avg_sqs None "
      "without amsgrad); per parameter, step_sizes = lr / (1 - beta1^t), bias2_sqrts = "
      "sqrt(1 - beta2^t). False, having written nothing, unless every array is C-contiguous "
      "float32 (or every one float64) of its parameter's shape.");

  m.def(
      "sgd_step",
      [](const py::list& params, const py::list& grads, const py::object& bufs,
         const std::vector<bool>& first_steps, double lr, double momentum, double dampening,
         double weight_decay, bool nesterov) {
        minigrad::SGDArgs a{lr, momentum, dampening, weight_decay, nesterov, false};
        return f64_params(params) ? sgd<double>(params, grads, bufs, first_steps, a)
                                  : sgd<float>(params, grads, bufs, first_steps, a);
      },
      py::arg("params"), py::arg("grads"), py::arg("momentum_buffers"), py::arg("first_steps"),
      py::arg("lr"), py::arg("momentum"), py::arg("dampening"), py::arg("weight_decay"),
      py::arg("nesterov"),
      "One SGD step in place over lists with one array per parameter (momentum_buffers None without "
      "momentum; first_steps[i]: parameter i's buffer starts as its gradient). Returns as adam_step.");

  m.def(
      "rmsprop_step",
      [](const py::list& params, const py::list& grads, const py::object& square_avgs,
         const py::object& grad_avgs, const py::object& momentum_buffers, double lr, double alpha,
         double eps, double weight_decay, double momentum, bool centered) {
        minigrad::RMSpropArgs a{lr, alpha, eps, weight_decay, momentum, centered};
        return f64_params(params) ? rmsprop<double>(params, grads, square_avgs, grad_avgs, momentum_buffers, a)
                                  : rmsprop<float>(params, grads, square_avgs, grad_avgs, momentum_buffers, a);
      },
      py::arg("params"), py::arg("grads"), py::arg("square_avgs"), py::arg("grad_avgs"),
      py::arg("momentum_buffers"), py::arg("lr"), py::arg("alpha"), py::arg("eps"),
      py::arg("weight_decay"), py::arg("momentum"), py::arg("centered"),
      "One RMSprop step in place over lists with one array per parameter (grad_avgs only when "
      "centered, momentum_buffers only with momentum > 0, else None). Returns as adam_step.");

  m.def(
      "adagrad_step",
      [](const py::list& params, const py::list& grads, const py::object& sums,
         const std::vector<double>& clrs, double weight_decay, double eps) {
        minigrad::AdagradArgs a{0, weight_decay, eps};
        return f64_params(params) ? adagrad<double>(params, grads, sums, clrs, a)
                                  : adagrad<float>(params, grads, sums, clrs, a);
      },
      py::arg("params"), py::arg("grads"), py::arg("sums"), py::arg("clrs"), py::arg("weight_decay"),
      py::arg("eps"),
      "One Adagrad step in place over lists with one array per parameter; clrs[i] = lr / (1 + (t - 1) * "
      "lr_decay) for parameter i's step count t. Returns as adam_step.");

  minigrad::bind_blas(m);

  m.def("set_num_threads", &minigrad::set_num_threads, py::arg("n"),
        "Threads used for large inputs (rows or columns are split between them).");
  m.def("get_num_threads", &minigrad::get_num_threads);
  m.def("cache_info", [] { return cache().stats(); }, "Bytes and blocks held by the buffer cache.");
  m.def("empty_cache", [] { cache().clear(); }, "Frees every cached output buffer.");
  m.def("set_cache_limit", [](size_t bytes) { cache().set_limit(bytes); }, py::arg("bytes"),
        "Most bytes the cache keeps (default 256 MiB); 0 disables it.");
}
