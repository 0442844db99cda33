// Portable fallback of the row kernel: the double-precision online state, one element at a time.
#include "euds/row_entropy.hpp"
#include "row_state.hpp"

namespace euds::detail {

void row_scalar_f32(const float* row, std::size_t cols, float scale, std::int64_t target,
                    float* entropy, float* nll) {
  scalar_row(row, cols, scale, target, entropy, nll);
}
void row_scalar_f16(const std::uint16_t* row, std::size_t cols, float scale, std::int64_t target,
                    float* entropy, float* nll) {
  scalar_row(row, cols, scale, target, entropy, nll);
}

}  // namespace euds::detail
