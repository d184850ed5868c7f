// Row loops of the CPU kernels: one sample's dense block at a time, in SIMD vectors.
// Half and bfloat16 are widened to float for the arithmetic, a vector at a time.
#pragma once

#include <torch/csrc/stable/ops.h>
#include <torch/headeronly/util/BFloat16.h>
#include <torch/headeronly/util/Half.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <type_traits>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif
#if defined(__x86_64__)
#include <immintrin.h>
#elif defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "checks.h"

namespace kmixup::cpu {

// float for float/half/bfloat16 rows, double for double rows.
template <typename scalar_t>
using acc_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;

// 16-byte SIMD registers (SSE2 / NEON) through the GCC/Clang vector extension. at::vec is
// plain scalar loops unless the extension is compiled once per CPU capability, and scalar
// loops do not vectorise reliably under the flags torch passes (-fwrapv).
template <typename acc>
struct Simd {
  typedef acc type __attribute__((vector_size(16)));
  static constexpr int64_t kWidth = 16 / sizeof(acc);
};

// bfloat16 is the top half of a float, so whole vectors convert with integer shifts;
// element-wise c10::BFloat16 conversions made bfloat16 rows ~1.5x slower than float ones.
typedef uint16_t U16x4 __attribute__((vector_size(8)));
typedef uint16_t U16x8 __attribute__((vector_size(16)));
typedef uint32_t U32x4 __attribute__((vector_size(16)));
typedef int32_t I32x4 __attribute__((vector_size(16)));

template <typename scalar_t>
inline typename Simd<acc_t<scalar_t>>::type load_simd(const scalar_t* p) {
  using S = Simd<acc_t<scalar_t>>;
  typename S::type v;
  if constexpr (std::is_same_v<scalar_t, acc_t<scalar_t>>) {
    std::memcpy(&v, p, sizeof(v));
  } else {
    static_assert(std::is_same_v<scalar_t, c10::BFloat16>);
    U16x4 half_bits;
    std::memcpy(&half_bits, p, sizeof(half_bits));
    // Interleaving with zeros puts each value in the top half of a 32-bit lane (little
    // endian): one unpack instruction, where a widening conversion is several.
    const U16x4 zero = {};
    v = (typename S::type)__builtin_shufflevector(zero, half_bits, 0, 4, 1, 5, 2, 6, 3, 7);
  }
  return v;
}

template <typename scalar_t>
inline void store_simd(scalar_t* p, typename Simd<acc_t<scalar_t>>::type v) {
  if constexpr (std::is_same_v<scalar_t, acc_t<scalar_t>>) {
    std::memcpy(p, &v, sizeof(v));
  } else {
    static_assert(std::is_same_v<scalar_t, c10::BFloat16>);
    // Round to nearest even, NaN to 0x7FC0: bit for bit what c10::BFloat16(float) does.
    U32x4 bits;
    std::memcpy(&bits, &v, sizeof(bits));
    const U32x4 rounded = bits + 0x7FFFu + ((bits >> 16) & 1u);
    const U32x4 is_nan = (U32x4)(I32x4)(v != v);
    // The result sits in the top half; an arithmetic shift sign-extends it, so the
    // saturating 32-to-16-bit pack of SSE2 keeps its bits exactly.
    const I32x4 out = (I32x4)((is_nan & 0x7FC00000u) | (~is_nan & rounded)) >> 16;
#if defined(__SSE2__)
    _mm_storel_epi64(reinterpret_cast<__m128i*>(p), _mm_packs_epi32((__m128i)out, (__m128i)out));
#else
    const U16x8 halves = (U16x8)out;
    const U16x4 half_bits = __builtin_shufflevector(halves, halves, 0, 2, 4, 6);
    std::memcpy(p, &half_bits, sizeof(half_bits));
#endif
  }
}

// float16 rows are widened into float blocks and narrowed back: x86-64's baseline has no
// float16 conversion instruction, and element-by-element conversions made float16 rows
// 20x slower than float32 ones. F16C (every x86 CPU with AVX) converts 8 at a time; it is
// chosen at run time, so the extension still runs on a CPU without it. Both round to
// nearest even like c10::Half (F16C keeps a NaN's payload where c10 writes 0x7E00).
using HalfToFloat = void (*)(const c10::Half*, float*, int64_t);
using FloatToHalf = void (*)(const float*, c10::Half*, int64_t);

inline void half_to_float_scalar(const c10::Half* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<float>(src[i]);
}
inline void float_to_half_scalar(const float* src, c10::Half* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<c10::Half>(src[i]);
}

#if defined(__x86_64__)
__attribute__((target("avx,f16c"))) inline void half_to_float_f16c(const c10::Half* src,
                                                                    float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i bits = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(bits));
  }
  half_to_float_scalar(src + i, dst + i, n - i);
}
__attribute__((target("avx,f16c"))) inline void float_to_half_f16c(const float* src,
                                                                    c10::Half* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i bits = _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), bits);
  }
  float_to_half_scalar(src + i, dst + i, n - i);
}
inline bool has_f16c() {
  static const bool supported = __builtin_cpu_supports("f16c") && __builtin_cpu_supports("avx");
  return supported;
}
inline void half_to_float(const c10::Half* src, float* dst, int64_t n) {
  (has_f16c() ? half_to_float_f16c : half_to_float_scalar)(src, dst, n);
}
inline void float_to_half(const float* src, c10::Half* dst, int64_t n) {
  (has_f16c() ? float_to_half_f16c : float_to_half_scalar)(src, dst, n);
}
#else
inline void half_to_float(const c10::Half* src, float* dst, int64_t n) {
  half_to_float_scalar(src, dst, n);
}
inline void float_to_half(const float* src, c10::Half* dst, int64_t n) {
  float_to_half_scalar(src, dst, n);
}
#endif

constexpr int64_t kHalfBlock = 512;  // float16 elements widened at a time (2 KiB of floats)

// sum((a - b)^2) over n elements. Differences and squares are taken in acc_t everywhere
// (SIMD body and scalar tail alike), so a square that overflows float is inf wherever it
// falls. Four independent vector accumulators, flushed into a double every kFlush elements,
// so the error stays at float rounding even for rows of 1e6+.
template <typename scalar_t>
double row_sq_dist(const scalar_t* a, const scalar_t* b, int64_t n) {
  using S = Simd<acc_t<scalar_t>>;
  constexpr int64_t kUnroll = 4, kStep = kUnroll * S::kWidth, kFlush = 4096;
  double total = 0.0;
  int64_t j = 0;
  while (j + kStep <= n) {
    const int64_t stop = std::min(n, j + kFlush);
    typename S::type acc[kUnroll] = {};
    for (; j + kStep <= stop; j += kStep) {
      for (int64_t k = 0; k < kUnroll; ++k) {
        const auto diff = load_simd(a + j + k * S::kWidth) - load_simd(b + j + k * S::kWidth);
        acc[k] += diff * diff;
      }
    }
    for (const auto& v : acc) {
      for (int64_t l = 0; l < S::kWidth; ++l) total += v[l];
    }
  }
  for (; j < n; ++j) {
    const acc_t<scalar_t> diff =
        static_cast<acc_t<scalar_t>>(a[j]) - static_cast<acc_t<scalar_t>>(b[j]);
    total += diff * diff;
  }
  return total;
}

// out = wa * a + wb * b over n elements, computed in acc_t. (1, 0) and (0, 1) are exact
// copies, so a row that is not mixed never sees its partner's values (NaN included).
// out may alias a (in-place mixing).
template <typename scalar_t>
void mix_row(const scalar_t* a, acc_t<scalar_t> wa, const scalar_t* b, acc_t<scalar_t> wb,
             scalar_t* out, int64_t n) {
  if (wa == 1 && wb == 0) {
    if (out != a) std::memcpy(out, a, n * sizeof(scalar_t));
    return;
  }
  if (wa == 0 && wb == 1) {
    if (out != b) std::memcpy(out, b, n * sizeof(scalar_t));
    return;
  }
  using S = Simd<acc_t<scalar_t>>;
  const typename S::type va = wa - typename S::type{}, vb = wb - typename S::type{};
  int64_t j = 0;
  for (; j + S::kWidth <= n; j += S::kWidth) {
    store_simd(out + j, va * load_simd(a + j) + vb * load_simd(b + j));
  }
  for (; j < n; ++j) {
    out[j] = static_cast<scalar_t>(wa * static_cast<acc_t<scalar_t>>(a[j]) +
                                   wb * static_cast<acc_t<scalar_t>>(b[j]));
  }
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// A fresh batch-sized output is fresh pages from the OS, and faulting them in 4 KiB at a
// time costs more than the mix itself (154 MB: ~130 ms of faults against ~30 ms of
// copying). Where transparent huge pages are opt-in, ask for them: 2 MiB pages fault in
// 512 times less often. Advisory: nothing changes where the kernel declines.
inline Tensor empty_rows_like(const Tensor& x) {
  Tensor out = is_contiguous_in(x, row_memory_format(x))
                   ? torch::stable::empty_like(x)  // keeps x's strides, also for an empty batch
                   : empty_rows(x, x.scalar_type());
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t{1} << 21;
  const auto begin = reinterpret_cast<uintptr_t>(out.data_ptr());
  const uintptr_t end = begin + out.numel() * out.element_size();
  const uintptr_t first = (begin + kHuge - 1) & ~(kHuge - 1), last = end & ~(kHuge - 1);
  if (last > first) madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
#endif
  return out;
}

// float16 rows: the float loops on widened blocks (see half_to_float).
template <>
inline double row_sq_dist(const c10::Half* a, const c10::Half* b, int64_t n) {
  float fa[kHalfBlock], fb[kHalfBlock];
  double total = 0.0;
  for (int64_t j = 0; j < n; j += kHalfBlock) {
    const int64_t m = std::min(kHalfBlock, n - j);
    half_to_float(a + j, fa, m);
    half_to_float(b + j, fb, m);
    total += row_sq_dist(fa, fb, m);
  }
  return total;
}

template <>
inline void mix_row(const c10::Half* a, float wa, const c10::Half* b, float wb, c10::Half* out,
                    int64_t n) {
  if ((wa == 1 && wb == 0) || (wa == 0 && wb == 1)) {  // exact copies, no conversion
    const c10::Half* src = wa == 1 ? a : b;
    if (out != src) std::memcpy(out, src, n * sizeof(c10::Half));
    return;
  }
  float fa[kHalfBlock], fb[kHalfBlock];
  for (int64_t j = 0; j < n; j += kHalfBlock) {
    const int64_t m = std::min(kHalfBlock, n - j);
    half_to_float(a + j, fa, m);
    half_to_float(b + j, fb, m);
    mix_row(fa, wa, fb, wb, fa, m);
    float_to_half(fa, out + j, m);
  }
}

// Rows per parallel_for task so that each task moves at least ~64K elements.
inline int64_t rows_per_task(int64_t row_len) {
  constexpr int64_t kGrainElements = 1 << 16;
  return std::max<int64_t>(1, kGrainElements / std::max<int64_t>(1, row_len));
}

// The rows of a batch in the cycle order of an index vector `other` (row i pairs with
// other[i]): i, other[i], other[other[i]], ... until the cycle closes, cycle after cycle.
// Walked in that order, each row's partner is the next row visited, so every pass over the
// pairs reads each row once (the second read hits the cache), and mixing can overwrite the
// input: out[i] needs x[other[i]], the next row, not yet written. The positions are cut
// into contiguous tasks run in parallel.
struct CycleWalk {
  std::vector<int64_t> order;       // order[p]: the row visited at position p
  std::vector<int64_t> next;        // next[p]: the position of order[p]'s partner
  std::vector<int64_t> task_begin;  // task t walks positions [task_begin[t], task_begin[t+1])
  // Positions whose row must be copied before an in-place pass: the first of each task and
  // of each cycle, which an earlier-running or later-visited row still reads as a partner.
  std::vector<int64_t> saved;
  bool is_permutation = true;       // false: some row is the partner of two rows
};

// other's values must lie in [0, batch).
inline CycleWalk cycle_walk(const int64_t* other, int64_t batch, int64_t row_len) {
  CycleWalk walk;
  walk.order.reserve(batch);
  walk.next.resize(batch);
  std::vector<char> visited(batch, 0);
  std::vector<int64_t> cycle_begin;
  for (int64_t start = 0; start < batch; ++start) {
    if (visited[start]) continue;
    const int64_t first = static_cast<int64_t>(walk.order.size());
    cycle_begin.push_back(first);
    int64_t row = start;
    while (!visited[row]) {
      visited[row] = 1;
      walk.order.push_back(row);
      row = other[row];
    }
    // A walk from an unvisited row that does not come back to it has met a row that two
    // rows point at.
    if (row != start) {
      walk.is_permutation = false;
      return walk;
    }
    const int64_t last = static_cast<int64_t>(walk.order.size()) - 1;
    for (int64_t p = first; p < last; ++p) walk.next[p] = p + 1;
    walk.next[last] = first;
  }
  // A few tasks per thread balance the load; more would only add rows to copy aside.
  const int64_t tasks = std::min(ceil_div(batch, rows_per_task(row_len)),
                                 int64_t{4} * torch::stable::get_num_threads());
  for (int64_t t = 0; t < tasks; ++t) walk.task_begin.push_back(t * batch / tasks);
  walk.task_begin.push_back(batch);
  std::merge(walk.task_begin.begin(), walk.task_begin.end() - 1, cycle_begin.begin(),
             cycle_begin.end(), std::back_inserter(walk.saved));
  walk.saved.erase(std::unique(walk.saved.begin(), walk.saved.end()), walk.saved.end());
  return walk;
}

// Calls body(i, other[i]) for every row, in parallel: along the cycles of `walk` when it
// has them (each partner then still cached from the previous step), else in row order.
template <typename Body>
void for_each_pair(const CycleWalk& walk, const int64_t* other, int64_t batch, int64_t row_len,
                   const Body& body) {
  if (!walk.is_permutation) {
    torch::stable::parallel_for(0, batch, rows_per_task(row_len), [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) body(i, other[i]);
    });
    return;
  }
  const int64_t tasks = static_cast<int64_t>(walk.task_begin.size()) - 1;
  torch::stable::parallel_for(0, tasks, 1, [&](int64_t t_begin, int64_t t_end) {
    for (int64_t p = walk.task_begin[t_begin]; p < walk.task_begin[t_end]; ++p) {
      body(walk.order[p], walk.order[walk.next[p]]);
    }
  });
}

// out[i] = k[i] * x[i] + (1 - k[m]) * x[j] for every row of the row-dense x, j = other[i],
// with k = coeff in acc_t: m = i for the interpolation (other = perm), m = j for its adjoint
// (other = the inverse permutation). out (row-dense, x's layout) may be x itself.
inline void mix_batch(const Tensor& x_rows, const int64_t* other, const Tensor& coeff,
                      bool adjoint, Tensor out) {
  const int64_t batch = x_rows.size(0), row = row_length(x_rows);
  const bool in_place = out.data_ptr() == x_rows.data_ptr();
  const CycleWalk walk = cycle_walk(other, batch, row);
  if (!walk.is_permutation && in_place) {
    // Without cycles there is no safe order: mix into a copy, then write it back.
    const Tensor mixed = torch::stable::empty_like(x_rows);
    mix_batch(x_rows, other, coeff, adjoint, mixed);
    torch::stable::copy_(out, mixed);
    return;
  }
  KMIXUP_DISPATCH_FLOATING(x_rows.scalar_type(), "kmixup_mix_batch", [&] {
    using weight_t = acc_t<scalar_t>;
    const Tensor k_t = contiguous_as(coeff, acc_dtype(x_rows));
    const weight_t* k = k_t.const_data_ptr<weight_t>();
    const scalar_t* src = x_rows.const_data_ptr<scalar_t>();
    scalar_t* dst = out.mutable_data_ptr<scalar_t>();
    const auto mix = [&](int64_t i, const scalar_t* partner_row) {
      const int64_t j = other[i];
      mix_row(src + i * row, k[i], partner_row, weight_t(1) - k[adjoint ? j : i],
              dst + i * row, row);
    };
    if (!in_place) {
      for_each_pair(walk, other, batch, row,
                    [&](int64_t i, int64_t j) { mix(i, src + j * row); });
      return;
    }
    // The saved rows are copied first; saved_slot[p] is position p's slot, or -1.
    const int64_t saved = static_cast<int64_t>(walk.saved.size());
    std::vector<scalar_t> copies(saved * row);
    std::vector<int64_t> saved_slot(batch, -1);
    for (int64_t slot = 0; slot < saved; ++slot) saved_slot[walk.saved[slot]] = slot;
    torch::stable::parallel_for(0, saved, rows_per_task(row), [&](int64_t begin, int64_t end) {
      for (int64_t slot = begin; slot < end; ++slot) {
        std::memcpy(copies.data() + slot * row, src + walk.order[walk.saved[slot]] * row,
                    row * sizeof(scalar_t));
      }
    });
    const int64_t tasks = static_cast<int64_t>(walk.task_begin.size()) - 1;
    torch::stable::parallel_for(0, tasks, 1, [&](int64_t t_begin, int64_t t_end) {
      for (int64_t p = walk.task_begin[t_begin]; p < walk.task_begin[t_end]; ++p) {
        const int64_t q = walk.next[p];
        mix(walk.order[p], saved_slot[q] >= 0 ? copies.data() + saved_slot[q] * row
                                              : src + walk.order[q] * row);
      }
    });
  });
}

}  // namespace kmixup::cpu
