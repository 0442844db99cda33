// Fused softmax entropy and negative log-likelihood over the rows of a score matrix.
//
// This one kernel serves two signals:
//  * generative entropy: rows are LM logits [positions, vocab], targets are the next tokens;
//  * semantic entropy: rows are top-m centroid similarities, scale = 1 / temperature.
// Each row is read once from memory: a per-lane online log-sum-exp keeps (max, sum, centred
// moment) and rescales when the running max moves, so no second pass and no temporary.
#pragma once

#include <cstddef>
#include <cstdint>

namespace euds {

// For every row r of `in` ([rows, cols], C order) with mask == nullptr or mask[r] != 0:
//   p = softmax(scale * in[r, :])
//   entropy[r] = -sum_j p_j ln p_j                     (nats)
//   nll[r]     = -ln p[targets[r]]                     (when targets and nll are not null)
// Rows with mask[r] == 0 are not read and get NaN. A row holding NaN or +inf gives NaN; -inf
// entries are zero-probability classes; a row of only -inf gives NaN. cols == 0 gives NaN.
// Throws std::invalid_argument for a target outside [0, cols) on an unmasked row and for
// scale <= 0 or non-finite. Runs on the thread pool; picks AVX-512 / AVX2 / scalar at run time.
void row_softmax_entropy(std::size_t rows, std::size_t cols, const float* in, float scale,
                         const std::int32_t* targets, const std::uint8_t* mask, float* entropy,
                         float* nll);
void row_softmax_entropy(std::size_t rows, std::size_t cols, const float* in, float scale,
                         const std::int64_t* targets, const std::uint8_t* mask, float* entropy,
                         float* nll);
// float16 input, given as raw binary16 words.
void row_softmax_entropy(std::size_t rows, std::size_t cols, const std::uint16_t* in, float scale,
                         const std::int32_t* targets, const std::uint8_t* mask, float* entropy,
                         float* nll);
void row_softmax_entropy(std::size_t rows, std::size_t cols, const std::uint16_t* in, float scale,
                         const std::int64_t* targets, const std::uint8_t* mask, float* entropy,
                         float* nll);

// out[s] = mean of values[r] over the rows r with segment[r] == s; rows with segment < 0 are
// skipped; count[s] = number of rows averaged (may be null); out[s] = NaN where count is 0.
// NaN values propagate into their segment's mean. Throws std::out_of_range for
// segment >= n_segments.
void segment_mean(std::size_t rows, const float* values, const std::int32_t* segment,
                  std::size_t n_segments, double* out, std::int64_t* count);
void segment_mean(std::size_t rows, const float* values, const std::int64_t* segment,
                  std::size_t n_segments, double* out, std::int64_t* count);

// Which implementation row_softmax_entropy dispatches to on this CPU: "avx512", "avx2" or
// "scalar". EUDS_SIMD=scalar|avx2|avx512 in the environment caps it (for tests and benchmarks).
const char* row_entropy_isa();

namespace detail {
// One implementation per instruction set, each in its own translation unit.
using RowKernelF32 = void (*)(const float* row, std::size_t cols, float scale, std::int64_t target,
                              float* entropy, float* nll);
using RowKernelF16 = void (*)(const std::uint16_t* row, std::size_t cols, float scale,
                              std::int64_t target, float* entropy, float* nll);
void row_scalar_f32(const float*, std::size_t, float, std::int64_t, float*, float*);
void row_scalar_f16(const std::uint16_t*, std::size_t, float, std::int64_t, float*, float*);
void row_avx2_f32(const float*, std::size_t, float, std::int64_t, float*, float*);
void row_avx2_f16(const std::uint16_t*, std::size_t, float, std::int64_t, float*, float*);
void row_avx512_f32(const float*, std::size_t, float, std::int64_t, float*, float*);
void row_avx512_f16(const std::uint16_t*, std::size_t, float, std::int64_t, float*, float*);
}  // namespace detail

}  // namespace euds
