// The compiled engine's cell (lstm_viz/compiled.py builds it): one layer-direction of the LSTM, every gate and
// state written straight into the trace's buffers. The op lstm_viz::trace_steps; only ATen headers, no Python.
//
// Rows of the (4H, ·) weights in PyTorch's order i, f, g, o:
//   z_t = W_ih x_t + b_ih + b_hh + W_hh h_{t−1}
//   i_t, f_t, o_t = σ(z_t rows i, f, o);  g_t = tanh(z_t rows g)
//   c_t = f_t ⊙ c_{t−1} + i_t ⊙ g_t
//   h_t = o_t ⊙ tanh(c_t)            then h_t = W_hr h_t when proj_size > 0
// Built with -ffp-contract=off: c_t is two products and a sum, rounded as torch rounds them, not one FMA.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/cpu/vec/vec.h>
#include <torch/library.h>

#include <cmath>
#include <optional>

namespace {

constexpr int64_t kValuesPerTask = 2048;  // (b, j) values a thread takes at least: below, threads only wait
constexpr int64_t kSmallProduct = 16384;  // multiply-adds of W_hh h below which a loop beats a BLAS call

template <typename T>
inline T sigmoid(T z) {
  return T(1) / (T(1) + std::exp(-z));  // σ(z) = 1 / (1 + e^{−z}), as torch's CPU kernel computes it
}

template <typename T>
inline at::vec::Vectorized<T> sigmoid(at::vec::Vectorized<T> z) {
  using Vec = at::vec::Vectorized<T>;
  return ((Vec(T(0)) - z).exp() + Vec(T(1))).reciprocal();  // σ(z), in torch's vectorised kernel's own steps
}

// One step over batch rows [b0, b1). z (B, 4H) holds W_ih x_t + b on entry and i, f, g, o on exit; r (B, 4H) is
// W_hh h_{t−1}. Writes c_t (B, H) and o_t ⊙ tanh(c_t) (B, H) into h. Vectorised as torch's own activations are
// (Sleef's exp and tanh, where built for AVX2), then the last H mod width units one by one.
template <typename T>
void cell_rows(T* z, const T* r, const T* c_prev, T* c, T* h, int64_t H, int64_t b0, int64_t b1) {
  using Vec = at::vec::Vectorized<T>;
  constexpr int64_t width = Vec::size();
  for (int64_t b = b0; b < b1; ++b) {
    T* zb = z + b * 4 * H;
    const T* rb = r + b * 4 * H;
    const T* cp = c_prev + b * H;
    T* cb = c + b * H;
    T* hb = h + b * H;
    int64_t j = 0;
    for (; j + width <= H; j += width) {
      const Vec i = sigmoid(Vec::loadu(zb + j) + Vec::loadu(rb + j));  // i_t = σ(W_ii x_t + b_ii + W_hi h_{t−1} + b_hi)
      const Vec f = sigmoid(Vec::loadu(zb + H + j) + Vec::loadu(rb + H + j));  // f_t = σ(W_if x_t + … + b_hf)
      const Vec g = (Vec::loadu(zb + 2 * H + j) + Vec::loadu(rb + 2 * H + j)).tanh();  // g_t = tanh(W_ig x_t + …)
      const Vec o = sigmoid(Vec::loadu(zb + 3 * H + j) + Vec::loadu(rb + 3 * H + j));  // o_t = σ(W_io x_t + …)
      const Vec ct = f * Vec::loadu(cp + j) + i * g;  // c_t = f_t ⊙ c_{t−1} + i_t ⊙ g_t (operators: no FMA)
      i.store(zb + j);
      f.store(zb + H + j);
      g.store(zb + 2 * H + j);
      o.store(zb + 3 * H + j);
      ct.store(cb + j);
      (o * ct.tanh()).store(hb + j);  // h_t = o_t ⊙ tanh(c_t)
    }
    for (; j < H; ++j) {
      const T i = sigmoid(zb[j] + rb[j]);                    // i_t = σ(W_ii x_t + b_ii + W_hi h_{t−1} + b_hi)
      const T f = sigmoid(zb[H + j] + rb[H + j]);            // f_t = σ(W_if x_t + b_if + W_hf h_{t−1} + b_hf)
      const T g = std::tanh(zb[2 * H + j] + rb[2 * H + j]);  // g_t = tanh(W_ig x_t + b_ig + W_hg h_{t−1} + b_hg)
      const T o = sigmoid(zb[3 * H + j] + rb[3 * H + j]);    // o_t = σ(W_io x_t + b_io + W_ho h_{t−1} + b_ho)
      const T kept = f * cp[j];
      const T written = i * g;
      const T ct = kept + written;  // c_t = f_t ⊙ c_{t−1} + i_t ⊙ g_t
      zb[j] = i;
      zb[H + j] = f;
      zb[2 * H + j] = g;
      zb[3 * H + j] = o;
      cb[j] = ct;
      hb[j] = o * std::tanh(ct);  // h_t = o_t ⊙ tanh(c_t)
    }
  }
}

// r = h W_hᵀ for h (B, K) and W (N, K), both contiguous, as dot products of rows: for the small weights where a
// BLAS call's own overhead (~1 µs through the dispatcher) is most of a step. Sums in another order than the BLAS,
// so it rounds a little differently (well within the tests' tolerance against nn.LSTM).
template <typename T>
void small_product(const T* h, const T* W, T* r, int64_t B, int64_t K, int64_t N) {
  using Vec = at::vec::Vectorized<T>;
  constexpr int64_t width = Vec::size();
  for (int64_t b = 0; b < B; ++b) {
    const T* hb = h + b * K;
    for (int64_t n = 0; n < N; ++n) {
      const T* wn = W + n * K;
      Vec acc(T(0));
      int64_t k = 0;
      for (; k + width <= K; k += width) {
        acc = acc + Vec::loadu(hb + k) * Vec::loadu(wn + k);
      }
      T lanes[width];
      acc.store(lanes);
      T sum = T(0);
      for (int64_t l = 0; l < width; ++l) {
        sum += lanes[l];
      }
      for (; k < K; ++k) {
        sum += hb[k] * wn[k];
      }
      r[b * N + n] = sum;
    }
  }
}

// h W_hhᵀ by oneDNN's GEMM on W_hh prepacked for this batch (mkldnn::_reorder_linear_weight), the kind nn.LSTM's
// kernel runs on the CPU: ~2× ATen's matmul for big float32 weights here. Called boxed, so no oneDNN header is needed.
at::Tensor packed_product(const c10::OperatorHandle& op, const at::Tensor& h, const at::Tensor& packed) {
  std::vector<c10::IValue> stack;
  stack.emplace_back(h);
  stack.emplace_back(packed);
  stack.emplace_back();  // no bias: it is in the input part
  stack.emplace_back(std::string("none"));
  stack.emplace_back(c10::List<std::optional<at::Scalar>>());
  stack.emplace_back(std::string(""));
  op.callBoxed(&stack);
  return stack[0].toTensor();
}

// Steps over x (T, B, I) from (h0 (B, H_r), c0 (B, H)), in input order or reversed (t = T−1 … 0), into gates
// (T, B, 4H), c (T, B, H) and h (T, B, H_r): contiguous, and indexed by input position in both directions.
void trace_steps(const at::Tensor& x, const at::Tensor& h0, const at::Tensor& c0, const at::Tensor& weight_ih,
                 const at::Tensor& weight_hh, const std::optional<at::Tensor>& bias,
                 const std::optional<at::Tensor>& weight_hr, const std::optional<at::Tensor>& packed_hh, bool reverse,
                 bool has_input_part, at::Tensor& gates, at::Tensor& c, at::Tensor& h) {
  TORCH_CHECK(x.dim() == 3, "trace_steps: x must be (T, B, I)");
  TORCH_CHECK(gates.is_contiguous() && c.is_contiguous() && h.is_contiguous(),
              "trace_steps: the trace's buffers must be contiguous");
  TORCH_CHECK(x.device().is_cpu(), "trace_steps: CPU only");
  const int64_t T = x.size(0), B = x.size(1), H = c.size(2);
  if (T == 0) return;
  // W_ih x_t + b_ih + b_hh for every t in one GEMM, straight into the gate buffer: z_t less its recurrent part
  // (unless the caller has put it there: compiled.input_part_into, by oneDNN's GEMM).
  at::Tensor z = gates.view({T * B, 4 * H});
  at::Tensor flat_x = x.reshape({T * B, x.size(2)});
  if (has_input_part) {
    // gates already hold it
  } else if (bias.has_value()) {
    at::addmm_out(z, *bias, flat_x, weight_ih.t());
  } else {
    at::mm_out(z, flat_x, weight_ih.t());
  }
  const at::Tensor w_hh_t = weight_hh.t();
  const at::Tensor w_hh = weight_hh.contiguous();
  const bool small = B * w_hh.numel() <= kSmallProduct;
  const bool packed = packed_hh.has_value() && !small;
  std::optional<c10::OperatorHandle> pointwise;
  if (packed) {
    pointwise = c10::Dispatcher::singleton().findSchemaOrThrow("mkldnn::_linear_pointwise", "");
  }
  const bool projects = weight_hr.has_value();
  const at::Tensor w_hr_t = projects ? weight_hr->t() : at::Tensor();
  at::Tensor recurrent = at::empty({B, 4 * H}, x.options());  // W_hh h_{t−1}, reused by every step
  at::Tensor unprojected = projects ? at::empty({B, H}, x.options()) : at::Tensor();  // o_t ⊙ tanh(c_t)
  at::Tensor h_prev = h0.contiguous();
  const at::Tensor c_prev = c0.contiguous();
  const int64_t grain = std::max<int64_t>(1, kValuesPerTask / std::max<int64_t>(H, 1));
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "trace_steps", [&] {
    // Raw pointers into the buffers: a step makes one tensor view (h_t, the next GEMM's input), not six.
    scalar_t* const z = gates.data_ptr<scalar_t>();
    scalar_t* const c_all = c.data_ptr<scalar_t>();
    scalar_t* const h_all = h.data_ptr<scalar_t>();
    const scalar_t* r = recurrent.data_ptr<scalar_t>();
    scalar_t* const cell_h = projects ? unprojected.data_ptr<scalar_t>() : nullptr;
    const scalar_t* cp = c_prev.data_ptr<scalar_t>();
    const scalar_t* hp = h_prev.data_ptr<scalar_t>();
    const int64_t H_r = h.size(2);
    for (int64_t k = 0; k < T; ++k) {
      const int64_t t = reverse ? T - 1 - k : k;
      if (small) {  // W_hh h_{t−1}: the one GEMM a step waits for
        small_product(hp, w_hh.data_ptr<scalar_t>(), recurrent.data_ptr<scalar_t>(), B, H_r, 4 * H);
      } else if (packed) {
        recurrent = packed_product(*pointwise, h_prev, *packed_hh);  // a new (B, 4H) tensor each step
        r = recurrent.data_ptr<scalar_t>();
      } else {
        at::mm_out(recurrent, h_prev, w_hh_t);
      }
      scalar_t* zt = z + t * B * 4 * H;
      scalar_t* ct = c_all + t * B * H;
      scalar_t* ht = projects ? cell_h : h_all + t * B * H;
      if (B * H >= 2 * kValuesPerTask) {
        at::parallel_for(0, B, grain, [&](int64_t b0, int64_t b1) { cell_rows(zt, r, cp, ct, ht, H, b0, b1); });
      } else {
        cell_rows(zt, r, cp, ct, ht, H, 0, B);
      }
      if (!small || projects) {  // a tensor view only where a GEMM takes or writes h_t
        h_prev = h.select(0, t);
      }
      if (projects) {
        at::mm_out(h_prev, unprojected, w_hr_t);  // h_t = W_hr (o_t ⊙ tanh(c_t))
      }
      hp = h_all + t * B * H_r;
      cp = ct;
    }
  });
}

}  // namespace

TORCH_LIBRARY(lstm_viz, m) {
  m.def("trace_steps(Tensor x, Tensor h0, Tensor c0, Tensor weight_ih, Tensor weight_hh, Tensor? bias, "
        "Tensor? weight_hr, Tensor? packed_hh, bool reverse, bool has_input_part, Tensor(a!) gates, Tensor(b!) c, Tensor(c!) h) -> ()");
}

TORCH_LIBRARY_IMPL(lstm_viz, CPU, m) {
  m.impl("trace_steps", &trace_steps);
}

// The same kernel when W_hh comes prepacked (an MkldnnCPU tensor): the dispatcher picks the key from every input.
TORCH_LIBRARY_IMPL(lstm_viz, MkldnnCPU, m) {
  m.impl("trace_steps", &trace_steps);
}
