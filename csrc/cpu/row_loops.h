// The row loops for one instruction set. rows.h includes this file once per instruction
// set, each time inside its own namespace and with the target's code generation switched
// on, so the same loops compile to 16-byte SSE2/NEON vectors and to 32-byte AVX2 and
// 64-byte AVX-512 ones. (No include guard: that is the point.) Before including it, define
// KMIXUP_VEC_BYTES, the vector width in bytes (16, 32 or 64); the wider ones come with the
// F16C conversions. KMIXUP_AVX512_BF16 (with 64) rounds bfloat16 with AVX512-BF16.
// The vectors are the GCC/Clang vector extension: at::vec is plain scalar loops unless an
// extension is compiled once per CPU capability, and scalar loops do not vectorise
// reliably under the flags torch passes (-fwrapv).

typedef float FloatVec __attribute__((vector_size(KMIXUP_VEC_BYTES)));
typedef uint32_t BitsVec __attribute__((vector_size(KMIXUP_VEC_BYTES)));
constexpr int64_t kFloatLanes = KMIXUP_VEC_BYTES / sizeof(float);

// A pack: 2 * kLanes consecutive elements, loaded as two vectors of acc_t (lo, hi). Which
// element lands in which lane is the type's business: the loops are element-wise or sums.
template <typename scalar_t>
struct Pack {
  static_assert(std::is_same_v<scalar_t, acc_t<scalar_t>>);
  typedef scalar_t Vec __attribute__((vector_size(KMIXUP_VEC_BYTES)));
  static constexpr int64_t kLanes = KMIXUP_VEC_BYTES / sizeof(scalar_t), kSize = 2 * kLanes;
  static void load(const scalar_t* p, Vec& lo, Vec& hi) {
    std::memcpy(&lo, p, sizeof(Vec));
    std::memcpy(&hi, p + kLanes, sizeof(Vec));
  }
  static void store(scalar_t* p, Vec lo, Vec hi) {
    std::memcpy(p, &lo, sizeof(Vec));
    std::memcpy(p + kLanes, &hi, sizeof(Vec));
  }
};

// bfloat16 is the top half of a float. A vector of 32-bit words holds two bfloat16s each:
// shifting the even ones up and masking the odd ones gives two float vectors with no
// shuffle or conversion, and the results fold back the same way.
template <>
struct Pack<c10::BFloat16> {
  using Vec = FloatVec;
  static constexpr int64_t kLanes = kFloatLanes, kSize = 2 * kLanes;
  static void load(const c10::BFloat16* p, Vec& even, Vec& odd) {
    BitsVec words;
    std::memcpy(&words, p, sizeof(words));
    even = (Vec)(words << 16);
    odd = (Vec)(words & 0xFFFF0000u);
  }
  // Round to nearest even, NaN to 0x7FC0: bit for bit what c10::BFloat16(float) does. The
  // result is the top half of the returned word.
  static BitsVec round(Vec v) {
    return v != v ? BitsVec{} + 0x7FC00000u : round_number(v);
  }
  static BitsVec round_number(Vec v) {  // round for a v that holds no NaN
    const BitsVec bits = (BitsVec)v;
    return bits + 0x7FFFu + ((bits >> 16) & 1u);
  }
  // round_number of both vectors, as words (even in the low half). On AVX2 and AVX-512 the
  // halves are regrouped first, the high ones and the low ones of both vectors into one
  // vector each: then one 16-bit carry per element rounds both vectors at once (9 vector
  // instructions for 11). The carry into the high half is low + lsb > 0x8000, the top bit
  // of the rounding average avg(low, 0x7FFE | lsb) = (low + (0x7FFE | lsb) + 1) >> 1.
  static BitsVec round_numbers(Vec even, Vec odd) {
#if KMIXUP_VEC_BYTES == 32
    const BitsVec e = (BitsVec)even, o = (BitsVec)odd;
    const __m256i high = _mm256_blend_epi16((__m256i)(e >> 16), (__m256i)o, 0xAA);
    const __m256i low = _mm256_blend_epi16((__m256i)e, (__m256i)(o << 16), 0xAA);
    const __m256i bias = _mm256_or_si256(_mm256_and_si256(high, _mm256_set1_epi16(1)),
                                         _mm256_set1_epi16(0x7FFE));
    return (BitsVec)_mm256_add_epi16(high, _mm256_srli_epi16(_mm256_avg_epu16(low, bias), 15));
#elif KMIXUP_VEC_BYTES == 64
    const BitsVec e = (BitsVec)even, o = (BitsVec)odd;
    constexpr __mmask32 kOddHalves = 0xAAAAAAAAu;
    const __m512i high = _mm512_mask_blend_epi16(kOddHalves, (__m512i)(e >> 16), (__m512i)o);
    const __m512i low = _mm512_mask_blend_epi16(kOddHalves, (__m512i)e, (__m512i)(o << 16));
    const __m512i bias = _mm512_or_si512(_mm512_and_si512(high, _mm512_set1_epi16(1)),
                                         _mm512_set1_epi16(0x7FFE));
    return (BitsVec)_mm512_add_epi16(high, _mm512_srli_epi16(_mm512_avg_epu16(low, bias), 15));
#else
    return (round_number(odd) & 0xFFFF0000u) | (round_number(even) >> 16);
#endif
  }
  // Whether a lane of a or of b is NaN, in one unordered comparison. A mix of finite rows
  // holds none, and one check for both vectors is cheaper than replacing NaN lane by lane:
  // without AVX512-BF16 the rounding is most of a bfloat16 mix's arithmetic (in-place mix
  // pass at 256x3x224x224, AVX2, one thread: 0.77-0.95 -> 0.72-0.88x a copy_).
  static bool any_nan(Vec a, Vec b) {
#if KMIXUP_VEC_BYTES == 64
    return _mm512_cmp_ps_mask((__m512)a, (__m512)b, _CMP_UNORD_Q) != 0;
#elif KMIXUP_VEC_BYTES == 32
    return _mm256_movemask_ps(_mm256_cmp_ps((__m256)a, (__m256)b, _CMP_UNORD_Q)) != 0;
#elif defined(__x86_64__)
    return _mm_movemask_ps(_mm_cmpunord_ps((__m128)a, (__m128)b)) != 0;
#else
    return true;  // ARM: every vector takes round()
#endif
  }
  static void store(c10::BFloat16* p, Vec even, Vec odd) {
    BitsVec words;
#if defined(KMIXUP_AVX512_BF16)
    // VCVTNE2PS2BF16 rounds to nearest even in one instruction where round_numbers takes 9
    // (in-place mix 4.4 -> 3.1 ms at 256x3x224x224), but it flushes subnormals and keeps a
    // NaN's payload: a vector holding either takes the integer path below, with c10's bits.
    constexpr int kNanOrSubnormal = 0x01 | 0x20 | 0x80;  // quiet NaN, subnormal, signalling NaN
    if (__builtin_expect((_mm512_fpclass_ps_mask((__m512)even, kNanOrSubnormal) |
                          _mm512_fpclass_ps_mask((__m512)odd, kNanOrSubnormal)) == 0, 1)) {
      // The instruction packs the 16 evens, then the 16 odds: interleave them into words.
      const __m512i interleave = _mm512_set_epi16(
          31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8,
          23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
      words = (BitsVec)_mm512_permutexvar_epi16(
          interleave, (__m512i)_mm512_cvtne2ps_pbh((__m512)odd, (__m512)even));
      std::memcpy(p, &words, sizeof(words));
      return;
    }
#endif
    if (__builtin_expect(any_nan(even, odd), 0)) {
      words = (round(odd) & 0xFFFF0000u) | (round(even) >> 16);
    } else {
      words = round_numbers(even, odd);
    }
    std::memcpy(p, &words, sizeof(words));
  }
};

// float16: F16C converts a vector at a time where the instruction set has it, x86-64's
// baseline with integer and float vector arithmetic, ARM in hardware. All round to nearest
// even like c10::Half (F16C keeps a NaN's payload where c10 writes 0x7E00).
template <>
struct Pack<c10::Half> {
  using Vec = FloatVec;
  static constexpr int64_t kLanes = kFloatLanes, kSize = 2 * kLanes;
#if KMIXUP_VEC_BYTES == 32
  static void load(const c10::Half* p, Vec& lo, Vec& hi) {
    lo = (Vec)_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    hi = (Vec)_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + kLanes)));
  }
  static void store(c10::Half* p, Vec lo, Vec hi) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p),
                     _mm256_cvtps_ph((__m256)lo, _MM_FROUND_TO_NEAREST_INT));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p + kLanes),
                     _mm256_cvtps_ph((__m256)hi, _MM_FROUND_TO_NEAREST_INT));
  }
#elif KMIXUP_VEC_BYTES == 64  // all-ones masks: GCC 12 warns on the unmasked forms
  static void load(const c10::Half* p, Vec& lo, Vec& hi) {
    lo = (Vec)_mm512_maskz_cvtph_ps(0xFFFF, _mm256_loadu_si256((const __m256i*)p));
    hi = (Vec)_mm512_maskz_cvtph_ps(0xFFFF, _mm256_loadu_si256((const __m256i*)(p + kLanes)));
  }
  static void store(c10::Half* p, Vec lo, Vec hi) {
    _mm256_storeu_si256((__m256i*)p,
                        _mm512_maskz_cvtps_ph(0xFFFF, (__m512)lo, _MM_FROUND_TO_NEAREST_INT));
    _mm256_storeu_si256((__m256i*)(p + kLanes),
                        _mm512_maskz_cvtps_ph(0xFFFF, (__m512)hi, _MM_FROUND_TO_NEAREST_INT));
  }
#elif defined(__x86_64__)
  // SSE2 has no float16 conversion, and c10's element by element made float16 rows 20x
  // float ones: its branch-free conversions here run a vector at a time (2.8x faster), with
  // c10's bits. As for bfloat16, a vector of 32-bit words holds an even and an odd float16.
  static Vec widen(BitsVec half) {  // the float16 in the low half of each word
    const BitsVec w = half << 16, two_w = w + w;
    const Vec normal = (Vec)((two_w >> 4) + (0xE0u << 23)) * (Vec{} + 0x1.0p-112f);
    const Vec subnormal = (Vec)((two_w >> 17) | (126u << 23)) - (Vec{} + 0.5f);
    const BitsVec magnitude =
        two_w < (BitsVec{} + (1u << 27)) ? (BitsVec)subnormal : (BitsVec)normal;
    return (Vec)((w & 0x80000000u) | magnitude);
  }
  static BitsVec narrow(Vec f) {  // the float16 in the low half of each word
    const BitsVec w = (BitsVec)f, shl1_w = w + w;
    const Vec scaled = (Vec)(w & 0x7FFFFFFFu) * (Vec{} + 0x1.0p+112f) * (Vec{} + 0x1.0p-110f);
    const BitsVec bias = shl1_w & 0xFF000000u;
    const BitsVec min_bias = BitsVec{} + 0x71000000u;
    const BitsVec bits =
        (BitsVec)((Vec)(((bias < min_bias ? min_bias : bias) >> 1) + 0x07800000u) + scaled);
    const BitsVec nonsign = ((bits >> 13) & 0x7C00u) + (bits & 0x0FFFu);
    const BitsVec nan = BitsVec{} + 0x7E00u;
    return ((w & 0x80000000u) >> 16) |
           (shl1_w > (BitsVec{} + 0xFF000000u) ? nan : nonsign);
  }
  static void load(const c10::Half* p, Vec& even, Vec& odd) {
    BitsVec words;
    std::memcpy(&words, p, sizeof(words));
    even = widen(words & 0xFFFFu);
    odd = widen(words >> 16);
  }
  static void store(c10::Half* p, Vec even, Vec odd) {
    const BitsVec words = narrow(even) | (narrow(odd) << 16);
    std::memcpy(p, &words, sizeof(words));
  }
#else  // ARM converts float16 in hardware, element by element
  static void load(const c10::Half* p, Vec& lo, Vec& hi) {
    for (int64_t l = 0; l < kLanes; ++l) {
      lo[l] = static_cast<float>(p[l]);
      hi[l] = static_cast<float>(p[kLanes + l]);
    }
  }
  static void store(c10::Half* p, Vec lo, Vec hi) {
    for (int64_t l = 0; l < kLanes; ++l) {
      p[l] = static_cast<c10::Half>(lo[l]);
      p[kLanes + l] = static_cast<c10::Half>(hi[l]);
    }
  }
#endif
};

// Starts loading, about 8 KB ahead into L2, the cache line of b that the loop step at
// element j (kStep <= 64 bytes wide) will read then. For a single pair of 2-byte rows:
// widening and rounding them costs so much arithmetic per byte that the core stops keeping
// enough loads in flight, and a pass takes the sum of its memory time and its arithmetic
// time (256x3x224x224 bfloat16, one thread: distances 5.0 -> 3.0 ms, in-place mix 7.0 ->
// 4.5 ms). b is the partner row: in cycle order the only one that comes from memory. Float
// rows keep up without it, and in runs of pairs, where every row streams from memory, the
// extra instructions only slow the loops down. (One prefetch per call: GCC 12 drops a pair
// of them under one condition.)
template <int64_t kStep, typename scalar_t>
inline void prefetch_ahead(const scalar_t* b, int64_t j, int64_t n) {
  if constexpr (sizeof(scalar_t) == 2) {
    constexpr int64_t kAhead = 8192 / sizeof(scalar_t), kLine = 64 / sizeof(scalar_t);
    static_assert(kStep <= kLine);
    if (j + kAhead < n && (kStep == kLine || j % kLine == 0)) {
      __builtin_prefetch(b + j + kAhead, 0, 2);
    }
  }
}

// sum((rows[t] - rows[t + 1])^2) over n elements into dist[t], for G consecutive pairs of a
// cycle in one sweep (G = 1: a single pair): each row is loaded (and widened) once instead
// of twice, and the second read from L2 is gone. Differences and squares are taken in
// acc_t everywhere (SIMD body and scalar tail alike), so a square that overflows float is
// inf wherever it falls. Four independent vector accumulators per pair, flushed into a
// double every kFlush elements, so the error stays at float rounding even for rows of
// 1e6+; they do not depend on G, so neither do the bits.
template <int G, typename scalar_t>
void sq_dist_chain(const scalar_t* const* rows, int64_t n, double* dist) {
  using P = Pack<scalar_t>;
  using Vec = typename P::Vec;
  constexpr int64_t kStep = 2 * P::kSize, kFlush = 4096;
  double total[G] = {};
  int64_t j = 0;
  while (j + kStep <= n) {
    const int64_t stop = std::min(n, j + kFlush);
    Vec acc[G][4] = {};
    for (; j + kStep <= stop; j += kStep) {
      for (int64_t k = 0; k < 2; ++k) {
        if constexpr (G == 1) prefetch_ahead<P::kSize>(rows[1], j + k * P::kSize, n);
        Vec a_lo, a_hi;
        P::load(rows[0] + j + k * P::kSize, a_lo, a_hi);
        for (int t = 0; t < G; ++t) {
          Vec b_lo, b_hi;
          P::load(rows[t + 1] + j + k * P::kSize, b_lo, b_hi);
          const auto diff_lo = a_lo - b_lo, diff_hi = a_hi - b_hi;
          acc[t][2 * k] += diff_lo * diff_lo;
          acc[t][2 * k + 1] += diff_hi * diff_hi;
          a_lo = b_lo;
          a_hi = b_hi;
        }
      }
    }
    for (int t = 0; t < G; ++t) {
      const Vec sum = (acc[t][0] + acc[t][1]) + (acc[t][2] + acc[t][3]);
      for (int64_t l = 0; l < P::kLanes; ++l) total[t] += sum[l];
    }
  }
  for (; j < n; ++j) {
    auto a = static_cast<acc_t<scalar_t>>(rows[0][j]);
    for (int t = 0; t < G; ++t) {
      const auto b = static_cast<acc_t<scalar_t>>(rows[t + 1][j]);
      const acc_t<scalar_t> diff = a - b;
      total[t] += diff * diff;
      a = b;
    }
  }
  for (int t = 0; t < G; ++t) dist[t] = total[t];
}

// out[t] = wa[t] * rows[t] + wb[t] * rows[t + 1] over n elements, in acc_t, for G
// consecutive pairs of a cycle in one sweep (G = 1: a single pair): each row is loaded (and
// widened) once instead of twice, and the second read from L2 is gone (256x3x224x224 in
// place, one thread, in a standalone loop: float32 11.5 -> 7.9 ms, float16 6.5 -> 4.4 ms).
// The same operations for every G and instruction set (no fused multiply-add), so every
// CPU writes the same bits. out[t] may alias rows[t]: a row is read before it is written,
// chunk by chunk. rows[G] may be rows[0] (a whole cycle): its values are then the ones
// read before out[0] overwrote them.
template <int G, typename scalar_t>
void mix_chain(const scalar_t* const* rows, const acc_t<scalar_t>* wa,
               const acc_t<scalar_t>* wb, scalar_t* const* out, int64_t n) {
#if defined(__clang__)
#pragma clang fp contract(off)  // see KMIXUP_TARGET_BEGIN in rows.h
#endif
  using P = Pack<scalar_t>;
  using Vec = typename P::Vec;
  const bool closes = rows[G] == rows[0];
  // The pointers in locals: a store through out[t] may alias the arrays they came in, and
  // the compiler would otherwise load them again at every step.
  const scalar_t* row[G + 1];
  scalar_t* dst[G];
  Vec va[G], vb[G];
  for (int t = 0; t < G; ++t) {
    row[t] = rows[t];
    dst[t] = out[t];
    va[t] = wa[t] - Vec{};
    vb[t] = wb[t] - Vec{};
  }
  row[G] = rows[G];
  const auto mix_pack = [&](int64_t j) {
    Vec a_lo, a_hi;
    P::load(row[0] + j, a_lo, a_hi);
    const Vec first_lo = a_lo, first_hi = a_hi;
    for (int t = 0; t < G; ++t) {
      Vec b_lo = first_lo, b_hi = first_hi;
      if (t + 1 < G || !closes) P::load(row[t + 1] + j, b_lo, b_hi);
      P::store(dst[t] + j, va[t] * a_lo + vb[t] * b_lo, va[t] * a_hi + vb[t] * b_hi);
      a_lo = b_lo;
      a_hi = b_hi;
    }
  };
  // A whole cache line per step where a pack is shorter (2-byte rows on AVX2, every row on
  // SSE2): one prefetch and one loop test per line, not one per pack.
  constexpr int64_t kStep = std::max<int64_t>(1, 64 / (P::kSize * sizeof(scalar_t))) * P::kSize;
  int64_t j = 0;
  for (; j + kStep <= n; j += kStep) {
    if constexpr (G == 1) prefetch_ahead<kStep>(row[1], j, n);
    for (int64_t k = 0; k < kStep; k += P::kSize) mix_pack(j + k);
  }
  for (; j + P::kSize <= n; j += P::kSize) mix_pack(j);
  for (; j < n; ++j) {
    const acc_t<scalar_t> first = static_cast<acc_t<scalar_t>>(row[0][j]);
    acc_t<scalar_t> a = first;
    for (int t = 0; t < G; ++t) {
      const auto b = t + 1 < G || !closes ? static_cast<acc_t<scalar_t>>(row[t + 1][j]) : first;
      dst[t][j] = static_cast<scalar_t>(wa[t] * a + wb[t] * b);
      a = b;
    }
  }
}
