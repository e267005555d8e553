// Fused bias + activation kernels for minigrad: plain C++17 on pointers and sizes.
//
// Layout: z, y, gy, gz are C-contiguous (n, m) row-major matrices; b and gb have m entries.
// Nothing here knows about Python; csrc/bindings.cpp wraps these for minigrad._C.
#pragma once

#include <cstdint>

namespace minigrad {

// The activations these kernels implement: X(enum name, the name in minigrad/kernels.py's table).
// The formulas are minigrad.kernels.ACTIVATIONS'; their C++ forms are the cases of act_forward and
// act_backward in kernels_cpu.cpp, and tests/test_kernels.py checks the two against each other.
// Adding an activation to the C++ path: one X line here and its two cases there.
#define MINIGRAD_ACTIVATIONS(X)                                                              \
  X(Identity, "identity") X(Relu, "relu") X(Sigmoid, "sigmoid") X(Tanh, "tanh") X(Gelu, "gelu") \
  X(GeluTanh, "gelu_tanh") X(LeakyRelu, "leaky_relu") X(Elu, "elu") X(Silu, "silu")              \
  X(Softplus, "softplus")

#define MINIGRAD_ACT_ENUM(e, name) e,
enum class Act : int { MINIGRAD_ACTIVATIONS(MINIGRAD_ACT_ENUM) };
#undef MINIGRAD_ACT_ENUM

// An activation's scalar parameters, in the table's order (LeakyReLU's slope, ELU's alpha,
// Softplus' beta and threshold); unused ones are ignored.
struct ActParams {
  double p0 = 0, p1 = 0;
};

// y[i, j] = act(z[i, j] + b[j]).  b may be null (no bias); y may equal z (in place).
template <typename T>
void bias_act_forward(const T* z, const T* b, T* y, int64_t n, int64_t m, Act act,
                      const ActParams& params = {});

// Backward of y = act(z + b) given the upstream gradient gy. `saved` is what the table says the
// activation's derivative reads: the output y, or the pre-activation z, to which b (when not
// null) is added on the fly; pass b only for the latter.
// gz[i, j] = gy[i, j] * act'(.) (skipped when gz is null or, for Identity, equal to gy; otherwise
// gz must not overlap gy or saved), gb[j] = sum_i gz[i, j] (skipped when gb is null), with the
// sums carried in double.
template <typename T>
void bias_act_backward(const T* gy, const T* saved, const T* b, T* gz, T* gb,
                       int64_t n, int64_t m, Act act, const ActParams& params = {});

// Optimizer updates over flat buffers of n elements, in place, in one pass. Each follows PyTorch's
// order of operations with the hyper-parameters rounded to T, so the result is bit-for-bit the
// same as minigrad's NumPy path (and PyTorch's).
struct AdamArgs {
  double lr, beta1, beta2, eps, weight_decay;
  bool decoupled;      // AdamW: p *= 1 - lr * weight_decay instead of g += weight_decay * p
  double step_size;    // lr / (1 - beta1^t)
  double bias2_sqrt;   // sqrt(1 - beta2^t)
};
// vmax is null without amsgrad.
template <typename T>
void adam_step(T* p, const T* g, T* m, T* v, T* vmax, int64_t n, const AdamArgs& a);

struct SGDArgs {
  double lr, momentum, dampening, weight_decay;
  bool nesterov, first_step;  // first_step: the momentum buffer starts as the gradient
};
// buf is null without momentum.
template <typename T>
void sgd_step(T* p, const T* g, T* buf, int64_t n, const SGDArgs& a);

struct RMSpropArgs {
  double lr, alpha, eps, weight_decay, momentum;
  bool centered;
};
// grad_avg is null unless centered, buf null unless momentum > 0.
template <typename T>
void rmsprop_step(T* p, const T* g, T* square_avg, T* grad_avg, T* buf, int64_t n, const RMSpropArgs& a);

struct AdagradArgs {
  double clr, weight_decay, eps;  // clr: lr / (1 + (t - 1) * lr_decay)
};
template <typename T>
void adagrad_step(T* p, const T* g, T* sum, int64_t n, const AdagradArgs& a);

// Worker threads used for large inputs (>= 1; default: hardware concurrency, capped at 8).
void set_num_threads(int n);
int get_num_threads();

}  // namespace minigrad
