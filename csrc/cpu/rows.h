// Row loops of the CPU kernels: one sample's dense block at a time, in SIMD vectors.
// Half and bfloat16 are widened to float for the arithmetic, a vector at a time.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <type_traits>
#include <vector>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "checks.h"

// Every row op takes float, double, half and bfloat16.
#define KMIXUP_DISPATCH_FLOATING(TYPE, NAME, ...) \
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, TYPE, NAME, __VA_ARGS__)

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

typedef float F32x4 __attribute__((vector_size(16)));

inline F32x4 as_float(U32x4 bits) { return (F32x4)bits; }
inline U32x4 as_bits(F32x4 v) { return (U32x4)v; }
inline U32x4 select(U32x4 mask, U32x4 a, U32x4 b) { return (mask & a) | (~mask & b); }

// The low 16 bits of each lane, stored as 4 consecutive uint16.
inline void store_low_halves(void* p, U32x4 lanes) {
  // Sign-extending the low half makes SSE2's saturating 32-to-16-bit pack keep its bits.
  const I32x4 extended = (I32x4)(lanes << 16) >> 16;
#if defined(__SSE2__)
  _mm_storel_epi64(reinterpret_cast<__m128i*>(p),
                   _mm_packs_epi32((__m128i)extended, (__m128i)extended));
#else
  const U16x8 halves = (U16x8)extended;
  const U16x4 low = __builtin_shufflevector(halves, halves, 0, 2, 4, 6);
  std::memcpy(p, &low, sizeof(low));
#endif
}

// float16 has no vector conversion in baseline x86-64 (F16C is an extension), and one
// element at a time made float16 rows 20x slower than float32 ones. These are the
// branch-free IEEE conversions (round to nearest even; subnormals exact; NaN stays NaN),
// written on 4 lanes with integer and float vector operations.
// In: each half's bits in the top 16 bits of a lane.
inline F32x4 half_to_float(U32x4 w) {
  const U32x4 sign = w & 0x80000000u;
  const U32x4 two_w = w + w;  // exponent and mantissa at the top, sign dropped
  // Normal numbers (and inf/NaN): move exponent and mantissa into float position, rebias
  // by 0xE0 so that half's max exponent lands on float's, then scale back by 2^-112.
  const F32x4 normal = as_float((two_w >> 4) + (0xE0u << 23)) * 0x1.0p-112f;
  // Subnormals: the mantissa placed in [0.5, 1) scaled so that subtracting 0.5 is exact.
  const F32x4 subnormal = as_float((two_w >> 17) | (126u << 23)) - 0.5f;
  const U32x4 is_subnormal = (U32x4)(two_w < (1u << 27));
  return as_float(sign | select(is_subnormal, as_bits(subnormal), as_bits(normal)));
}

// Out: each half's bits in the low 16 bits of a lane.
inline U32x4 float_to_half(F32x4 v) {
  const U32x4 w = as_bits(v);
  const U32x4 shl1_w = w + w;
  const U32x4 sign = w & 0x80000000u;
  // Scaling up then down rounds the mantissa to half's precision in the float unit itself
  // (overflow to inf included); adding a power of two at the right exponent then puts
  // half's exponent and mantissa bits where they can be read off.
  F32x4 base = as_float(w & 0x7FFFFFFFu) * 0x1.0p+112f * 0x1.0p-110f;
  U32x4 bias = shl1_w & 0xFF000000u;
  bias = select((U32x4)(bias < 0x71000000u), U32x4{} + 0x71000000u, bias);
  base = as_float((bias >> 1) + 0x07800000u) + base;
  const U32x4 bits = as_bits(base);
  const U32x4 nonsign = ((bits >> 13) & 0x7C00u) + (bits & 0x0FFFu);
  const U32x4 is_nan = (U32x4)(shl1_w > 0xFF000000u);
  return (sign >> 16) | select(is_nan, U32x4{} + 0x7E00u, nonsign);
}

template <typename scalar_t>
inline typename Simd<acc_t<scalar_t>>::type load_simd(const scalar_t* p) {
  using S = Simd<acc_t<scalar_t>>;
  typename S::type v;
  if constexpr (std::is_same_v<scalar_t, acc_t<scalar_t>>) {
    std::memcpy(&v, p, sizeof(v));
  } else if constexpr (std::is_same_v<scalar_t, c10::BFloat16>) {
    U16x4 half_bits;
    std::memcpy(&half_bits, p, sizeof(half_bits));
    // Interleaving with zeros puts each value in the top half of a 32-bit lane (little
    // endian): one unpack instruction, where a widening conversion is several.
    const U16x4 zero = {};
    v = (typename S::type)__builtin_shufflevector(zero, half_bits, 0, 4, 1, 5, 2, 6, 3, 7);
  } else {
    static_assert(std::is_same_v<scalar_t, c10::Half>);
    U16x4 half_bits;
    std::memcpy(&half_bits, p, sizeof(half_bits));
    const U16x4 zero = {};
    v = half_to_float((U32x4)__builtin_shufflevector(zero, half_bits, 0, 4, 1, 5, 2, 6, 3, 7));
  }
  return v;
}

template <typename scalar_t>
inline void store_simd(scalar_t* p, typename Simd<acc_t<scalar_t>>::type v) {
  if constexpr (std::is_same_v<scalar_t, acc_t<scalar_t>>) {
    std::memcpy(p, &v, sizeof(v));
  } else if constexpr (std::is_same_v<scalar_t, c10::BFloat16>) {
    // Round to nearest even, NaN to 0x7FC0: bit for bit what c10::BFloat16(float) does.
    U32x4 bits;
    std::memcpy(&bits, &v, sizeof(bits));
    const U32x4 rounded = bits + 0x7FFFu + ((bits >> 16) & 1u);
    const U32x4 is_nan = (U32x4)(I32x4)(v != v);
    // The result sits in the top half; an arithmetic shift sign-extends it, so the
    // saturating 32-to-16-bit pack of SSE2 keeps its bits exactly.
    const I32x4 out = (I32x4)((is_nan & 0x7FC00000u) | (~is_nan & rounded)) >> 16;
    store_low_halves(p, (U32x4)out);
  } else {
    static_assert(std::is_same_v<scalar_t, c10::Half>);
    store_low_halves(p, float_to_half(v));
  }
}

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

// Rows per at::parallel_for task so that each task moves at least ~64K elements.
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
                                 int64_t{4} * at::get_num_threads());
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
    at::parallel_for(0, batch, rows_per_task(row_len), [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) body(i, other[i]);
    });
    return;
  }
  const int64_t tasks = static_cast<int64_t>(walk.task_begin.size()) - 1;
  at::parallel_for(0, tasks, 1, [&](int64_t t_begin, int64_t t_end) {
    for (int64_t p = walk.task_begin[t_begin]; p < walk.task_begin[t_end]; ++p) {
      body(walk.order[p], walk.order[walk.next[p]]);
    }
  });
}

// out[i] = k[i] * x[i] + (1 - k[m]) * x[j] for every row of the row-dense x, j = other[i],
// with k = coeff in acc_t: m = i for the interpolation (other = perm), m = j for its adjoint
// (other = the inverse permutation). out (row-dense, x's layout) may be x itself.
inline void mix_batch(const at::Tensor& x_rows, const int64_t* other, const at::Tensor& coeff,
                      bool adjoint, const at::Tensor& out) {
  const int64_t batch = x_rows.size(0), row = row_length(x_rows);
  const bool in_place = out.data_ptr() == x_rows.data_ptr();
  const CycleWalk walk = cycle_walk(other, batch, row);
  if (!walk.is_permutation && in_place) {
    // Without cycles there is no safe order: mix into a copy, then write it back.
    const at::Tensor mixed = at::empty_like(x_rows);
    mix_batch(x_rows, other, coeff, adjoint, mixed);
    out.copy_(mixed);
    return;
  }
  KMIXUP_DISPATCH_FLOATING(x_rows.scalar_type(), "kmixup_mix_batch", [&] {
    using weight_t = acc_t<scalar_t>;
    const at::Tensor k_t = coeff.to(c10::CppTypeToScalarType<weight_t>::value).contiguous();
    const weight_t* k = k_t.const_data_ptr<weight_t>();
    const scalar_t* src = x_rows.const_data_ptr<scalar_t>();
    scalar_t* dst = out.data_ptr<scalar_t>();
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
    at::parallel_for(0, saved, rows_per_task(row), [&](int64_t begin, int64_t end) {
      for (int64_t slot = begin; slot < end; ++slot) {
        std::memcpy(copies.data() + slot * row, src + walk.order[walk.saved[slot]] * row,
                    row * sizeof(scalar_t));
      }
    });
    const int64_t tasks = static_cast<int64_t>(walk.task_begin.size()) - 1;
    at::parallel_for(0, tasks, 1, [&](int64_t t_begin, int64_t t_end) {
      for (int64_t p = walk.task_begin[t_begin]; p < walk.task_begin[t_end]; ++p) {
        const int64_t q = walk.next[p];
        mix(walk.order[p], saved_slot[q] >= 0 ? copies.data() + saved_slot[q] * row
                                              : src + walk.order[q] * row);
      }
    });
  });
}

}  // namespace kmixup::cpu
