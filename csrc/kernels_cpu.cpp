// Fused bias + activation on the CPU: one pass over memory for the forward (y = act(z + b)) and one
// for the backward (gz = gy * act'(.), gb = sum over rows of gz).
//
// Portability: built with -O3 and no -march, so the inner loops are written for the baseline
// vector unit (SSE2 on x86-64, NEON on arm64): branch-free bodies, one pointer per stream
// (restrict-qualified), and float32 exp/tanh/erf as polynomials the compiler can vectorize
// (libm calls would keep the loop scalar). float64 uses <cmath> for full precision.
// GCC needs -fno-trapping-math (set by setup.py) to turn the selects into vector blends; it
// changes no result, only lets the compiler ignore floating-point exception flags. setup.py also
// passes -ffp-contract=off so that the AVX-512 clone (which may use FMA) rounds like the others.
#include "kernels.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <thread>
#include <vector>

// GCC on x86-64 Linux also compiles the inner loops for AVX2 and AVX-512 and picks the widest
// the running CPU has (target_clones: resolved once at load time), so the baseline build stays
// runnable everywhere while newer CPUs get 8- or 16-wide vectors.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define MINIGRAD_VECTOR_CLONES __attribute__((target_clones("default", "avx2", "avx512f")))
#else
#define MINIGRAD_VECTOR_CLONES
#endif

namespace minigrad {
namespace {

// ---------------------------------------------------------------------------------------------
// float32 math, vectorizable (bit casts and selects only; every branch is computed, then picked)

inline float bits_to_float(int32_t i) {
  float f;
  std::memcpy(&f, &i, sizeof f);
  return f;
}

// exp(x) = 2^n * exp(r), n = round(x / ln 2), |r| <= ln(2)/2; Cephes' degree-6 polynomial for
// exp(r) (about 1 ulp). x is clamped to [-87, 88] so that 2^n is a normal float: results below
// 1.6e-38 come out as about 1.6e-38 instead of a subnormal or zero (an absolute error < 2e-38).
// For callers whose x never exceeds 88 (erf, tanh, gelu's derivative); exp_f32 handles overflow.
inline float exp_f32_bounded(float x) {
  x = x < -87.0f ? -87.0f : x;
  x = x > 88.0f ? 88.0f : x;
  const float magic = 12582912.0f;  // 1.5 * 2^23: adding it rounds to the nearest integer
  float n = (x * 1.44269504089f + magic) - magic;
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  return p * bits_to_float((static_cast<int32_t>(n) + 127) << 23);
}

// exp, +inf above log(FLT_MAX) as std::exp's, so that 1 / (1 + exp(-x)) is 0 and x / (1 + exp(-x))
// NaN at x = -inf, as in PyTorch.
inline float exp_f32(float x) {
  const float y = exp_f32_bounded(x);
  return x > 88.72283935546875f ? std::numeric_limits<float>::infinity() : y;
}

// tanh: Cephes' odd polynomial below |x| = 0.625, 1 - 2 / (exp(2|x|) + 1) above (no cancellation
// there since tanh >= 0.55).
inline float tanh_f32(float x) {
  float ax = x < 0.0f ? -x : x;
  float big = 1.0f - 2.0f / (exp_f32_bounded(2.0f * ax) + 1.0f);  // clamped: 1 - 1e-38 rounds to 1
  big = x < 0.0f ? -big : big;
  float s = x * x;
  float small = -5.70498872745e-3f;
  small = small * s + 2.06390887954e-2f;
  small = small * s - 5.37397155531e-2f;
  small = small * s + 1.33314422036e-1f;
  small = small * s - 3.33332819422e-1f;
  small = small * s * x + x;
  return ax < 0.625f ? small : big;
}

// erf: N. Juffa's faithfully rounded erff (stackoverflow.com/a/35148199), minimax polynomials
// on both sides of |x| = 0.9277, evaluated here with separate multiply and add.
inline float erf_f32(float a) {
  float t = a < 0.0f ? -a : a;
  float s = a * a;
  float r = -1.72853470e-5f * t + 3.83197126e-4f;
  float u = -3.88396438e-3f * t + 2.42546219e-2f;
  r = r * s + u;
  r = r * t - 1.06777877e-1f;
  r = r * t - 6.34846687e-1f;
  r = r * t - 1.28717512e-1f;
  r = r * t - t;
  float big = 1.0f - exp_f32_bounded(r);  // r <= 0
  big = a < 0.0f ? -big : big;
  float q = -5.96761703e-4f;
  q = q * s + 4.99119423e-3f;
  q = q * s - 2.67681349e-2f;
  q = q * s + 1.12819925e-1f;
  q = q * s - 3.76125336e-1f;
  q = q * s + 1.28379166e-1f;
  q = q * a + a;
  return t > 0.927734375f ? big : q;
}

// expm1: a Taylor polynomial for |x| < 0.5, where exp(x) - 1 would cancel; exp(x) - 1 beyond.
inline float expm1_f32(float x) {
  float p = 1.0f / 40320.0f;
  p = p * x + 1.0f / 5040.0f;
  p = p * x + 1.0f / 720.0f;
  p = p * x + 1.0f / 120.0f;
  p = p * x + 1.0f / 24.0f;
  p = p * x + 1.0f / 6.0f;
  p = p * x + 0.5f;
  float small = p * x * x + x;
  float big = exp_f32(x) - 1.0f;
  return (x < 0.0f ? -x : x) < 0.5f ? small : big;
}

// log(x) for a normal x > 0: x = 2^e * f with f in [sqrt(1/2), sqrt(2)), Cephes' logf polynomial
// for log(f).
inline float log_f32(float x) {
  int32_t i;
  std::memcpy(&i, &x, sizeof i);
  int32_t e = ((i >> 23) & 0xff) - 126;  // x = 2^e * f, f in [0.5, 1)
  float f = bits_to_float((i & 0x007fffff) | 0x3f000000);
  const bool low = f < 0.707106781186547524f;
  e = low ? e - 1 : e;
  f = low ? f + f - 1.0f : f - 1.0f;
  float z = f * f;
  float y = 7.0376836292e-2f;
  y = y * f - 1.1514610310e-1f;
  y = y * f + 1.1676998740e-1f;
  y = y * f - 1.2420140846e-1f;
  y = y * f + 1.4249322787e-1f;
  y = y * f - 1.6668057665e-1f;
  y = y * f + 2.0000714765e-1f;
  y = y * f - 2.4999993993e-1f;
  y = y * f + 3.3333331174e-1f;
  y = y * f * z;
  const float fe = static_cast<float>(e);
  y = y + -2.12194440e-4f * fe;
  y = y - 0.5f * z;
  return (f + y) + 0.693359375f * fe;
}

// log1p(u) for u >= 0 (finite): log(1 + u) * u / ((1 + u) - 1) cancels the rounding of 1 + u
// (Goldberg, "What every computer scientist should know about floating-point arithmetic").
inline float log1p_f32(float u) {
  float w = 1.0f + u;
  float d = w - 1.0f;
  float r = log_f32(w) * (u / (d == 0.0f ? 1.0f : d));
  return d == 0.0f ? u : r;
}

template <typename T> struct Math;
template <> struct Math<float> {
  static float exp(float x) { return exp_f32(x); }
  static float exp_nonpositive(float x) { return exp_f32_bounded(x); }
  static float expm1(float x) { return expm1_f32(x); }
  static float log1p(float x) { return log1p_f32(x); }
  static float tanh(float x) { return tanh_f32(x); }
  static float erf(float x) { return erf_f32(x); }
};
template <> struct Math<double> {
  static double exp(double x) { return std::exp(x); }
  static double exp_nonpositive(double x) { return std::exp(x); }
  static double expm1(double x) { return std::expm1(x); }
  static double log1p(double x) { return std::log1p(x); }
  static double tanh(double x) { return std::tanh(x); }
  static double erf(double x) { return std::erf(x); }
};

constexpr double kSqrtHalf = 0.70710678118654752440;      // 1 / sqrt(2)
constexpr double kInvSqrt2Pi = 0.39894228040143267794;    // 1 / sqrt(2 pi)
constexpr double kSqrt2OverPi = 0.79788456080286535588;   // sqrt(2 / pi), GELU's tanh form
constexpr double kKappa = 0.044715;

template <Act A> constexpr bool kUnknownAct = false;

// act(h) with the scalar parameters p0, p1 (see kernels.h)
template <typename T, Act A> inline T act_forward(T h, T p0, T p1) {
  if constexpr (A == Act::Identity) return h;
  else if constexpr (A == Act::Relu) return h < T(0) ? T(0) : h;  // NaN propagates, as in PyTorch
  else if constexpr (A == Act::Sigmoid) return T(1) / (T(1) + Math<T>::exp(-h));
  else if constexpr (A == Act::Tanh) return Math<T>::tanh(h);
  else if constexpr (A == Act::Gelu) return T(0.5) * h * (T(1) + Math<T>::erf(h * T(kSqrtHalf)));
  else if constexpr (A == Act::GeluTanh)
    return T(0.5) * h * (T(1) + Math<T>::tanh(T(kSqrt2OverPi) * (h + T(kKappa) * (h * h * h))));
  else if constexpr (A == Act::LeakyRelu) return h > T(0) ? h : h * p0;
  else if constexpr (A == Act::Elu) return h > T(0) ? h : p0 * Math<T>::expm1(h);
  // h * (1 / (.)): measured 2.4x faster than h / (.) in the vectorized float32 loop
  else if constexpr (A == Act::Silu) return h * (T(1) / (T(1) + Math<T>::exp(-h)));
  else if constexpr (A == Act::Softplus)
    return h * p0 > p1 ? h : Math<T>::log1p(Math<T>::exp(h * p0)) / p0;
  else static_assert(kUnknownAct<A>, "act_forward: no case for this activation");
}

// g * act'(.), where s is what the table saves for the activation: the output y (identity,
// relu, sigmoid, tanh) or the pre-activation h (the others)
template <typename T, Act A> inline T act_backward(T g, T s, T p0, T p1) {
  if constexpr (A == Act::Identity) return g;
  else if constexpr (A == Act::Relu) return s > T(0) ? g : T(0);
  else if constexpr (A == Act::Sigmoid) return g * (s * (T(1) - s));
  else if constexpr (A == Act::Tanh) return g * (T(1) - s * s);
  else if constexpr (A == Act::Gelu) {
    T cdf = T(0.5) * (T(1) + Math<T>::erf(s * T(kSqrtHalf)));
    T pdf = T(kInvSqrt2Pi) * Math<T>::exp_nonpositive(T(-0.5) * s * s);
    return g * (cdf + s * pdf);
  } else if constexpr (A == Act::GeluTanh) {
    T s2 = s * s;
    T t = Math<T>::tanh(T(kSqrt2OverPi) * (s + T(kKappa) * (s2 * s)));
    return g * (T(0.5) * (T(1) + t) +
                T(0.5) * s * (T(1) - t * t) * (T(kSqrt2OverPi) * (T(1) + T(3 * kKappa) * s2)));
  } else if constexpr (A == Act::LeakyRelu) return s > T(0) ? g : g * p0;
  else if constexpr (A == Act::Elu) return s > T(0) ? g : g * p0 * Math<T>::exp(s);
  else if constexpr (A == Act::Silu) {
    T sig = T(1) / (T(1) + Math<T>::exp(-s));
    return g * sig * (T(1) + s * (T(1) - sig));
  } else if constexpr (A == Act::Softplus) {
    T e = Math<T>::exp(s * p0);
    return s * p0 > p1 ? g : g * e / (e + T(1));
  } else static_assert(kUnknownAct<A>, "act_backward: no case for this activation");
}

// ---------------------------------------------------------------------------------------------
// threads

int default_threads() {
  unsigned hc = std::thread::hardware_concurrency();
  return static_cast<int>(std::clamp(hc == 0 ? 1u : hc, 1u, 8u));
}
std::atomic<int> g_num_threads{default_threads()};

// Below this many elements per thread (2 MiB of float32), starting a thread costs more than it
// saves: the data is still in cache and one core streams it fast enough.
constexpr int64_t kGrain = 1 << 19;

int threads_for(int64_t elements) {
  int64_t by_size = std::max<int64_t>(1, elements / kGrain);
  return static_cast<int>(std::min<int64_t>(g_num_threads.load(), by_size));
}

// Calls f(c, chunks) once for every c in [0, chunks), on nt threads (the calling one and nt - 1
// fresh ones) that each take the next chunk until none is left. With a few chunks per thread, a
// thread that the OS delays (a busy machine) leaves its share to the others instead of holding
// everyone up. Which thread runs a chunk never changes the result.
template <typename F> void parallel_chunks(int nt, int chunks, const F& f) {
  if (nt <= 1) {
    for (int c = 0; c < chunks; ++c) f(c, chunks);
    return;
  }
  std::atomic<int> next{0};
  auto work = [&] {
    for (int c = next++; c < chunks; c = next++) f(c, chunks);
  };
  std::vector<std::thread> pool;
  pool.reserve(nt - 1);
  for (int t = 1; t < nt; ++t) pool.emplace_back(work);
  work();
  for (auto& th : pool) th.join();
}

inline int chunks_for(int nt) { return nt <= 1 ? 1 : 4 * nt; }

// [lo, hi) of the t-th of nt nearly equal parts of [0, n); inner cuts aligned to `align`.
inline void split(int64_t n, int t, int nt, int64_t align, int64_t& lo, int64_t& hi) {
  auto cut = [&](int k) {
    if (k >= nt) return n;
    int64_t c = n * k / nt;
    return std::min(n, c - c % align);
  };
  lo = cut(t);
  hi = cut(t + 1);
}

// ---------------------------------------------------------------------------------------------
// forward

template <typename T, Act A, bool HasBias, bool InPlace>
MINIGRAD_VECTOR_CLONES void forward_block(const T* z, const T* b, T* y, int64_t r0, int64_t r1,
                                          int64_t c0, int64_t c1, int64_t m, T p0, T p1) {
  const T* __restrict bb = b;
  for (int64_t i = r0; i < r1; ++i) {
    if constexpr (InPlace) {
      T* __restrict p = y + i * m;
      for (int64_t j = c0; j < c1; ++j)
        p[j] = act_forward<T, A>(HasBias ? p[j] + bb[j] : p[j], p0, p1);
    } else {
      const T* __restrict zi = z + i * m;
      T* __restrict yi = y + i * m;
      for (int64_t j = c0; j < c1; ++j)
        yi[j] = act_forward<T, A>(HasBias ? zi[j] + bb[j] : zi[j], p0, p1);
    }
  }
}

template <typename T, Act A, bool HasBias, bool InPlace>
void forward_impl(const T* z, const T* b, T* y, int64_t n, int64_t m, const ActParams& ps) {
  int nt = threads_for(n * m);
  const T p0 = static_cast<T>(ps.p0), p1 = static_cast<T>(ps.p1);
  parallel_chunks(nt, chunks_for(nt), [&](int c, int chunks) {
    int64_t r0 = 0, r1 = n, c0 = 0, c1 = m;
    if (n >= nt) split(n, c, chunks, 1, r0, r1);  // whole rows per chunk
    else split(m, c, chunks, 16, c0, c1);         // a few long rows: split the columns
    forward_block<T, A, HasBias, InPlace>(z, b, y, r0, r1, c0, c1, m, p0, p1);
  });
}

template <typename T, Act A>
void forward_act(const T* z, const T* b, T* y, int64_t n, int64_t m, const ActParams& ps) {
  bool in_place = (y == z);
  if (b && in_place) forward_impl<T, A, true, true>(z, b, y, n, m, ps);
  else if (b) forward_impl<T, A, true, false>(z, b, y, n, m, ps);
  else if (in_place) forward_impl<T, A, false, true>(z, b, y, n, m, ps);
  else forward_impl<T, A, false, false>(z, b, y, n, m, ps);
}

// ---------------------------------------------------------------------------------------------
// backward

// Rows [r0, r1) x columns [c0, c1); column sums are added to acc[j - c0] (double). Each row adds
// into part[j - c0] (type T: vectors as wide as the data), which is folded into acc every kFold
// rows, so a float32 sum carries at most kFold additions' worth of float rounding.
constexpr int64_t kFold = 32;

template <typename T, Act A, bool HasBias, bool WantGz, bool WantGb>
MINIGRAD_VECTOR_CLONES void backward_block(const T* gy, const T* s, const T* b, T* gz, double* acc,
                                           T* part, int64_t r0, int64_t r1, int64_t c0,
                                           int64_t c1, int64_t m, T p0, T p1) {
  const T* __restrict bb = b;
  double* __restrict a = acc - c0;
  T* __restrict p = part - c0;
  for (int64_t i0 = r0; i0 < r1; i0 += kFold) {
    const int64_t i1 = std::min(r1, i0 + kFold);
    for (int64_t i = i0; i < i1; ++i) {
      const T* __restrict gyi = gy + i * m;
      const T* __restrict si = s + i * m;
      T* __restrict gzi = WantGz ? gz + i * m : nullptr;
      for (int64_t j = c0; j < c1; ++j) {
        T g0 = gyi[j], sj = si[j];  // loaded up front: a load inside a select blocks vectorization
        T g = act_backward<T, A>(g0, HasBias ? sj + bb[j] : sj, p0, p1);
        if constexpr (WantGz) gzi[j] = g;
        if constexpr (WantGb) p[j] += g;
      }
    }
    if constexpr (WantGb) {
      for (int64_t j = c0; j < c1; ++j) {
        a[j] += static_cast<double>(p[j]);
        p[j] = T(0);
      }
    }
  }
}

template <typename T, Act A, bool HasBias, bool WantGz, bool WantGb>
void backward_impl(const T* gy, const T* s, const T* b, T* gz, T* gb, int64_t n, int64_t m,
                   const ActParams& ps) {
  int nt = threads_for(n * m);
  const T p0 = static_cast<T>(ps.p0), p1 = static_cast<T>(ps.p1);
  int chunks = chunks_for(nt);
  auto block = backward_block<T, A, HasBias, WantGz, WantGb>;
  // Rows stream through memory best, but then each chunk needs its own partial column sums; split
  // the columns instead when the rows are few or those partial sums would be large.
  const bool by_rows = n >= 4 * chunks && static_cast<int64_t>(chunks) * m <= (int64_t(1) << 20);
  if (!WantGb || (!by_rows && m >= 16 * chunks)) {
    // Each chunk owns whole columns (or whole rows when there is no sum): no reduction needed.
    parallel_chunks(nt, chunks, [&](int c, int chunks) {
      int64_t r0 = 0, r1 = n, c0 = 0, c1 = m;
      if (!WantGb && n >= nt) split(n, c, chunks, 1, r0, r1);
      else split(m, c, chunks, 16, c0, c1);
      std::vector<double> acc(WantGb ? c1 - c0 : 0, 0.0);
      std::vector<T> part(acc.size(), T(0));
      block(gy, s, b, gz, acc.data(), part.data(), r0, r1, c0, c1, m, p0, p1);
      if constexpr (WantGb)
        for (int64_t j = c0; j < c1; ++j) gb[j] = static_cast<T>(acc[j - c0]);
    });
    return;
  }
  // Split the rows, one partial sum per chunk, added up in chunk order.
  std::vector<double> partial(static_cast<size_t>(chunks) * m, 0.0);
  parallel_chunks(nt, chunks, [&](int c, int chunks) {
    int64_t r0, r1;
    split(n, c, chunks, 1, r0, r1);
    std::vector<T> part(m, T(0));
    block(gy, s, b, gz, partial.data() + c * m, part.data(), r0, r1, 0, m, m, p0, p1);
  });
  for (int64_t j = 0; j < m; ++j) {
    double total = 0.0;
    for (int c = 0; c < chunks; ++c) total += partial[c * m + j];
    gb[j] = static_cast<T>(total);
  }
}

template <typename T, Act A, bool HasBias>
void backward_flags(const T* gy, const T* s, const T* b, T* gz, T* gb, int64_t n, int64_t m,
                    const ActParams& ps) {
  if (gz && gb) backward_impl<T, A, HasBias, true, true>(gy, s, b, gz, gb, n, m, ps);
  else if (gz) backward_impl<T, A, HasBias, true, false>(gy, s, b, gz, gb, n, m, ps);
  else if (gb) backward_impl<T, A, HasBias, false, true>(gy, s, b, gz, gb, n, m, ps);
}

template <typename T, Act A>
void backward_act(const T* gy, const T* s, const T* b, T* gz, T* gb, int64_t n, int64_t m,
                  const ActParams& ps) {
  if (A == Act::Identity) s = gy, b = nullptr;  // unused; keeps the loop reading valid memory
  if (b) backward_flags<T, A, true>(gy, s, b, gz, gb, n, m, ps);
  else backward_flags<T, A, false>(gy, s, b, gz, gb, n, m, ps);
}

// ---------------------------------------------------------------------------------------------
// optimizers: one pass over the flat buffers instead of a dozen NumPy passes

template <typename T>
MINIGRAD_VECTOR_CLONES void adam_block(T* __restrict p, const T* __restrict g, T* __restrict m,
                                       T* __restrict v, T* __restrict vmax, int64_t lo, int64_t hi,
                                       const AdamArgs& a) {
  const T wd = static_cast<T>(a.weight_decay), decay = static_cast<T>(1 - a.lr * a.weight_decay);
  const T w = static_cast<T>(1 - a.beta1), w_rest = static_cast<T>(1 - (1 - a.beta1));
  const T b2 = static_cast<T>(a.beta2), one_minus_b2 = static_cast<T>(1 - a.beta2);
  const T eps = static_cast<T>(a.eps), bias2_sqrt = static_cast<T>(a.bias2_sqrt);
  const T neg_step = static_cast<T>(-a.step_size);
  const bool small_weight = (1 - a.beta1) < 0.5, has_wd = a.weight_decay != 0;
  for (int64_t i = lo; i < hi; ++i) {
    T gi = g[i], pi = p[i];
    if (has_wd) {
      if (a.decoupled) pi = pi * decay;
      else gi = gi + pi * wd;
    }
    T d = gi - m[i];  // torch.lerp(m, g, w) with both of its branches
    T mi = small_weight ? m[i] + d * w : gi - d * w_rest;
    T vi = v[i] * b2 + gi * one_minus_b2 * gi;
    m[i] = mi;
    v[i] = vi;
    if (vmax) {
      vi = vmax[i] > vi ? vmax[i] : vi;
      vmax[i] = vi;
    }
    T denom = std::sqrt(vi) / bias2_sqrt + eps;
    p[i] = pi + (mi / denom) * neg_step;
  }
}

template <typename T>
MINIGRAD_VECTOR_CLONES void sgd_block(T* __restrict p, const T* __restrict g, T* __restrict buf,
                                      int64_t lo, int64_t hi, const SGDArgs& a) {
  const T wd = static_cast<T>(a.weight_decay), mom = static_cast<T>(a.momentum);
  const T keep = static_cast<T>(1 - a.dampening), lr = static_cast<T>(a.lr);
  const bool has_wd = a.weight_decay != 0, damp = a.dampening != 0;
  for (int64_t i = lo; i < hi; ++i) {
    T gi = g[i];
    if (has_wd) gi = gi + p[i] * wd;
    if (buf) {
      T bi = a.first_step ? gi : (damp ? buf[i] * mom + gi * keep : buf[i] * mom + gi);
      buf[i] = bi;
      gi = a.nesterov ? gi + bi * mom : bi;
    }
    p[i] = p[i] - gi * lr;
  }
}

template <typename T>
MINIGRAD_VECTOR_CLONES void rmsprop_block(T* __restrict p, const T* __restrict g, T* __restrict v,
                                          T* __restrict ga, T* __restrict buf, int64_t lo, int64_t hi,
                                          const RMSpropArgs& a) {
  const T wd = static_cast<T>(a.weight_decay), alpha = static_cast<T>(a.alpha);
  const T w = static_cast<T>(1 - a.alpha), w_rest = static_cast<T>(1 - (1 - a.alpha));
  const T eps = static_cast<T>(a.eps), mom = static_cast<T>(a.momentum), neg_lr = static_cast<T>(-a.lr);
  const bool small_weight = (1 - a.alpha) < 0.5, has_wd = a.weight_decay != 0;
  for (int64_t i = lo; i < hi; ++i) {
    T gi = g[i];
    if (has_wd) gi = gi + p[i] * wd;
    T vi = v[i] * alpha + gi * w * gi;
    v[i] = vi;
    T avg;
    if (ga) {
      T d = gi - ga[i];  // torch.lerp(ga, g, w) with both of its branches
      T gai = small_weight ? ga[i] + d * w : gi - d * w_rest;
      ga[i] = gai;
      avg = std::sqrt(vi - gai * gai) + eps;
    } else {
      avg = std::sqrt(vi) + eps;
    }
    if (buf) {
      T bi = buf[i] * mom + gi / avg;
      buf[i] = bi;
      p[i] = p[i] + bi * neg_lr;
    } else {
      p[i] = p[i] + (gi / avg) * neg_lr;
    }
  }
}

template <typename T>
MINIGRAD_VECTOR_CLONES void adagrad_block(T* __restrict p, const T* __restrict g, T* __restrict sum,
                                          int64_t lo, int64_t hi, const AdagradArgs& a) {
  const T wd = static_cast<T>(a.weight_decay), eps = static_cast<T>(a.eps);
  const T neg_clr = static_cast<T>(-a.clr);
  const bool has_wd = a.weight_decay != 0;
  for (int64_t i = lo; i < hi; ++i) {
    T gi = g[i];
    if (has_wd) gi = gi + p[i] * wd;
    T si = sum[i] + gi * gi;
    sum[i] = si;
    p[i] = p[i] + (gi / (std::sqrt(si) + eps)) * neg_clr;
  }
}

template <typename F> void parallel_range(int64_t n, const F& f) {
  int nt = threads_for(n);
  parallel_chunks(nt, chunks_for(nt), [&](int c, int chunks) {
    int64_t lo, hi;
    split(n, c, chunks, 16, lo, hi);
    f(lo, hi);
  });
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// public entry points

template <typename T>
void bias_act_forward(const T* z, const T* b, T* y, int64_t n, int64_t m, Act act,
                      const ActParams& ps) {
  if (n <= 0 || m <= 0) return;
#define MINIGRAD_FORWARD_CASE(e, name) \
  case Act::e: return forward_act<T, Act::e>(z, b, y, n, m, ps);
  switch (act) { MINIGRAD_ACTIVATIONS(MINIGRAD_FORWARD_CASE) }
#undef MINIGRAD_FORWARD_CASE
}

template <typename T>
void bias_act_backward(const T* gy, const T* saved, const T* b, T* gz, T* gb, int64_t n,
                       int64_t m, Act act, const ActParams& ps) {
  if (gb && (n <= 0 || m <= 0)) std::fill(gb, gb + std::max<int64_t>(m, 0), T(0));
  if (n <= 0 || m <= 0) return;
  if (act == Act::Identity) gz = (gz == gy) ? nullptr : gz;  // gz == gy: nothing to write
#define MINIGRAD_BACKWARD_CASE(e, name) \
  case Act::e: return backward_act<T, Act::e>(gy, saved, b, gz, gb, n, m, ps);
  switch (act) { MINIGRAD_ACTIVATIONS(MINIGRAD_BACKWARD_CASE) }
#undef MINIGRAD_BACKWARD_CASE
}

template void bias_act_forward<float>(const float*, const float*, float*, int64_t, int64_t, Act,
                                      const ActParams&);
template void bias_act_forward<double>(const double*, const double*, double*, int64_t, int64_t,
                                       Act, const ActParams&);
template void bias_act_backward<float>(const float*, const float*, const float*, float*, float*,
                                       int64_t, int64_t, Act, const ActParams&);
template void bias_act_backward<double>(const double*, const double*, const double*, double*,
                                        double*, int64_t, int64_t, Act, const ActParams&);

void set_num_threads(int n) { g_num_threads.store(std::max(1, n)); }
int get_num_threads() { return g_num_threads.load(); }

template <typename T>
void adam_step(T* p, const T* g, T* m, T* v, T* vmax, int64_t n, const AdamArgs& a) {
  parallel_range(n, [&](int64_t lo, int64_t hi) { adam_block<T>(p, g, m, v, vmax, lo, hi, a); });
}

template <typename T>
void sgd_step(T* p, const T* g, T* buf, int64_t n, const SGDArgs& a) {
  parallel_range(n, [&](int64_t lo, int64_t hi) { sgd_block<T>(p, g, buf, lo, hi, a); });
}

template void adam_step<float>(float*, const float*, float*, float*, float*, int64_t, const AdamArgs&);
template void adam_step<double>(double*, const double*, double*, double*, double*, int64_t, const AdamArgs&);
template void sgd_step<float>(float*, const float*, float*, int64_t, const SGDArgs&);
template void sgd_step<double>(double*, const double*, double*, int64_t, const SGDArgs&);

template <typename T>
void rmsprop_step(T* p, const T* g, T* square_avg, T* grad_avg, T* buf, int64_t n, const RMSpropArgs& a) {
  parallel_range(n, [&](int64_t lo, int64_t hi) { rmsprop_block<T>(p, g, square_avg, grad_avg, buf, lo, hi, a); });
}

template <typename T>
void adagrad_step(T* p, const T* g, T* sum, int64_t n, const AdagradArgs& a) {
  parallel_range(n, [&](int64_t lo, int64_t hi) { adagrad_block<T>(p, g, sum, lo, hi, a); });
}

template void rmsprop_step<float>(float*, const float*, float*, float*, float*, int64_t, const RMSpropArgs&);
template void rmsprop_step<double>(double*, const double*, double*, double*, double*, int64_t, const RMSpropArgs&);
template void adagrad_step<float>(float*, const float*, float*, int64_t, const AdagradArgs&);
template void adagrad_step<double>(double*, const double*, double*, int64_t, const AdagradArgs&);

}  // namespace minigrad
