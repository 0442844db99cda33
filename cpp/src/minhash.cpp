#include "euds/minhash.hpp"

#include <algorithm>
#include <limits>
#include <stdexcept>
#include <vector>

#include "euds/information.hpp"  // check_csr
#include "euds/parallel.hpp"

namespace euds {

void minhash_bands(std::size_t n_texts, const std::int64_t* offsets, std::size_t n_chars,
                   const std::uint32_t* chars, std::size_t shingle, std::size_t bands,
                   std::size_t rows, std::uint64_t seed, std::uint64_t* out) {
  if (shingle < 1 || bands < 1 || rows < 1)
    throw std::invalid_argument("shingle, bands and rows must be >= 1");
  check_csr(n_texts, offsets, n_chars);
  const std::size_t n_hashes = bands * rows;
  // The hash functions' constants: a_p odd, c_p any; then the shingle and band seeds.
  std::vector<std::uint64_t> a(n_hashes), c(n_hashes);
  for (std::size_t p = 0; p < n_hashes; ++p) {
    a[p] = mix64(seed ^ (2 * p + 1)) | 1u;
    c[p] = mix64(seed ^ (2 * p + 2));
  }
  const std::uint64_t shingle_seed = mix64(seed);
  parallel_for(n_texts, 64, [&](std::size_t begin, std::size_t end) {
    std::vector<std::uint32_t> minima(n_hashes);
    for (std::size_t i = begin; i < end; ++i) {
      std::uint64_t* keys = out + i * bands;
      const std::uint32_t* text = chars + offsets[i];
      const auto length = static_cast<std::size_t>(offsets[i + 1] - offsets[i]);
      if (length == 0) {
        std::fill(keys, keys + bands, std::uint64_t{0});
        continue;
      }
      const std::size_t width = std::min(shingle, length);
      std::fill(minima.begin(), minima.end(), std::numeric_limits<std::uint32_t>::max());
      for (std::size_t s = 0; s + width <= length; ++s) {
        std::uint64_t h = shingle_seed;
        for (std::size_t k = 0; k < width; ++k) h = mix64(h ^ text[s + k]);
        for (std::size_t p = 0; p < n_hashes; ++p) {
          const auto v = static_cast<std::uint32_t>((a[p] * h + c[p]) >> 32);
          minima[p] = std::min(minima[p], v);
        }
      }
      for (std::size_t j = 0; j < bands; ++j) {
        std::uint64_t key = mix64(seed + j + 1);
        for (std::size_t r = 0; r < rows; ++r) key = mix64(key ^ minima[j * rows + r]);
        keys[j] = key;
      }
    }
  });
}

}  // namespace euds
