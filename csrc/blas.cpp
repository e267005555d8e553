// Dense matmul through a CBLAS library opened at run time.
//
// NumPy's wheels bring OpenBLAS. Intel's MKL (the `mkl` wheel; what PyTorch's CPU build links)
// runs float32 GEMM 10-25% faster on x86 CPUs, and matmuls are most of a training step for
// wider networks. The extension neither links against MKL nor needs it: Python finds the
// library's file (minigrad/backend.py) and hands its path to load_blas, which takes the two
// standard CBLAS entry points from it.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#if !defined(_WIN32)
#include <dlfcn.h>
#endif

namespace py = pybind11;

namespace {

enum : int { kRowMajor = 101, kNoTrans = 111, kTrans = 112 };

template <typename T>
using gemm_fn = void (*)(int order, int transa, int transb, int m, int n, int k, T alpha, const T* a,
                         int lda, const T* b, int ldb, T beta, T* c, int ldc);

struct Blas {
  gemm_fn<float> sgemm = nullptr;
  gemm_fn<double> dgemm = nullptr;
  std::string version;
};
Blas g_blas;

std::string load_blas(const std::string& path) {
#if defined(_WIN32)
  throw std::runtime_error("load_blas: not supported on Windows");
#else
  // RTLD_LOCAL: MKL's symbols stay out of the process namespace, so they never replace those of
  // another BLAS (NumPy's OpenBLAS, PyTorch's own MKL) loaded beside it.
  void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (h == nullptr) throw std::runtime_error("load_blas: " + std::string(dlerror()));
  Blas blas;
  blas.sgemm = reinterpret_cast<gemm_fn<float>>(dlsym(h, "cblas_sgemm"));
  blas.dgemm = reinterpret_cast<gemm_fn<double>>(dlsym(h, "cblas_dgemm"));
  if (blas.sgemm == nullptr || blas.dgemm == nullptr) {
    dlclose(h);
    throw std::runtime_error("load_blas: " + path + " has no cblas_sgemm / cblas_dgemm");
  }
  using version_fn = void (*)(char*, int);
  if (auto v = reinterpret_cast<version_fn>(dlsym(h, "mkl_get_version_string"))) {
    char buf[256] = {0};
    v(buf, sizeof(buf) - 1);
    blas.version = buf;
    blas.version.erase(blas.version.find_last_not_of(' ') + 1);  // MKL pads it with spaces
  }
  g_blas = blas;  // the handle stays open for the life of the process
  return blas.version;
#endif
}

// A 2-D operand as BLAS sees it: rows or columns with unit stride (a C-ordered array, a transpose
// of one, or a slice of rows of either), else false. The stride of an axis of length 1 is never
// used, so it may be anything (NumPy gives a[None, :] a zero one).
bool as_operand(const py::array& a, int& trans, int& ld) {
  const auto item = static_cast<py::ssize_t>(a.itemsize());
  const py::ssize_t r = a.shape(0), c = a.shape(1), s0 = a.strides(0), s1 = a.strides(1);
  if (s0 % item || s1 % item) return false;
  const py::ssize_t e0 = s0 / item, e1 = s1 / item;
  const py::ssize_t rows = std::max<py::ssize_t>(r, 1), cols = std::max<py::ssize_t>(c, 1);
  if ((c == 1 || e1 == 1) && (r == 1 || e0 >= cols)) {
    trans = kNoTrans;
    ld = static_cast<int>(r == 1 ? cols : e0);
  } else if ((r == 1 || e0 == 1) && (c == 1 || e1 >= rows)) {
    trans = kTrans;
    ld = static_cast<int>(c == 1 ? rows : e1);
  } else {
    return false;
  }
  return true;
}

template <typename T>
bool gemm(gemm_fn<T> fn, const py::array& a, const py::array& b, const py::array& out) {
  int ta, tb, tc, lda, ldb, ldc;
  if (!as_operand(a, ta, lda) || !as_operand(b, tb, ldb) || !as_operand(out, tc, ldc) || tc != kNoTrans)
    return false;
  const int m = static_cast<int>(a.shape(0)), k = static_cast<int>(a.shape(1)), n = static_cast<int>(b.shape(1));
  const T* pa = static_cast<const T*>(a.data());
  const T* pb = static_cast<const T*>(b.data());
  T* pc = static_cast<T*>(const_cast<void*>(out.data()));  // writeable: checked by matmul
  py::gil_scoped_release release;
  fn(kRowMajor, ta, tb, m, n, k, T(1), pa, lda, pb, ldb, T(0), pc, ldc);
  return true;
}

bool matmul(const py::array& a, const py::array& b, const py::array& out) {
  if (g_blas.sgemm == nullptr) throw std::runtime_error("matmul: no BLAS loaded (call load_blas first)");
  if (a.ndim() != 2 || b.ndim() != 2 || out.ndim() != 2)
    throw std::invalid_argument("matmul: a, b and out must be 2-D");
  if (a.shape(1) != b.shape(0) || out.shape(0) != a.shape(0) || out.shape(1) != b.shape(1))
    throw std::invalid_argument("matmul: shapes (" + std::to_string(a.shape(0)) + ", " + std::to_string(a.shape(1)) +
                                ") @ (" + std::to_string(b.shape(0)) + ", " + std::to_string(b.shape(1)) +
                                ") do not fit out (" + std::to_string(out.shape(0)) + ", " +
                                std::to_string(out.shape(1)) + ")");
  // BLAS takes int sizes and leading dimensions; anything larger, empty, or of another dtype is
  // left to NumPy (the caller falls back when this returns false).
  constexpr py::ssize_t kMax = 1 << 30;
  for (const py::array* x : {&a, &b, &out})
    for (int d = 0; d < 2; ++d)
      if (x->shape(d) == 0 || x->shape(d) > kMax || x->strides(d) / static_cast<py::ssize_t>(x->itemsize()) > kMax)
        return false;
  if (!out.writeable()) throw std::invalid_argument("matmul: out is read-only");
  // dtypes compared by value (isinstance uses NumPy's EquivTypes): an unpickled dtype is another object
  if (py::isinstance<py::array_t<float>>(a) && py::isinstance<py::array_t<float>>(b) &&
      py::isinstance<py::array_t<float>>(out))
    return gemm<float>(g_blas.sgemm, a, b, out);
  if (py::isinstance<py::array_t<double>>(a) && py::isinstance<py::array_t<double>>(b) &&
      py::isinstance<py::array_t<double>>(out))
    return gemm<double>(g_blas.dgemm, a, b, out);
  return false;
}

}  // namespace

namespace minigrad {

void bind_blas(py::module_& m) {
  m.def("load_blas", &load_blas, py::arg("path"),
        "Opens a CBLAS shared library (MKL's libmkl_rt) for matmul; returns its version string "
        "(empty when it has none). Raises RuntimeError when it cannot be opened or lacks GEMM.");
  m.def("matmul", &matmul, py::arg("a"), py::arg("b"), py::arg("out"),
        "out = a @ b with the loaded BLAS for 2-D float32/float64 arrays whose rows or columns have "
        "unit stride, out C-ordered and not overlapping a or b. Returns False, having done "
        "nothing, for any other layout or dtype.");
}

}  // namespace minigrad
