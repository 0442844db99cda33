// Portable fallback of the row kernel: the double-precision online state, one element at a time.
#include "euds/half.hpp"
#include "euds/row_entropy.hpp"
#include "row_state.hpp"

namespace euds::detail {
namespace {

inline float to_float(float x) { return x; }
inline float to_float(std::uint16_t h) { return half_to_float(h); }

template <class T>
void scalar_row(const T* row, std::size_t cols, float scale, std::int64_t target, float* entropy,
                float* nll) {
  SoftmaxState state;
  for (std::size_t i = 0; i < cols; ++i) state.add(static_cast<double>(to_float(row[i])) * scale);
  const bool want_nll = nll != nullptr && target >= 0;
  const double target_logit = want_nll ? static_cast<double>(to_float(row[target])) * scale : 0.0;
  state.finish(want_nll, target_logit, entropy, nll);
}

}  // namespace

void row_scalar_f32(const float* row, std::size_t cols, float scale, std::int64_t target,
                    float* entropy, float* nll) {
  scalar_row(row, cols, scale, target, entropy, nll);
}
void row_scalar_f16(const std::uint16_t* row, std::size_t cols, float scale, std::int64_t target,
                    float* entropy, float* nll) {
  scalar_row(row, cols, scale, target, entropy, nll);
}

}  // namespace euds::detail
