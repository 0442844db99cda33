// Score-column statistics and interval selection (single signal, IGSE intersect, mean-rank).
//
// NaN marks an unscorable record (empty text, ...): it is ignored by quantiles and ranks and is
// never inside an interval. +-inf are ordinary (extreme) values here; the Python layer decides
// whether a column holding them is acceptable.
#pragma once

#include <cstddef>
#include <cstdint>

namespace euds {

// out[j] = the q[j] quantile of the non-NaN values of x, interpolated linearly between order
// statistics (numpy's default "linear" method). NaN when x has no non-NaN value. Throws
// std::invalid_argument for q outside [0, 1].
template <class T>
void nan_quantiles(std::size_t n, const T* x, std::size_t nq, const double* q, double* out);

// out[i] = 1 when lo <= x[i] <= hi, else 0 (NaN is outside).
template <class T>
void interval_mask(std::size_t n, const T* x, double lo, double hi, std::uint8_t* out);

// out[i] = (r_i + 0.5) / n_valid, r_i the 0-based rank of x[i] among the non-NaN values, ties
// given their average rank; NaN stays NaN. Values lie in (0, 1) and are symmetric around 0.5.
template <class T>
void percentile_ranks(std::size_t n, const T* x, double* out);

// Mean-rank combination: out = percentile_ranks(mean over the k rows of ranks[k, n]); a record
// with a NaN in any row gets NaN.
void mean_rank(std::size_t k, std::size_t n, const double* ranks, double* out);

// Budget selection over k percentile-rank columns ranks[k, n] (k = 1: one signal or the
// mean-rank column; k > 1: IGSE intersect). Each column's band at width w in [0, 1] is
// [p (1 - w), p (1 - w) + w] with p = position (0: lowest values, 0.5: centred, 1: highest).
// Record i enters column j's band at width e_ij and the intersection at w_i = max_j e_ij, so
// widening all bands together admits records in order of w_i. Keeps exactly `keep` records:
// the smallest w_i; ties (frequent: short texts share entropy values) are broken by a seeded
// hash of the index, so no part of the input is favoured and the same seed gives the same
// selection. mask[i] = 1 for a kept record. Returns the
// width w of the last record admitted (0 when keep == 0). Records with a NaN rank are never
// kept. Throws std::invalid_argument when keep exceeds the number of records without NaN or
// position is outside [0, 1].
double band_select(std::size_t k, std::size_t n, const double* ranks, double position,
                   std::size_t keep, std::uint64_t seed, std::uint8_t* mask);

// The tie-break key band_select uses for record i (splitmix64 of i and the seed).
std::uint64_t tie_key(std::uint64_t i, std::uint64_t seed);

}  // namespace euds
