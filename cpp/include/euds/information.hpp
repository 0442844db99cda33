// Information entropy of token-id sequences given in CSR form.
//
// Sample i's ids are ids[offsets[i] : offsets[i + 1]]; offsets has n_samples + 1 entries,
// starts at 0, never decreases and ends at most at n_ids. Every function validates that and
// throws std::invalid_argument naming the bad offset instead of reading out of bounds.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace euds {

// out[i] = -sum_w (c_w / n) ln(c_w / n) over the distinct ids w of sample i (nats), where n is
// the sample's length and c_w the count of w. Empty samples get NaN. Threaded over samples.
template <class Id>
void information_entropy(std::size_t n_samples, const std::int64_t* offsets, std::size_t n_ids,
                         const Id* ids, double* out);

// Unigram counts over a pool, accumulated batch by batch, for the `corpus` variant:
// out[i] = -(1/n) sum_j ln P(t_j) with P(t) = (c_t + alpha) / (N + alpha V), N the total count
// and V the vocabulary size (the largest id seen + 1, or the size given at construction if
// larger). An id never counted with alpha == 0 has P = 0 and gives +inf.
class UnigramCounts {
 public:
  explicit UnigramCounts(std::size_t vocab_size = 0) : counts_(vocab_size, 0) {}

  // Adds every id of the batch. Throws std::invalid_argument for a negative id or one at or
  // above kMaxVocab, before any count changes.
  template <class Id>
  void add(std::size_t n_samples, const std::int64_t* offsets, std::size_t n_ids, const Id* ids);

  template <class Id>
  void self_information(std::size_t n_samples, const std::int64_t* offsets, std::size_t n_ids,
                        const Id* ids, double alpha, double* out) const;

  // Adds another counter (shards scored apart, then combined).
  void merge(const UnigramCounts& other);

  std::uint64_t total() const { return total_; }
  std::size_t vocab_size() const { return counts_.size(); }
  const std::uint64_t* data() const { return counts_.data(); }
  // Replaces the counts (to restore a saved counter).
  void assign(std::size_t vocab_size, const std::uint64_t* counts);

  static constexpr std::int64_t kMaxVocab = std::int64_t{1} << 31;

 private:
  std::vector<std::uint64_t> counts_;
  std::uint64_t total_ = 0;
};

// Checks a CSR layout; throws std::invalid_argument on the first inconsistent offset.
void check_csr(std::size_t n_samples, const std::int64_t* offsets, std::size_t n_ids);

}  // namespace euds
