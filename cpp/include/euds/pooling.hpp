// Sentence embeddings from token states: masked mean pooling followed by L2 normalisation
// (all-MiniLM-L6-v2's Pooling + Normalize modules), fused into one pass per text.
#pragma once

#include <cstddef>
#include <cstdint>

namespace euds {

// out[b, :] = normalize(sum_t mask[b, t] * hidden[b, t, :] / sum_t mask[b, t]) for hidden
// [batch, tokens, dim] (C order) and mask [batch, tokens] (nonzero = a real token). A row
// without tokens, or whose mean is the zero vector, gets NaN. Threaded over the batch.
template <class Mask>
void mean_pool_normalize(std::size_t batch, std::size_t tokens, std::size_t dim,
                         const float* hidden, const Mask* mask, float* out);

}  // namespace euds
