#include "euds/information.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>

#include "euds/parallel.hpp"

namespace euds {

void check_csr(std::size_t n_samples, const std::int64_t* offsets, std::size_t n_ids) {
  if (offsets[0] != 0)
    throw std::invalid_argument("offsets[0] must be 0, got " + std::to_string(offsets[0]));
  for (std::size_t i = 0; i < n_samples; ++i) {
    if (offsets[i + 1] < offsets[i])
      throw std::invalid_argument("offsets must not decrease: offsets[" + std::to_string(i + 1) +
                                  "] = " + std::to_string(offsets[i + 1]) + " < offsets[" +
                                  std::to_string(i) + "] = " + std::to_string(offsets[i]));
  }
  if (static_cast<std::uint64_t>(offsets[n_samples]) > n_ids)
    throw std::invalid_argument("offsets[-1] = " + std::to_string(offsets[n_samples]) +
                                " exceeds the number of ids (" + std::to_string(n_ids) + ")");
}

namespace {

// Dense counting for ids below this bound (a per-thread table, reset through the ids of the
// sample); larger ids fall back to sorting the sample.
constexpr std::int64_t kDenseIds = std::int64_t{1} << 20;

// c ln c and ln n for small integers, computed once: short texts need no log call at all.
struct LogTable {
  static constexpr std::size_t kSize = 4096;
  double c_log_c[kSize];
  double log_n[kSize];
  LogTable() {
    c_log_c[0] = 0.0;
    log_n[0] = 0.0;
    for (std::size_t c = 1; c < kSize; ++c) {
      log_n[c] = std::log(static_cast<double>(c));
      c_log_c[c] = static_cast<double>(c) * log_n[c];
    }
  }
  double clogc(std::size_t c) const {
    return c < kSize ? c_log_c[c] : static_cast<double>(c) * std::log(static_cast<double>(c));
  }
  double log(std::size_t n) const {
    return n < kSize ? log_n[n] : std::log(static_cast<double>(n));
  }
};

const LogTable& log_table() {
  static const LogTable table;
  return table;
}

// Entropy from the counts above 1 of a sample of length n with `distinct` distinct ids. The
// counts are summed in ascending order, so the value depends only on the multiset of counts:
// texts with the same count profile tie exactly (selection ranks rely on ties).
inline double entropy_from_counts(std::vector<std::uint32_t>& repeated, std::size_t n,
                                  std::size_t distinct) {
  if (distinct == 1) return 0.0;
  const LogTable& lt = log_table();
  std::sort(repeated.begin(), repeated.end());
  double acc = 0.0;
  for (std::uint32_t c : repeated) acc += lt.clogc(c);
  // -(1/n) sum c ln(c/n) = ln n - (1/n) sum c ln c
  const double h = lt.log(n) - acc / static_cast<double>(n);
  return h > 0.0 ? h : 0.0;
}

// Counts of a sample by sorting a copy (ids too large for the dense table).
template <class Id>
std::size_t counts_by_sorting(const Id* ids, std::size_t n, std::vector<Id>& buf,
                              std::vector<std::uint32_t>& repeated) {
  buf.assign(ids, ids + n);
  std::sort(buf.begin(), buf.end());
  std::size_t distinct = 0;
  std::uint32_t run = 1;
  for (std::size_t j = 1; j <= n; ++j) {
    if (j < n && buf[j] == buf[j - 1]) {
      ++run;
      continue;
    }
    ++distinct;
    if (run > 1) repeated.push_back(run);
    run = 1;
  }
  return distinct;
}

template <class Id>
void check_ids(std::size_t n_ids, const Id* ids) {
  for (std::size_t j = 0; j < n_ids; ++j) {
    const auto v = static_cast<std::int64_t>(ids[j]);
    if (v < 0 || v >= UnigramCounts::kMaxVocab)
      throw std::invalid_argument("ids[" + std::to_string(j) + "] = " + std::to_string(v) +
                                  " is not a valid token id (0 <= id < 2^31)");
  }
}

}  // namespace

template <class Id>
void information_entropy(std::size_t n_samples, const std::int64_t* offsets, std::size_t n_ids,
                         const Id* ids, double* out) {
  check_csr(n_samples, offsets, n_ids);
  const std::size_t used = static_cast<std::size_t>(offsets[n_samples]);
  std::int64_t max_id = -1;
  bool dense = true;
  for (std::size_t j = 0; j < used; ++j) {
    const auto v = static_cast<std::int64_t>(ids[j]);
    if (v < 0 || v >= kDenseIds) {
      dense = false;
      break;
    }
    max_id = std::max(max_id, v);
  }
  parallel_for(n_samples, 4096, [&](std::size_t begin, std::size_t end) {
    std::vector<std::uint32_t> count(dense ? static_cast<std::size_t>(max_id + 1) : 0, 0);
    std::vector<std::uint32_t> repeated;
    std::vector<Id> buf;
    for (std::size_t i = begin; i < end; ++i) {
      const std::size_t lo = static_cast<std::size_t>(offsets[i]);
      const std::size_t n = static_cast<std::size_t>(offsets[i + 1]) - lo;
      if (n == 0) {
        out[i] = std::numeric_limits<double>::quiet_NaN();
        continue;
      }
      const Id* row = ids + lo;
      repeated.clear();
      std::size_t distinct = 0;
      if (dense) {
        for (std::size_t j = 0; j < n; ++j) ++count[static_cast<std::size_t>(row[j])];
        // Each id's count is read and cleared at its first occurrence.
        for (std::size_t j = 0; j < n; ++j) {
          std::uint32_t& c = count[static_cast<std::size_t>(row[j])];
          if (c == 0) continue;
          ++distinct;
          if (c > 1) repeated.push_back(c);
          c = 0;
        }
      } else {
        distinct = counts_by_sorting(row, n, buf, repeated);
      }
      out[i] = entropy_from_counts(repeated, n, distinct);
    }
  });
}

template <class Id>
void UnigramCounts::add(std::size_t n_samples, const std::int64_t* offsets, std::size_t n_ids,
                        const Id* ids) {
  check_csr(n_samples, offsets, n_ids);
  const std::size_t used = static_cast<std::size_t>(offsets[n_samples]);
  check_ids(used, ids);
  std::int64_t max_id = -1;
  for (std::size_t j = 0; j < used; ++j) max_id = std::max<std::int64_t>(max_id, ids[j]);
  if (max_id >= 0 && static_cast<std::size_t>(max_id) >= counts_.size())
    counts_.resize(static_cast<std::size_t>(max_id) + 1, 0);
  for (std::size_t j = 0; j < used; ++j) ++counts_[static_cast<std::size_t>(ids[j])];
  total_ += used;
}

template <class Id>
void UnigramCounts::self_information(std::size_t n_samples, const std::int64_t* offsets,
                                     std::size_t n_ids, const Id* ids, double alpha,
                                     double* out) const {
  check_csr(n_samples, offsets, n_ids);
  if (!(alpha >= 0.0) || !std::isfinite(alpha))
    throw std::invalid_argument("alpha must be a finite number >= 0, got " + std::to_string(alpha));
  check_ids(static_cast<std::size_t>(offsets[n_samples]), ids);
  const double denom = static_cast<double>(total_) + alpha * static_cast<double>(counts_.size());
  if (!(denom > 0.0))
    throw std::invalid_argument("the unigram counter is empty: add() the pool before scoring");
  const double log_denom = std::log(denom);
  parallel_for(n_samples, 2048, [&](std::size_t begin, std::size_t end) {
    for (std::size_t i = begin; i < end; ++i) {
      const std::size_t lo = static_cast<std::size_t>(offsets[i]);
      const std::size_t hi = static_cast<std::size_t>(offsets[i + 1]);
      if (hi == lo) {
        out[i] = std::numeric_limits<double>::quiet_NaN();
        continue;
      }
      double acc = 0.0;
      for (std::size_t j = lo; j < hi; ++j) {
        const auto id = static_cast<std::size_t>(ids[j]);
        const double c = (id < counts_.size() ? static_cast<double>(counts_[id]) : 0.0) + alpha;
        acc += c > 0.0 ? log_denom - std::log(c) : std::numeric_limits<double>::infinity();
      }
      out[i] = acc / static_cast<double>(hi - lo);
    }
  });
}

void UnigramCounts::merge(const UnigramCounts& other) {
  if (other.counts_.size() > counts_.size()) counts_.resize(other.counts_.size(), 0);
  for (std::size_t k = 0; k < other.counts_.size(); ++k) counts_[k] += other.counts_[k];
  total_ += other.total_;
}

void UnigramCounts::assign(std::size_t vocab_size, const std::uint64_t* counts) {
  counts_.assign(counts, counts + vocab_size);
  total_ = 0;
  for (auto c : counts_) total_ += c;
}

#define EUDS_INSTANTIATE(Id)                                                                       \
  template void information_entropy<Id>(std::size_t, const std::int64_t*, std::size_t, const Id*,  \
                                        double*);                                                  \
  template void UnigramCounts::add<Id>(std::size_t, const std::int64_t*, std::size_t, const Id*);  \
  template void UnigramCounts::self_information<Id>(std::size_t, const std::int64_t*, std::size_t, \
                                                    const Id*, double, double*) const;
EUDS_INSTANTIATE(std::int32_t)
EUDS_INSTANTIATE(std::uint32_t)
EUDS_INSTANTIATE(std::int64_t)
#undef EUDS_INSTANTIATE

}  // namespace euds
