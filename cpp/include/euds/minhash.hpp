// MinHash locality-sensitive band keys of texts, for near-duplicate detection.
//
// Texts arrive as code points in CSR form: text i is chars[offsets[i] : offsets[i + 1]] (the
// caller normalises them first). Each text is cut into overlapping shingles of `shingle` code
// points (a shorter, non-empty text is one shingle). Every shingle gets a 64-bit hash h; each
// of the bands * rows hash functions is v_p(h) = (a_p * h + c_p) mod 2^64 >> 32 (multiply-shift,
// a_p odd), and the text's signature holds min over its shingles of each v_p. Band j's key
// mixes the `rows` minima j*rows ... (j+1)*rows - 1: two texts of Jaccard similarity J share a
// given band's key with probability J^rows, at least one of `bands` keys with probability
// 1 - (1 - J^rows)^bands. An empty text gets keys of 0. Every constant derives from `seed` by
// splitmix64, so the keys are the same on every machine and thread count.
#pragma once

#include <cstddef>
#include <cstdint>

namespace euds {

// The splitmix64 output function of x + golden ratio: the one mixer of the MinHash keys.
inline std::uint64_t mix64(std::uint64_t x) {
  std::uint64_t z = x + 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// out: [n_texts, bands] band keys, row-major. Throws std::invalid_argument for shingle, bands
// or rows < 1 and for an inconsistent CSR layout. Threaded over texts.
void minhash_bands(std::size_t n_texts, const std::int64_t* offsets, std::size_t n_chars,
                   const std::uint32_t* chars, std::size_t shingle, std::size_t bands,
                   std::size_t rows, std::uint64_t seed, std::uint64_t* out);

}  // namespace euds
