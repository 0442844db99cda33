// AVX-512 instantiation of the row kernel. Compiled with -mavx512f -mavx512bw -mavx512dq
// -mavx512vl -mfma -mf16c; only reached when the CPU reports AVX-512F (see row_entropy.cpp).
#include <immintrin.h>

#include "euds/half.hpp"
#include "euds/row_entropy.hpp"
#include "row_entropy_simd.hpp"

namespace euds::detail {
namespace {

struct Avx512 {
  using reg = __m512;
  static constexpr std::size_t kWidth = 16;
  static reg load(const float* p) { return _mm512_loadu_ps(p); }
  static reg load(const std::uint16_t* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static float scalar(float x) { return x; }
  static float scalar(std::uint16_t h) { return half_to_float(h); }
  static reg set1(float x) { return _mm512_set1_ps(x); }
  static reg add(reg a, reg b) { return _mm512_add_ps(a, b); }
  static reg sub(reg a, reg b) { return _mm512_sub_ps(a, b); }
  static reg mul(reg a, reg b) { return _mm512_mul_ps(a, b); }
  // Returns b when a is NaN (the kernel relies on this to clamp NaN lanes).
  static reg max(reg a, reg b) { return _mm512_max_ps(a, b); }
  static reg fmadd(reg a, reg b, reg c) { return _mm512_fmadd_ps(a, b, c); }
  static bool any_bad(reg x) {
    const __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
    const __mmask16 pinf = _mm512_cmp_ps_mask(x, _mm512_set1_ps(__builtin_inff()), _CMP_EQ_OQ);
    return (nan | pinf) != 0;
  }
  static bool any_inf(reg x) {
    const __m512 abs = _mm512_abs_ps(x);
    return _mm512_cmp_ps_mask(abs, _mm512_set1_ps(__builtin_inff()), _CMP_EQ_OQ) != 0;
  }
  static bool any_greater(reg a, reg b) { return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ) != 0; }
  static void store(float* p, reg x) { _mm512_store_ps(p, x); }
  // exp(x) for x in [-80, 0]: x = n ln2 + r, |r| <= ln2/2, degree-6 polynomial (rel. err ~2e-7).
  static reg exp_clamped(reg x) {
    const reg n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                       _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    reg r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    reg p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    const reg r2 = _mm512_mul_ps(r, r);
    p = _mm512_fmadd_ps(p, r2, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    // 2^n through the exponent field; n >= -116 here, so the result stays normal.
    const __m512i e =
        _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
    return _mm512_mul_ps(p, _mm512_castsi512_ps(e));
  }
};

}  // namespace

void row_avx512_f32(const float* row, std::size_t cols, float scale, std::int64_t target,
                    float* entropy, float* nll) {
  simd_row_dispatch<Avx512>(row, cols, scale, target, entropy, nll);
}
void row_avx512_f16(const std::uint16_t* row, std::size_t cols, float scale, std::int64_t target,
                    float* entropy, float* nll) {
  simd_row_dispatch<Avx512>(row, cols, scale, target, entropy, nll);
}

}  // namespace euds::detail
