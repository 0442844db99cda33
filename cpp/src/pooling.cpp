#include "euds/pooling.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "euds/parallel.hpp"

namespace euds {

template <class Mask>
void mean_pool_normalize(std::size_t batch, std::size_t tokens, std::size_t dim,
                         const float* hidden, const Mask* mask, float* out) {
  parallel_for(batch, 8, [&](std::size_t begin, std::size_t end) {
    std::vector<double> acc(dim);
    for (std::size_t b = begin; b < end; ++b) {
      float* dst = out + b * dim;
      std::fill(acc.begin(), acc.end(), 0.0);
      std::size_t count = 0;
      for (std::size_t t = 0; t < tokens; ++t) {
        if (mask[b * tokens + t] == 0) continue;
        ++count;
        const float* src = hidden + (b * tokens + t) * dim;
        for (std::size_t d = 0; d < dim; ++d) acc[d] += src[d];
      }
      // The mean's 1/count cancels in the normalisation; only the direction is kept.
      double norm = 0.0;
      for (std::size_t d = 0; d < dim; ++d) norm += acc[d] * acc[d];
      if (count == 0 || !(norm > 0.0) || !std::isfinite(norm)) {
        for (std::size_t d = 0; d < dim; ++d) dst[d] = std::numeric_limits<float>::quiet_NaN();
        continue;
      }
      const double inv = 1.0 / std::sqrt(norm);
      for (std::size_t d = 0; d < dim; ++d) dst[d] = static_cast<float>(acc[d] * inv);
    }
  });
}

template void mean_pool_normalize<std::int64_t>(std::size_t, std::size_t, std::size_t, const float*,
                                                const std::int64_t*, float*);
template void mean_pool_normalize<std::uint8_t>(std::size_t, std::size_t, std::size_t, const float*,
                                                const std::uint8_t*, float*);

}  // namespace euds
