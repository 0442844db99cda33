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

// -(1/n) sum c ln(c/n) = ln n - (1/n) sum c ln c over the runs of a sorted buffer.
template <class Id>
double entropy_of_sorted(const Id* v, std::size_t n) {
  double acc = 0.0;
  std::size_t run = 1;
  for (std::size_t j = 1; j <= n; ++j) {
    if (j < n && v[j] == v[j - 1]) {
      ++run;
      continue;
    }
    if (run > 1) acc += static_cast<double>(run) * std::log(static_cast<double>(run));
    run = 1;
  }
  const double dn = static_cast<double>(n);
  const double h = std::log(dn) - acc / dn;
  return h > 0.0 ? h : 0.0;  // a single distinct id is exactly 0
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
  parallel_for(n_samples, 2048, [&](std::size_t begin, std::size_t end) {
    std::vector<Id> buf;
    for (std::size_t i = begin; i < end; ++i) {
      const std::size_t lo = static_cast<std::size_t>(offsets[i]);
      const std::size_t n = static_cast<std::size_t>(offsets[i + 1]) - lo;
      if (n == 0) {
        out[i] = std::numeric_limits<double>::quiet_NaN();
        continue;
      }
      buf.assign(ids + lo, ids + lo + n);
      std::sort(buf.begin(), buf.end());
      out[i] = entropy_of_sorted(buf.data(), n);
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
    throw std::invalid_argument("alpha must be a finite number >= 0, got " +
                                std::to_string(alpha));
  check_ids(static_cast<std::size_t>(offsets[n_samples]), ids);
  const double denom =
      static_cast<double>(total_) + alpha * static_cast<double>(counts_.size());
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

#define EUDS_INSTANTIATE(Id)                                                                    \
  template void information_entropy<Id>(std::size_t, const std::int64_t*, std::size_t, const Id*, \
                                        double*);                                               \
  template void UnigramCounts::add<Id>(std::size_t, const std::int64_t*, std::size_t, const Id*); \
  template void UnigramCounts::self_information<Id>(std::size_t, const std::int64_t*,           \
                                                    std::size_t, const Id*, double, double*) const;
EUDS_INSTANTIATE(std::int32_t)
EUDS_INSTANTIATE(std::uint32_t)
EUDS_INSTANTIATE(std::int64_t)
#undef EUDS_INSTANTIATE

}  // namespace euds
