// Double-precision online softmax state shared by every row kernel (scalar tails, lane merges).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>

#include "euds/half.hpp"

namespace euds::detail {

// Tracks, for the values x seen so far: m = max x, s = sum exp(x - m) and the centred moment
// t = sum exp(x - m) (x - m). Then logZ = m + ln s and the softmax entropy is ln s - t / s,
// which never subtracts two large numbers (logits near 1e4 keep full precision).
struct SoftmaxState {
  double m = -std::numeric_limits<double>::infinity();
  double s = 0.0;
  double t = 0.0;
  bool bad = false;  // a NaN or +inf was seen

  void add(double x) {
    if (std::isnan(x) || x == std::numeric_limits<double>::infinity()) {
      bad = true;
      return;
    }
    if (x == -std::numeric_limits<double>::infinity()) return;  // zero-probability class
    if (x > m) {
      if (s > 0.0) {
        const double d = m - x;
        const double f = std::exp(d);
        t = f * (t + d * s);
        s = f * s;
      }
      m = x;
      s += 1.0;
    } else {
      const double d = x - m;
      const double e = std::exp(d);
      s += e;
      t += e * d;
    }
  }

  // Folds in another state (one SIMD lane): same algebra as add() for a weighted point.
  void merge(double om, double os, double ot) {
    if (std::isnan(om) || std::isnan(os) || std::isnan(ot)) {
      bad = true;  // a NaN or +inf reached this lane
      return;
    }
    if (!(os > 0.0) || om == -std::numeric_limits<double>::infinity()) return;
    if (om > m) {
      if (s > 0.0) {
        const double d = m - om;
        const double f = std::exp(d);
        t = f * (t + d * s);
        s = f * s;
      }
      m = om;
      s += os;
      t += ot;
    } else {
      const double d = om - m;
      const double f = std::exp(d);
      s += f * os;
      t += f * (ot + d * os);
    }
  }

  // Writes entropy (and nll when target_logit is given and nll not null).
  void finish(bool want_nll, double target_logit, float* entropy, float* nll) const {
    const float nan = std::numeric_limits<float>::quiet_NaN();
    if (bad || !(s > 0.0) || m == -std::numeric_limits<double>::infinity()) {
      *entropy = nan;
      if (want_nll) *nll = nan;
      return;
    }
    const double log_s = std::log(s);
    double h = log_s - t / s;
    if (h < 0.0) h = 0.0;  // rounding on a one-hot row
    *entropy = static_cast<float>(h);
    // (m - x_t) first: with huge logits, m + ln s would round ln s away.
    if (want_nll) *nll = static_cast<float>((m - target_logit) + log_s);
  }
};

inline float to_float(float x) { return x; }
inline float to_float(std::uint16_t h) { return half_to_float(h); }

// The whole row in double precision, element by element: the portable kernel, and the
// fallback of the vector kernels for rows whose scaled values overflow float32.
template <class T>
void scalar_row(const T* row, std::size_t cols, float scale, std::int64_t target, float* entropy,
                float* nll) {
  SoftmaxState state;
  for (std::size_t i = 0; i < cols; ++i) state.add(static_cast<double>(to_float(row[i])) * scale);
  const bool want_nll = nll != nullptr && target >= 0;
  const double target_logit = want_nll ? static_cast<double>(to_float(row[target])) * scale : 0.0;
  state.finish(want_nll, target_logit, entropy, nll);
}

}  // namespace euds::detail
