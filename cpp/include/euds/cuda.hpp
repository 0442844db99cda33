// CUDA versions of the row kernel (generative and semantic entropy). Same meaning and argument
// order as euds/row_entropy.hpp, but `in`, `targets`, `mask`, `entropy` and `nll` are device
// pointers and the work is queued on `stream` (a cudaStream_t; nullptr = the legacy default
// stream). Built only with EUDS_ENABLE_CUDA; no function here needs a GPU to be linked in.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace euds::cuda {

// Number of usable CUDA devices; 0 when no driver or no device is present (never throws).
int device_count();
// "name (sm_XY, N MiB)" of a device, or an empty string.
std::string device_name(int device);
// CUDA runtime version the kernels were built with, e.g. "13.0".
std::string runtime_version();

// Queues the kernel. Targets outside [0, cols) on unmasked rows give NaN there and make the
// next check_errors() throw std::invalid_argument. scale must be positive and finite.
void row_softmax_entropy(std::size_t rows, std::size_t cols, const float* in, float scale,
                         const std::int32_t* targets, const std::uint8_t* mask, float* entropy,
                         float* nll, void* stream);
void row_softmax_entropy(std::size_t rows, std::size_t cols, const float* in, float scale,
                         const std::int64_t* targets, const std::uint8_t* mask, float* entropy,
                         float* nll, void* stream);
void row_softmax_entropy(std::size_t rows, std::size_t cols, const std::uint16_t* in, float scale,
                         const std::int32_t* targets, const std::uint8_t* mask, float* entropy,
                         float* nll, void* stream);
void row_softmax_entropy(std::size_t rows, std::size_t cols, const std::uint16_t* in, float scale,
                         const std::int64_t* targets, const std::uint8_t* mask, float* entropy,
                         float* nll, void* stream);

// Waits for `stream` and throws (std::runtime_error, or std::invalid_argument for a bad target)
// when anything queued by the functions above failed.
void check_errors(void* stream);

// Host-memory convenience for tests and small inputs: copies in, runs, copies out, checks.
// `in_is_f16` says whether `in` holds binary16 words; targets are int64 or null.
void row_softmax_entropy_host(std::size_t rows, std::size_t cols, const void* in, bool in_is_f16,
                              float scale, const std::int64_t* targets, const std::uint8_t* mask,
                              float* entropy, float* nll, int device);

}  // namespace euds::cuda
