// AVX2 + FMA + F16C instantiation of the row kernel; reached when the CPU has AVX2 and FMA but
// no AVX-512F (see row_entropy.cpp).
#include <immintrin.h>

#include "euds/half.hpp"
#include "euds/row_entropy.hpp"
#include "row_entropy_simd.hpp"

namespace euds::detail {
namespace {

struct Avx2 {
  using reg = __m256;
  static constexpr std::size_t kWidth = 8;
  static reg load(const float* p) { return _mm256_loadu_ps(p); }
  static reg load(const std::uint16_t* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static float scalar(float x) { return x; }
  static float scalar(std::uint16_t h) { return half_to_float(h); }
  static reg set1(float x) { return _mm256_set1_ps(x); }
  static reg add(reg a, reg b) { return _mm256_add_ps(a, b); }
  static reg sub(reg a, reg b) { return _mm256_sub_ps(a, b); }
  static reg mul(reg a, reg b) { return _mm256_mul_ps(a, b); }
  // MAXPS: the second operand when either is NaN (the kernel relies on it).
  static reg max(reg a, reg b) { return _mm256_max_ps(a, b); }
  static reg fmadd(reg a, reg b, reg c) { return _mm256_fmadd_ps(a, b, c); }
  static bool any_inf(reg x) {
    const reg abs = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x);
    return _mm256_movemask_ps(_mm256_cmp_ps(abs, _mm256_set1_ps(__builtin_inff()), _CMP_EQ_OQ)) !=
           0;
  }
  static bool any_greater(reg a, reg b) {
    return _mm256_movemask_ps(_mm256_cmp_ps(a, b, _CMP_GT_OQ)) != 0;
  }
  static void store(float* p, reg x) { _mm256_store_ps(p, x); }
  // Same polynomial as the AVX-512 version.
  static reg exp_clamped(reg x) {
    const reg n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    reg r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    reg p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    const reg r2 = _mm256_mul_ps(r, r);
    p = _mm256_fmadd_ps(p, r2, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    // 2^n through the exponent field. A NaN lane gives an integer junk exponent, but p is NaN
    // there already and NaN * anything stays NaN.
    const __m256i e =
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
  }
};

}  // namespace

void row_avx2_f32(const float* row, std::size_t cols, float scale, std::int64_t target,
                  float* entropy, float* nll) {
  simd_row_dispatch<Avx2>(row, cols, scale, target, entropy, nll);
}
void row_avx2_f16(const std::uint16_t* row, std::size_t cols, float scale, std::int64_t target,
                  float* entropy, float* nll) {
  simd_row_dispatch<Avx2>(row, cols, scale, target, entropy, nll);
}

}  // namespace euds::detail
