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
#include <ATen/native/CPUBlas.h>
#include <torch/library.h>

#include <cmath>
#include <optional>
#include <vector>

namespace {

constexpr int64_t kBlockUnits = 32;  // units a thread takes at a time: a block's product is 128 columns wide
constexpr int64_t kParallelWork = 1 << 17;  // multiply-adds a step from which a second thread pays off
constexpr int64_t kInputRows = 64;  // rows (t, b) of the input part a brgemm call takes
constexpr int64_t kSmallProduct = 16384;  // multiply-adds of W_hh h below which a loop beats a BLAS call

template <typename T>
inline T sigmoid(T z) {
  return T(1) / (T(1) + std::exp(-z));  // σ(z) = 1 / (1 + e^{−z}), as torch's CPU kernel computes it
}

// tanh to within 3.5 ulp (Sleef's u35) rather than torch's 1 ulp (u10): 3× faster here, and g_t and tanh(c_t) were
// three quarters of the cell's time. 3.5 ulp is under 1e-7 absolute, a hundredth of the float32 tolerance.
#if defined(CPU_CAPABILITY_AVX512)
inline __m512 tanh_u35(__m512 x) { return Sleef_tanhf16_u35(x); }
inline __m512d tanh_u35(__m512d x) { return Sleef_tanhd8_u35(x); }
#elif defined(CPU_CAPABILITY_AVX2)
inline __m256 tanh_u35(__m256 x) { return Sleef_tanhf8_u35(x); }
inline __m256d tanh_u35(__m256d x) { return Sleef_tanhd4_u35(x); }
#endif

template <typename T>
inline at::vec::Vectorized<T> fast_tanh(at::vec::Vectorized<T> x) {
#if defined(CPU_CAPABILITY_AVX512) || defined(CPU_CAPABILITY_AVX2)
  return tanh_u35(x);  // Vectorized<T> converts to and from its register type
#else
  return x.tanh();
#endif
}

template <typename T>
inline at::vec::Vectorized<T> sigmoid(at::vec::Vectorized<T> z) {
  using Vec = at::vec::Vectorized<T>;
  return ((Vec(T(0)) - z).exp() + Vec(T(1))).reciprocal();  // σ(z), in torch's vectorised kernel's own steps
}

// One step for batch rows [b0, b1) and units [j0, j1). z (B, 4H) holds W_ih x_t on entry and i, f, g, o on exit;
// bias (4H) is b_ih + b_hh, or zeros where the input part has it already. r points at W_hh h_{t−1} for row 0,
// gate i, unit j0; a row is r_row further on and a gate r_gate (r is (B, 4H) in z's layout, or a block of the
// blocked product, `blocked_weight`). Writes c_t (B, H) and o_t ⊙ tanh(c_t) (B, H) into h. Vectorised as torch's
// own activations are (Sleef's exp, and its tanh to 3.5 ulp, where built for AVX2 or AVX-512), then the units left
// over one by one.
template <typename T>
void cell_units(T* z, const T* bias, const T* r, int64_t r_row, int64_t r_gate, const T* c_prev, T* c, T* h,
                int64_t H, int64_t b0, int64_t b1, int64_t j0, int64_t j1) {
  using Vec = at::vec::Vectorized<T>;
  constexpr int64_t width = Vec::size();
  const int64_t n = j1 - j0;
  const T* bi = bias + j0;
  const T* bf = bi + H;
  const T* bg = bi + 2 * H;
  const T* bo = bi + 3 * H;
  for (int64_t b = b0; b < b1; ++b) {
    T* zi = z + b * 4 * H + j0;  // the four gates' rows of z, from unit j0
    T* zf = zi + H;
    T* zg = zi + 2 * H;
    T* zo = zi + 3 * H;
    const T* ri = r + b * r_row;
    const T* rf = ri + r_gate;
    const T* rg = ri + 2 * r_gate;
    const T* ro = ri + 3 * r_gate;
    const T* cp = c_prev + b * H + j0;
    T* cb = c + b * H + j0;
    T* hb = h + b * H + j0;
    int64_t k = 0;
    for (; k + width <= n; k += width) {
      // z_t = W_ih x_t + (b_ih + b_hh) + W_hh h_{t−1}, then the gates
      const Vec i = sigmoid(Vec::loadu(zi + k) + Vec::loadu(bi + k) + Vec::loadu(ri + k));  // i_t = σ(z_t rows i)
      const Vec f = sigmoid(Vec::loadu(zf + k) + Vec::loadu(bf + k) + Vec::loadu(rf + k));  // f_t = σ(z_t rows f)
      const Vec g = fast_tanh(Vec::loadu(zg + k) + Vec::loadu(bg + k) + Vec::loadu(rg + k));  // g_t = tanh(z_t rows g)
      const Vec o = sigmoid(Vec::loadu(zo + k) + Vec::loadu(bo + k) + Vec::loadu(ro + k));  // o_t = σ(z_t rows o)
      const Vec ct = f * Vec::loadu(cp + k) + i * g;  // c_t = f_t ⊙ c_{t−1} + i_t ⊙ g_t (operators: no FMA)
      i.store(zi + k);
      f.store(zf + k);
      g.store(zg + k);
      o.store(zo + k);
      ct.store(cb + k);
      (o * fast_tanh(ct)).store(hb + k);  // h_t = o_t ⊙ tanh(c_t)
    }
    for (; k < n; ++k) {
      const T i = sigmoid(zi[k] + bi[k] + ri[k]);    // i_t = σ(W_ii x_t + b_ii + b_hi + W_hi h_{t−1})
      const T f = sigmoid(zf[k] + bf[k] + rf[k]);    // f_t = σ(W_if x_t + b_if + b_hf + W_hf h_{t−1})
      const T g = std::tanh(zg[k] + bg[k] + rg[k]);  // g_t = tanh(W_ig x_t + b_ig + b_hg + W_hg h_{t−1})
      const T o = sigmoid(zo[k] + bo[k] + ro[k]);    // o_t = σ(W_io x_t + b_io + b_ho + W_ho h_{t−1})
      const T kept = f * cp[k];
      const T written = i * g;
      const T ct = kept + written;  // c_t = f_t ⊙ c_{t−1} + i_t ⊙ g_t
      zi[k] = i;
      zf[k] = f;
      zg[k] = g;
      zo[k] = o;
      cb[k] = ct;
      hb[k] = o * std::tanh(ct);  // h_t = o_t ⊙ tanh(c_t)
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

// Whether ATen's batch-reduce GEMM (oneDNN's brgemm micro-kernel, CPUBlas.h) runs float32 here: asked once, by
// running it on a small product and checking the answer. Builds of torch without it throw.
bool brgemm_runs() {
  static const bool runs = [] {
    try {
      float a[4], w[4 * 16], r[16];
      for (int64_t k = 0; k < 4; ++k) a[k] = float(k + 1);
      for (int64_t v = 0; v < 4 * 16; ++v) w[v] = float(v % 7);
      at::native::cpublas::brgemm(1, 16, 4, 4, 16, 16, false, a, w, r, false);
      for (int64_t n = 0; n < 16; ++n) {
        float want = 0;
        for (int64_t k = 0; k < 4; ++k) want += a[k] * w[k * 16 + n];
        if (r[n] != want) return false;  // small integers: exact in any order
      }
      return true;
    } catch (const std::exception&) {
      return false;
    }
  }();
  return runs;
}

// r (M, N; rows ld apart) = a (M, K) w (K, N; contiguous) by brgemm: float32 only (`brgemm_runs`).
inline void block_product(int64_t M, int64_t N, int64_t K, int64_t ld, const float* a, const float* w, float* r) {
  at::native::cpublas::brgemm(M, N, K, K, N, ld, false, a, w, r, false);
}
inline void block_product(int64_t, int64_t, int64_t, int64_t, const double*, const double*, double*) {
  TORCH_CHECK(false, "trace_steps: the blocked product is float32 only");
}

// Wᵀ for W (N, K) as panels of `width` columns one after the other, each (K, width) row-major and contiguous: what
// one brgemm call streams once. Two copies at most (the full panels, then a narrower last one).
at::Tensor panels(const at::Tensor& weight, int64_t width) {
  const int64_t N = weight.size(0), K = weight.size(1), full = N / width;
  at::Tensor whole = weight.narrow(0, 0, full * width).reshape({full, width, K}).transpose(1, 2).contiguous();
  if (full * width == N) return whole.view({-1});
  return at::cat({whole.view({-1}), weight.narrow(0, full * width, N - full * width).t().contiguous().view({-1})});
}

// W_hhᵀ (4H, H_r) as panels of 4u columns, block q's panel (H_r, 4u) holding the i, f, g, o columns of units
// [q·u, q·u + u) side by side: one brgemm call then gives a thread every gate of the units it goes on to update.
at::Tensor blocked_weight(const at::Tensor& weight_hh, int64_t H, int64_t u) {
  const int64_t H_r = weight_hh.size(1), full = H / u, rest = H - full * u;
  const at::Tensor by_gate = weight_hh.view({4, H, H_r});
  at::Tensor whole = by_gate.narrow(1, 0, full * u).reshape({4, full, u, H_r}).permute({1, 3, 0, 2}).contiguous();
  if (rest == 0) return whole.view({-1});
  return at::cat({whole.view({-1}), by_gate.narrow(1, full * u, rest).permute({2, 0, 1}).contiguous().view({-1})});
}

// The weights as the brgemm route takes them (`trace_steps`' ih_panels, hh_panels): made once per layer-direction.
std::vector<at::Tensor> brgemm_weights(const at::Tensor& weight_ih, const at::Tensor& weight_hh) {
  const int64_t H = weight_hh.size(0) / 4;
  return {panels(weight_ih.contiguous(), 4 * kBlockUnits), blocked_weight(weight_hh.contiguous(), H, kBlockUnits)};
}

// z (rows, 4H) = x (rows, I) W_ihᵀ by brgemm, in tiles of kInputRows rows by one 4·kBlockUnits-column panel of
// W_ihᵀ (w: `panels`), spread over torch's threads: oneDNN's speed, straight into the trace's gate buffer.
void input_part(const at::Tensor& x, const at::Tensor& w, at::Tensor& z) {
  const int64_t rows = x.size(0), I = x.size(1), N = z.size(1), width = 4 * kBlockUnits;
  const float* xs = x.data_ptr<float>();
  const float* ws = w.data_ptr<float>();
  float* zs = z.data_ptr<float>();
  const int64_t row_tiles = (rows + kInputRows - 1) / kInputRows, col_tiles = (N + width - 1) / width;
  at::parallel_for(0, row_tiles * col_tiles, 1, [&](int64_t s, int64_t e) {
    for (int64_t tile = s; tile < e; ++tile) {
      const int64_t r0 = tile / col_tiles * kInputRows, c0 = tile % col_tiles * width;
      const int64_t m = std::min(kInputRows, rows - r0), n = std::min(width, N - c0);
      block_product(m, n, I, N, xs + r0 * I, ws + I * c0, zs + r0 * N + c0);
    }
  });
}

// Steps over x (T, B, I) from (h0 (B, H_r), c0 (B, H)), in input order or reversed (t = T−1 … 0), into gates
// (T, B, 4H), c (T, B, H) and h (T, B, H_r): contiguous, and indexed by input position in both directions.
void trace_steps(const at::Tensor& x, const at::Tensor& h0, const at::Tensor& c0, const at::Tensor& weight_ih,
                 const at::Tensor& weight_hh, const std::optional<at::Tensor>& bias,
                 const std::optional<at::Tensor>& weight_hr, const std::optional<at::Tensor>& packed_hh,
                 const std::optional<at::Tensor>& ih_panels, const std::optional<at::Tensor>& hh_panels, bool reverse,
                 bool has_input_part, at::Tensor& gates, at::Tensor& c, at::Tensor& h) {
  TORCH_CHECK(x.dim() == 3, "trace_steps: x must be (T, B, I)");
  TORCH_CHECK(gates.is_contiguous() && c.is_contiguous() && h.is_contiguous(),
              "trace_steps: the trace's buffers must be contiguous");
  TORCH_CHECK(x.device().is_cpu(), "trace_steps: CPU only");
  const int64_t T = x.size(0), B = x.size(1), H = c.size(2);
  if (T == 0) return;
  // brgemm's products (float32 only) where the caller prepared the weights for them (`brgemm_weights`)
  const bool fast = ih_panels.has_value() && hh_panels.has_value();
  TORCH_CHECK(!fast || x.scalar_type() == at::kFloat, "trace_steps: brgemm's products are float32 only");
  // W_ih x_t for every t, straight into the gate buffer: z_t less its bias and recurrent part. By brgemm, or ATen's
  // GEMM with the bias (unless the caller has put it there: compiled.input_part_into, by oneDNN's GEMM).
  at::Tensor z = gates.view({T * B, 4 * H});
  at::Tensor flat_x = x.reshape({T * B, x.size(2)}).contiguous();
  at::Tensor cell_bias = at::zeros({4 * H}, x.options());  // what the cell adds: the bias where z lacks it
  if (fast) {
    input_part(flat_x, *ih_panels, z);
    if (bias.has_value()) cell_bias.copy_(*bias);
  } else if (has_input_part) {
    // gates already hold it, bias included
  } else if (bias.has_value()) {
    at::addmm_out(z, *bias, flat_x, weight_ih.t());
  } else {
    at::mm_out(z, flat_x, weight_ih.t());
  }
  const int64_t H_r = h.size(2);
  const at::Tensor w_hh_t = weight_hh.t();
  const at::Tensor w_hh = weight_hh.contiguous();
  const bool small = B * w_hh.numel() <= kSmallProduct;
  const bool blocked = !small && fast;
  const bool packed = packed_hh.has_value() && !small && !blocked;
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
  // A step's work is split by blocks of units over torch's threads where it is worth a fork and a join.
  const int64_t blocks = (H + kBlockUnits - 1) / kBlockUnits;
  const int64_t work = blocked ? B * 4 * H * H_r : B * H * 16;  // multiply-adds, or about that for the cell alone
  const int64_t block_grain = work >= kParallelWork ? 1 : blocks;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "trace_steps", [&] {
    // Raw pointers into the buffers: a step makes one tensor view (h_t, the next GEMM's input) at most, not six.
    scalar_t* const z = gates.data_ptr<scalar_t>();
    scalar_t* const c_all = c.data_ptr<scalar_t>();
    scalar_t* const h_all = h.data_ptr<scalar_t>();
    scalar_t* const cell_h = projects ? unprojected.data_ptr<scalar_t>() : nullptr;
    const scalar_t* cp = c_prev.data_ptr<scalar_t>();
    const scalar_t* hp = h_prev.data_ptr<scalar_t>();
    const scalar_t* bz = cell_bias.data_ptr<scalar_t>();
    for (int64_t k = 0; k < T; ++k) {
      const int64_t t = reverse ? T - 1 - k : k;
      scalar_t* zt = z + t * B * 4 * H;
      scalar_t* ct = c_all + t * B * H;
      scalar_t* ht = projects ? cell_h : h_all + t * B * H;
      if (blocked) {
        // Each thread: W_hh h_{t−1} for its blocks of units (every gate of them, one brgemm call a block), then
        // the cell on the same units: one fork and one join a step, as nn.LSTM's own kernel does.
        scalar_t* rb = recurrent.data_ptr<scalar_t>();
        const scalar_t* wb = hh_panels->data_ptr<scalar_t>();
        at::parallel_for(0, blocks, block_grain, [&](int64_t q0, int64_t q1) {
          for (int64_t q = q0; q < q1; ++q) {
            const int64_t j0 = q * kBlockUnits, n = std::min(kBlockUnits, H - j0), col = 4 * j0;
            block_product(B, 4 * n, H_r, 4 * H, hp, wb + H_r * col, rb + col);
            cell_units(zt, bz, static_cast<const scalar_t*>(rb + col), 4 * H, n, cp, ct, ht, H, 0, B, j0, j0 + n);
          }
        });
      } else {
        const scalar_t* r = recurrent.data_ptr<scalar_t>();
        if (small) {  // W_hh h_{t−1}: the one GEMM a step waits for
          small_product(hp, w_hh.data_ptr<scalar_t>(), recurrent.data_ptr<scalar_t>(), B, H_r, 4 * H);
        } else if (packed) {
          recurrent = packed_product(*pointwise, h_prev, *packed_hh);  // a new (B, 4H) tensor each step
          r = recurrent.data_ptr<scalar_t>();
        } else {
          at::mm_out(recurrent, h_prev, w_hh_t);
        }
        at::parallel_for(0, blocks, block_grain, [&](int64_t q0, int64_t q1) {
          const int64_t j0 = q0 * kBlockUnits, j1 = std::min(H, q1 * kBlockUnits);
          cell_units(zt, bz, r + j0, 4 * H, H, cp, ct, ht, H, 0, B, j0, j1);
        });
      }
      if ((!small && !blocked) || projects) {  // a tensor view only where an ATen GEMM takes or writes h_t
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
  m.def("brgemm_runs() -> bool", &brgemm_runs);
  m.def("brgemm_weights(Tensor weight_ih, Tensor weight_hh) -> Tensor[]", &brgemm_weights);
  m.def("trace_steps(Tensor x, Tensor h0, Tensor c0, Tensor weight_ih, Tensor weight_hh, Tensor? bias, "
        "Tensor? weight_hr, Tensor? packed_hh, Tensor? ih_panels, Tensor? hh_panels, bool reverse, "
        "bool has_input_part, Tensor(a!) gates, Tensor(b!) c, Tensor(c!) h) -> ()");
}

TORCH_LIBRARY_IMPL(lstm_viz, CPU, m) {
  m.impl("trace_steps", &trace_steps);
}

// The same kernel when W_hh comes prepacked (an MkldnnCPU tensor): the dispatcher picks the key from every input.
TORCH_LIBRARY_IMPL(lstm_viz, MkldnnCPU, m) {
  m.impl("trace_steps", &trace_steps);
}
