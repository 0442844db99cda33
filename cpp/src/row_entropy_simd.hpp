// The vectorised row kernel, written once over a small SIMD traits type V and instantiated in
// row_entropy_avx2.cpp and row_entropy_avx512.cpp (each compiled with its own -m flags).
//
// V provides: kWidth, reg, load(const float*), load(const uint16_t*), set1, add, sub, mul, max
// (returning its second operand when either is NaN, as MAXPS does), fmadd, exp_clamped (exp of
// x >= -80, a Cephes-style polynomial; NaN in, NaN out), any_inf (+-inf lanes), any_greater(a, b)
// and store(float*, reg).
//
// NaN and +inf inputs are not tested element by element: the running max starts at the lowest
// finite float and the clamp is max(floor, x - m), so a NaN (or +inf - +inf) reaches the sums
// and stays there; a NaN lane makes the row NaN when the lanes are merged.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>

#include "row_state.hpp"

namespace euds::detail {

// exp(x) below e^-80 contributes < 1e-30 of the sum; clamping there keeps every value a
// normal float (subnormals are slow) and turns -inf - -inf = NaN lanes into harmless e^-80.
constexpr float kExpFloor = -80.0f;

template <class V, bool kScaled, class T>
inline void simd_row(const T* row, std::size_t cols, float scale, std::int64_t target,
                     float* entropy, float* nll) {
  using R = typename V::reg;
  constexpr std::size_t W = V::kWidth;
  const R floor = V::set1(kExpFloor);
  const R vscale = V::set1(scale);
  constexpr float kLowest = std::numeric_limits<float>::lowest();
  R m = V::set1(kLowest);  // not -inf: -inf - -inf would be a NaN that means nothing
  R s = V::set1(0.0f);
  R t = V::set1(0.0f);
  bool overflow = false;  // scale * x left the float32 range somewhere

  auto load = [&](std::size_t i) {
    R x = V::load(row + i);
    if constexpr (kScaled) {
      x = V::mul(x, vscale);
      overflow |= V::any_inf(x);
    }
    return x;
  };
  // Moves the running max of every lane to mn, rescaling s and t.
  auto rescale = [&](R mn) {
    if (V::any_greater(mn, m)) {
      const R dc = V::max(floor, V::sub(m, mn));
      const R f = V::exp_clamped(dc);
      t = V::mul(f, V::fmadd(dc, s, t));
      s = V::mul(f, s);
      m = mn;
    }
  };
  auto accumulate = [&](R x) {
    const R d = V::max(floor, V::sub(x, m));  // NaN (a NaN or +inf input) passes through
    const R e = V::exp_clamped(d);
    s = V::add(s, e);
    t = V::fmadd(e, d, t);
  };

  std::size_t i = 0;
  for (; i + 4 * W <= cols; i += 4 * W) {
    const R x0 = load(i), x1 = load(i + W), x2 = load(i + 2 * W), x3 = load(i + 3 * W);
    rescale(V::max(m, V::max(V::max(x0, x1), V::max(x2, x3))));
    accumulate(x0);
    accumulate(x1);
    accumulate(x2);
    accumulate(x3);
  }
  for (; i + W <= cols; i += W) {
    const R x = load(i);
    rescale(V::max(m, x));
    accumulate(x);
  }

  if (kScaled && overflow) {
    // Rare (|x| near 3e38 with scale > 1, or a real -inf): redo the row in double precision,
    // where scaling cannot overflow and -inf inputs keep their meaning.
    scalar_row(row, cols, scale, target, entropy, nll);
    return;
  }

  SoftmaxState state;
  alignas(64) float lm[W], ls[W], lt[W];
  V::store(lm, m);
  V::store(ls, s);
  V::store(lt, t);
  for (std::size_t k = 0; k < W; ++k) state.merge(lm[k], ls[k], lt[k]);
  for (; i < cols; ++i) state.add(static_cast<double>(V::scalar(row[i])) * scale);
  if (!state.bad && state.m <= kLowest) {
    // Only -inf (or values at the very bottom of the float range) seen: the lanes' e^-80
    // floors would pass for a distribution. Decide exactly, in double precision.
    scalar_row(row, cols, scale, target, entropy, nll);
    return;
  }
  const bool want_nll = nll != nullptr && target >= 0;
  const double target_logit = want_nll ? static_cast<double>(V::scalar(row[target])) * scale : 0.0;
  state.finish(want_nll, target_logit, entropy, nll);
}

template <class V, class T>
inline void simd_row_dispatch(const T* row, std::size_t cols, float scale, std::int64_t target,
                              float* entropy, float* nll) {
  if (scale == 1.0f)
    simd_row<V, false>(row, cols, scale, target, entropy, nll);
  else
    simd_row<V, true>(row, cols, scale, target, entropy, nll);
}

}  // namespace euds::detail
