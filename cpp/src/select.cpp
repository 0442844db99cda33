#include "euds/select.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "euds/minhash.hpp"  // mix64

namespace euds {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Entry width of a percentile rank u into a band at position p (see band_select).
inline double entry_width(double u, double p) {
  if (u < p) return (p - u) / p;
  if (u > p) return (u - p) / (1.0 - p);
  return 0.0;
}

}  // namespace

std::uint64_t tie_key(std::uint64_t i, std::uint64_t seed) {
  return mix64(i + seed * 0x9e3779b97f4a7c15ull);
}

template <class T>
void nan_quantiles(std::size_t n, const T* x, std::size_t nq, const double* q, double* out) {
  for (std::size_t j = 0; j < nq; ++j) {
    if (!(q[j] >= 0.0 && q[j] <= 1.0))
      throw std::invalid_argument("quantile q[" + std::to_string(j) +
                                  "] = " + std::to_string(q[j]) + " is outside [0, 1]");
  }
  std::vector<double> v;
  v.reserve(n);
  for (std::size_t i = 0; i < n; ++i)
    if (!std::isnan(static_cast<double>(x[i]))) v.push_back(static_cast<double>(x[i]));
  if (v.empty()) {
    for (std::size_t j = 0; j < nq; ++j) out[j] = kNaN;
    return;
  }
  std::sort(v.begin(), v.end());
  const double last = static_cast<double>(v.size() - 1);
  for (std::size_t j = 0; j < nq; ++j) {
    const double h = last * q[j];
    const auto lo = static_cast<std::size_t>(std::floor(h));
    const std::size_t hi = std::min(lo + 1, v.size() - 1);
    const double frac = h - static_cast<double>(lo);
    const double a = v[lo], b = v[hi];
    if (a == b || frac == 0.0) {
      out[j] = a;
    } else if (std::isinf(a) || std::isinf(b)) {
      // The limit of the interpolation: any point strictly between -inf and a finite value
      // is -inf (likewise +inf), where numpy's formula gives NaN.
      out[j] = std::isinf(a) ? a : b;
    } else {
      // numpy's lerp, exact at both ends.
      out[j] = frac >= 0.5 ? b - (b - a) * (1.0 - frac) : a + (b - a) * frac;
    }
  }
}

template <class T>
void interval_mask(std::size_t n, const T* x, double lo, double hi, std::uint8_t* out) {
  for (std::size_t i = 0; i < n; ++i) {
    const double v = static_cast<double>(x[i]);
    out[i] = (v >= lo && v <= hi) ? 1 : 0;
  }
}

template <class T>
void percentile_ranks(std::size_t n, const T* x, double* out) {
  std::vector<std::size_t> idx;
  idx.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    if (std::isnan(static_cast<double>(x[i])))
      out[i] = kNaN;
    else
      idx.push_back(i);
  }
  std::stable_sort(idx.begin(), idx.end(),
                   [&](std::size_t a, std::size_t b) { return x[a] < x[b]; });
  const double n_valid = static_cast<double>(idx.size());
  for (std::size_t lo = 0; lo < idx.size();) {
    std::size_t hi = lo + 1;
    while (hi < idx.size() && !(x[idx[lo]] < x[idx[hi]])) ++hi;
    const double avg_rank = 0.5 * static_cast<double>(lo + hi - 1);
    for (std::size_t r = lo; r < hi; ++r) out[idx[r]] = (avg_rank + 0.5) / n_valid;
    lo = hi;
  }
}

void mean_rank(std::size_t k, std::size_t n, const double* ranks, double* out) {
  if (k == 0) throw std::invalid_argument("mean_rank needs at least one rank column");
  std::vector<double> mean(n, 0.0);
  for (std::size_t j = 0; j < k; ++j)
    for (std::size_t i = 0; i < n; ++i) mean[i] += ranks[j * n + i];  // NaN propagates
  for (std::size_t i = 0; i < n; ++i) mean[i] /= static_cast<double>(k);
  percentile_ranks(n, mean.data(), out);
}

double band_select(std::size_t k, std::size_t n, const double* ranks, double position,
                   std::size_t keep, std::uint64_t seed, std::uint8_t* mask) {
  if (!(position >= 0.0 && position <= 1.0))
    throw std::invalid_argument("position must lie in [0, 1], got " + std::to_string(position));
  if (k == 0) throw std::invalid_argument("band_select needs at least one rank column");
  std::vector<double> width(n, 0.0);
  std::size_t n_valid = 0;
  for (std::size_t i = 0; i < n; ++i) {
    double w = 0.0;
    for (std::size_t j = 0; j < k; ++j) {
      const double u = ranks[j * n + i];
      if (std::isnan(u)) {
        w = kNaN;
        break;
      }
      w = std::max(w, entry_width(u, position));
    }
    width[i] = w;
    if (!std::isnan(w)) ++n_valid;
    mask[i] = 0;
  }
  if (keep > n_valid)
    throw std::invalid_argument("cannot keep " + std::to_string(keep) + " records: only " +
                                std::to_string(n_valid) + " have every score");
  if (keep == 0) return 0.0;
  std::vector<std::size_t> idx;
  idx.reserve(n_valid);
  for (std::size_t i = 0; i < n; ++i)
    if (!std::isnan(width[i])) idx.push_back(i);
  std::vector<std::uint64_t> key(n);
  for (std::size_t i : idx) key[i] = tie_key(i, seed);
  auto before = [&](std::size_t a, std::size_t b) {
    if (width[a] != width[b]) return width[a] < width[b];
    return key[a] != key[b] ? key[a] < key[b] : a < b;
  };
  std::nth_element(idx.begin(), idx.begin() + static_cast<std::ptrdiff_t>(keep - 1), idx.end(),
                   before);
  const std::size_t last = idx[keep - 1];
  for (std::size_t r = 0; r < keep; ++r) mask[idx[r]] = 1;
  return width[last];
}

#define EUDS_INSTANTIATE(T)                                                                   \
  template void nan_quantiles<T>(std::size_t, const T*, std::size_t, const double*, double*); \
  template void interval_mask<T>(std::size_t, const T*, double, double, std::uint8_t*);       \
  template void percentile_ranks<T>(std::size_t, const T*, double*);
EUDS_INSTANTIATE(float)
EUDS_INSTANTIATE(double)
#undef EUDS_INSTANTIATE

}  // namespace euds
