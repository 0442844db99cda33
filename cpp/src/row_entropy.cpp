// Run-time dispatch and the batch loop of the fused row kernel.
#include "euds/row_entropy.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "euds/parallel.hpp"

namespace euds {
namespace {

enum class Isa { scalar = 0, avx2 = 1, avx512 = 2 };

Isa detect_isa() {
  Isa best = Isa::scalar;
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) best = Isa::avx2;
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
    best = Isa::avx512;
#endif
  if (const char* cap = std::getenv("EUDS_SIMD")) {
    Isa want = best;
    if (std::strcmp(cap, "scalar") == 0) want = Isa::scalar;
    if (std::strcmp(cap, "avx2") == 0) want = Isa::avx2;
    if (std::strcmp(cap, "avx512") == 0) want = Isa::avx512;
    if (static_cast<int>(want) < static_cast<int>(best)) best = want;
  }
  return best;
}

Isa isa() {
  static const Isa chosen = detect_isa();
  return chosen;
}

detail::RowKernelF32 kernel_f32() {
  switch (isa()) {
    case Isa::avx512:
      return detail::row_avx512_f32;
    case Isa::avx2:
      return detail::row_avx2_f32;
    default:
      return detail::row_scalar_f32;
  }
}
detail::RowKernelF16 kernel_f16() {
  switch (isa()) {
    case Isa::avx512:
      return detail::row_avx512_f16;
    case Isa::avx2:
      return detail::row_avx2_f16;
    default:
      return detail::row_scalar_f16;
  }
}

template <class Target>
void check_args(std::size_t rows, std::size_t cols, float scale, const Target* targets,
                const std::uint8_t* mask) {
  if (!(scale > 0.0f) || !std::isfinite(scale))
    throw std::invalid_argument("scale must be a positive finite number, got " +
                                std::to_string(scale));
  if (targets == nullptr) return;
  for (std::size_t r = 0; r < rows; ++r) {
    if (mask != nullptr && mask[r] == 0) continue;
    const auto t = static_cast<std::int64_t>(targets[r]);
    if (t < 0 || static_cast<std::size_t>(t) >= cols)
      throw std::invalid_argument("targets[" + std::to_string(r) + "] = " + std::to_string(t) +
                                  " is outside [0, " + std::to_string(cols) +
                                  ") on an unmasked row");
  }
}

template <class T, class Target, class Kernel>
void run_rows(std::size_t rows, std::size_t cols, const T* in, float scale, const Target* targets,
              const std::uint8_t* mask, float* entropy, float* nll, Kernel kernel) {
  check_args(rows, cols, scale, targets, mask);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const bool want_nll = targets != nullptr && nll != nullptr;
  // A chunk of rows should stream at least ~256 KiB so scheduling stays negligible.
  const std::size_t grain = cols == 0 ? rows : std::max<std::size_t>(1, 65536 / cols);
  parallel_for(rows, grain, [&](std::size_t begin, std::size_t end) {
    for (std::size_t r = begin; r < end; ++r) {
      float* nll_r = want_nll ? nll + r : nullptr;
      if ((mask != nullptr && mask[r] == 0) || cols == 0) {
        entropy[r] = nan;
        if (nll != nullptr) nll[r] = nan;
        continue;
      }
      const std::int64_t target = want_nll ? static_cast<std::int64_t>(targets[r]) : -1;
      kernel(in + r * cols, cols, scale, target, entropy + r, nll_r);
      if (nll != nullptr && !want_nll) nll[r] = nan;
    }
  });
}

template <class Seg>
void segment_mean_impl(std::size_t rows, const float* values, const Seg* segment,
                       std::size_t n_segments, double* out, std::int64_t* count) {
  for (std::size_t r = 0; r < rows; ++r) {
    if (segment[r] >= 0 && static_cast<std::size_t>(segment[r]) >= n_segments)
      throw std::out_of_range("segment[" + std::to_string(r) + "] = " + std::to_string(segment[r]) +
                              " is not below n_segments = " + std::to_string(n_segments));
  }
  for (std::size_t k = 0; k < n_segments; ++k) out[k] = 0.0;
  std::int64_t* counts = count;
  std::vector<std::int64_t> local;
  if (counts == nullptr) {
    local.assign(n_segments, 0);
    counts = local.data();
  } else {
    for (std::size_t k = 0; k < n_segments; ++k) counts[k] = 0;
  }
  for (std::size_t r = 0; r < rows; ++r) {
    if (segment[r] < 0) continue;
    out[segment[r]] += values[r];
    ++counts[segment[r]];
  }
  for (std::size_t k = 0; k < n_segments; ++k)
    out[k] = counts[k] > 0 ? out[k] / static_cast<double>(counts[k])
                           : std::numeric_limits<double>::quiet_NaN();
}

}  // namespace

void row_softmax_entropy(std::size_t rows, std::size_t cols, const float* in, float scale,
                         const std::int32_t* targets, const std::uint8_t* mask, float* entropy,
                         float* nll) {
  run_rows(rows, cols, in, scale, targets, mask, entropy, nll, kernel_f32());
}
void row_softmax_entropy(std::size_t rows, std::size_t cols, const float* in, float scale,
                         const std::int64_t* targets, const std::uint8_t* mask, float* entropy,
                         float* nll) {
  run_rows(rows, cols, in, scale, targets, mask, entropy, nll, kernel_f32());
}
void row_softmax_entropy(std::size_t rows, std::size_t cols, const std::uint16_t* in, float scale,
                         const std::int32_t* targets, const std::uint8_t* mask, float* entropy,
                         float* nll) {
  run_rows(rows, cols, in, scale, targets, mask, entropy, nll, kernel_f16());
}
void row_softmax_entropy(std::size_t rows, std::size_t cols, const std::uint16_t* in, float scale,
                         const std::int64_t* targets, const std::uint8_t* mask, float* entropy,
                         float* nll) {
  run_rows(rows, cols, in, scale, targets, mask, entropy, nll, kernel_f16());
}

void segment_mean(std::size_t rows, const float* values, const std::int32_t* segment,
                  std::size_t n_segments, double* out, std::int64_t* count) {
  segment_mean_impl(rows, values, segment, n_segments, out, count);
}
void segment_mean(std::size_t rows, const float* values, const std::int64_t* segment,
                  std::size_t n_segments, double* out, std::int64_t* count) {
  segment_mean_impl(rows, values, segment, n_segments, out, count);
}

const char* row_entropy_isa() {
  switch (isa()) {
    case Isa::avx512:
      return "avx512";
    case Isa::avx2:
      return "avx2";
    default:
      return "scalar";
  }
}

}  // namespace euds
