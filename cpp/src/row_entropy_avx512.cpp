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
  // MAXPS: the second operand when either is NaN (the kernel relies on it).
  static reg max(reg a, reg b) { return _mm512_max_ps(a, b); }
  static reg fmadd(reg a, reg b, reg c) { return _mm512_fmadd_ps(a, b, c); }
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
    // p * 2^n in one instruction (n >= -116 here, so the result stays normal; NaN stays NaN).
    return _mm512_scalef_ps(p, n);
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
