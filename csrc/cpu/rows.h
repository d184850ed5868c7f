// Row loops of the CPU kernels: one sample's dense block at a time, in SIMD vectors.
// Half and bfloat16 are widened to float for the arithmetic, a vector at a time.
#pragma once

#include <torch/csrc/stable/ops.h>
#include <torch/headeronly/util/BFloat16.h>
#include <torch/headeronly/util/Half.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "checks.h"

namespace kmixup::cpu {

// float for float/half/bfloat16 rows, double for double rows.
template <typename scalar_t>
using acc_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;

// The row loops come in one copy per instruction set (row_loops.h), picked at run time:
// torch builds extensions for the baseline only, and with its 16-byte vectors a bfloat16 or
// float16 row costs more arithmetic per byte than a float one.
namespace baseline {  // SSE2 on x86-64, NEON on ARM
#define KMIXUP_VEC_BYTES 16
#include "cpu/row_loops.h"
#undef KMIXUP_VEC_BYTES
}  // namespace baseline

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define KMIXUP_PRAGMA(text) _Pragma(#text)
// AVX-512 brings fused multiply-add, which the compiler would use for a * x + b * y: the
// rounding would then differ from the other instruction sets, so contraction is off.
#if defined(__clang__)
#define KMIXUP_TARGET_BEGIN(isa) \
  KMIXUP_PRAGMA(clang attribute push(__attribute__((target(isa))), apply_to = function))
#define KMIXUP_TARGET_END KMIXUP_PRAGMA(clang attribute pop)
#else
#define KMIXUP_TARGET_BEGIN(isa)                                  \
  KMIXUP_PRAGMA(GCC push_options) KMIXUP_PRAGMA(GCC target(isa)) \
  KMIXUP_PRAGMA(GCC optimize("fp-contract=off"))
#define KMIXUP_TARGET_END KMIXUP_PRAGMA(GCC pop_options)
#endif

KMIXUP_TARGET_BEGIN("avx2,f16c")  // every x86 CPU since 2013
namespace avx2 {
#define KMIXUP_VEC_BYTES 32
#include "cpu/row_loops.h"
#undef KMIXUP_VEC_BYTES
}  // namespace avx2
KMIXUP_TARGET_END

KMIXUP_TARGET_BEGIN("avx512f,avx512bw,avx2,f16c")
namespace avx512 {
#define KMIXUP_VEC_BYTES 64
#include "cpu/row_loops.h"
#undef KMIXUP_VEC_BYTES
}  // namespace avx512
KMIXUP_TARGET_END

// AVX-512 with AVX512-BF16 (AMD Zen 4, Intel Cooper Lake and Sapphire Rapids on): the same
// loops, with bfloat16 rounded by the conversion instruction.
KMIXUP_TARGET_BEGIN("avx512f,avx512bw,avx512dq,avx512vl,avx512bf16,avx2,f16c")
namespace avx512_bf16 {
#define KMIXUP_VEC_BYTES 64
#define KMIXUP_AVX512_BF16
#include "cpu/row_loops.h"
#undef KMIXUP_AVX512_BF16
#undef KMIXUP_VEC_BYTES
}  // namespace avx512_bf16
KMIXUP_TARGET_END

enum class RowIsa { kBaseline, kAvx2, kAvx512, kAvx512Bf16 };

// torch's own CPU capability, with the features torch asks for (so that
// torch.backends.cpu.get_cpu_capability() names these loops too, as kmixup.info reports),
// capped the same way by ATEN_CPU_CAPABILITY=default|avx2|avx512 (the tests run every path
// so), plus AVX512-BF16 above torch's top level where the CPU has it.
inline RowIsa row_isa() {
  static const RowIsa isa = [] {
    const char* env = std::getenv("ATEN_CPU_CAPABILITY");
    const std::string_view cap = env != nullptr ? env : "";
    const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                      __builtin_cpu_supports("f16c");
    const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") &&
                        __builtin_cpu_supports("avx512bw") &&
                        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    if (cap == "default" || !avx2) return RowIsa::kBaseline;
    if (cap == "avx2" || !avx512) return RowIsa::kAvx2;
    if (cap == "avx512" || !__builtin_cpu_supports("avx512bf16")) return RowIsa::kAvx512;
    return RowIsa::kAvx512Bf16;
  }();
  return isa;
}
#define KMIXUP_ROW_LOOP(call)                  \
  switch (row_isa()) {                         \
    case RowIsa::kAvx512Bf16: return avx512_bf16::call; \
    case RowIsa::kAvx512: return avx512::call; \
    case RowIsa::kAvx2: return avx2::call;     \
    default: return baseline::call;            \
  }
#else
#define KMIXUP_ROW_LOOP(call) return baseline::call;
#endif

// sum((rows[t] - rows[t + 1])^2) over n elements into dist[t], for G consecutive pairs of a
// cycle (row_loops.h).
template <int G, typename scalar_t>
void sq_dist_chain(const scalar_t* const* rows, int64_t n, double* dist) {
  KMIXUP_ROW_LOOP(sq_dist_chain<G>(rows, n, dist))
}

// sum((a - b)^2) over n elements, in acc_t.
template <typename scalar_t>
double row_sq_dist(const scalar_t* a, const scalar_t* b, int64_t n) {
  const scalar_t* rows[] = {a, b};
  double dist;
  sq_dist_chain<1>(rows, n, &dist);
  return dist;
}

// out[t] = wa[t] * rows[t] + wb[t] * rows[t + 1] over n elements, in acc_t, for G
// consecutive pairs of a cycle, none of them a copy (row_loops.h).
template <int G, typename scalar_t>
void mix_chain(const scalar_t* const* rows, const acc_t<scalar_t>* wa,
               const acc_t<scalar_t>* wb, scalar_t* const* out, int64_t n) {
  KMIXUP_ROW_LOOP(mix_chain<G>(rows, wa, wb, out, n))
}

// (1, 0) and (0, 1) are exact copies, so a row that is not mixed never sees its partner's
// values (NaN included).
template <typename weight_t>
bool is_copy(weight_t wa, weight_t wb) {
  return (wa == 1 && wb == 0) || (wa == 0 && wb == 1);
}

// out = wa * a + wb * b over n elements, in acc_t, or a copy (is_copy). out may alias a
// (in-place mixing).
template <typename scalar_t>
void mix_row(const scalar_t* a, acc_t<scalar_t> wa, const scalar_t* b, acc_t<scalar_t> wb,
             scalar_t* out, int64_t n) {
  if (is_copy(wa, wb)) {
    const scalar_t* src = wa == 1 ? a : b;
    if (out != src) std::memcpy(out, src, n * sizeof(scalar_t));
    return;
  }
  const scalar_t* rows[] = {a, b};
  mix_chain<1>(rows, &wa, &wb, &out, n);
}

// Pairs per sweep of mix_chain and sq_dist_chain along a cycle: more rows at once would
// outrun the streams a core prefetches.
constexpr int kChainPairs = 4;

// Calls f(std::integral_constant<int, G>{}) with G = pairs, for 1 <= pairs <= kChainPairs:
// the sweeps take their number of pairs as a template argument.
template <typename F>
void with_chain_pairs(int pairs, const F& f) {
  static_assert(kChainPairs == 4);
  switch (pairs) {
    case 1: return f(std::integral_constant<int, 1>{});
    case 2: return f(std::integral_constant<int, 2>{});
    case 3: return f(std::integral_constant<int, 3>{});
    default: return f(std::integral_constant<int, 4>{});
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

// Rows per parallel_for task so that each task moves at least ~64K elements.
inline int64_t rows_per_task(int64_t row_len) {
  constexpr int64_t kGrainElements = 1 << 16;
  return std::max<int64_t>(1, kGrainElements / std::max<int64_t>(1, row_len));
}

// The rows of a batch in the cycle order of an index vector `other` (row i pairs with
// other[i]): i, other[i], other[other[i]], ... until the cycle closes, cycle after cycle.
// Walked in that order, each row's partner is the next row visited, so every pass over the
// pairs reads each row once from memory (walk_task sweeps runs of consecutive pairs
// together, so most rows are loaded only once at all), and mixing can overwrite the
// input: out[i] needs x[other[i]], the next row, not yet written. The positions are cut
// into contiguous tasks run in parallel; a cycle of up to kChainPairs rows is never cut
// (walk_task sweeps it whole).
struct CycleWalk {
  std::vector<int64_t> order;       // order[p]: the row visited at position p
  std::vector<int64_t> next;        // next[p]: the position of order[p]'s partner
  std::vector<char> starts_cycle;   // starts_cycle[p]: p is the first position of its cycle
  std::vector<int64_t> task_begin;  // task t walks positions [task_begin[t], task_begin[t+1])
  // Positions whose row another task reads as a partner, which an in-place pass copies
  // before any task runs: a task's first position inside a cycle (the previous task's last
  // row pairs with it), and the first of a cycle that ends in a later task. (The first row
  // of a cycle inside one task is copied by that task when it gets there: one row at a
  // time, however many cycles there are.)
  std::vector<int64_t> saved;
  bool is_permutation = true;       // false: some row is the partner of two rows
};

// other's values must lie in [0, batch).
inline CycleWalk cycle_walk(const int64_t* other, int64_t batch, int64_t row_len) {
  CycleWalk walk;
  walk.order.reserve(batch);
  walk.next.resize(batch);
  std::vector<char> visited(batch, 0);
  walk.starts_cycle.resize(batch, 0);
  std::vector<int64_t> cycle_begin;
  for (int64_t start = 0; start < batch; ++start) {
    if (visited[start]) continue;
    const int64_t first = static_cast<int64_t>(walk.order.size());
    cycle_begin.push_back(first);
    walk.starts_cycle[first] = 1;
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
  cycle_begin.push_back(batch);
  // A few tasks per thread balance the load; more would only add rows to copy aside. A
  // task that would start inside a short cycle starts at the cycle's first row instead.
  const int64_t tasks = std::min(ceil_div(batch, rows_per_task(row_len)),
                                 int64_t{4} * torch::stable::get_num_threads());
  for (int64_t t = 0; t < tasks; ++t) {
    const int64_t begin = t * batch / tasks;
    const auto cycle = std::upper_bound(cycle_begin.begin(), cycle_begin.end(), begin) - 1;
    walk.task_begin.push_back(*(cycle + 1) - *cycle <= kChainPairs ? *cycle : begin);
  }
  walk.task_begin.push_back(batch);
  for (int64_t t = 0, c = 0; t < tasks; ++t) {
    const int64_t begin = walk.task_begin[t], end = walk.task_begin[t + 1];
    if (begin < end && !walk.starts_cycle[begin]) walk.saved.push_back(begin);
    for (; cycle_begin[c] < end; ++c) {
      if (cycle_begin[c + 1] > end) walk.saved.push_back(cycle_begin[c]);
    }
  }
  return walk;
}

// Calls body(i, other[i]) for every row, in row order, in parallel: for an index vector
// without cycles (some row is the partner of two).
template <typename Body>
void for_each_row(const int64_t* other, int64_t batch, int64_t row_len, const Body& body) {
  torch::stable::parallel_for(0, batch, rows_per_task(row_len), [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) body(i, other[i]);
  });
}

// Calls body(begin, end) for the positions of each task of `walk`, in parallel.
template <typename Body>
void for_each_task(const CycleWalk& walk, const Body& body) {
  const int64_t tasks = static_cast<int64_t>(walk.task_begin.size()) - 1;
  torch::stable::parallel_for(0, tasks, 1, [&](int64_t t_begin, int64_t t_end) {
    for (int64_t t = t_begin; t < t_end; ++t) body(walk.task_begin[t], walk.task_begin[t + 1]);
  });
}

// The pairs of the run that starts at position p of a task ending at `end`, 0 where none
// does: a whole cycle of at most kChainPairs rows (walk_task sweeps it whole; in place it
// needs no copy, because a sweep reads each row's chunk before it writes it and the last
// row's partner is the first one's chunk as it was read), else kChainPairs pairs along a
// longer cycle. Every row of a run is in_run.
template <typename InRun>
int run_pairs(const CycleWalk& walk, int64_t p, int64_t end, const InRun& in_run) {
  for (int pairs = 1; pairs <= kChainPairs; ++pairs) {
    const int64_t last = p + pairs - 1;
    if (last >= end || !in_run(last)) return 0;
    if (walk.next[last] == p) return pairs;
    if (pairs < kChainPairs && walk.next[last] != last + 1) return 0;
  }
  return kChainPairs;
}

// Walks the positions [begin, end) of one task: run(p, pairs) for consecutive pairs along a
// cycle from position p (run_pairs; each row's partner is the next row of the run, the last
// one's is position next[p + pairs - 1], which is p where the run is a whole cycle),
// pair(p) for the rest: a long cycle's wrap, a task's tail, and positions that in_run(p)
// keeps out of runs.
template <typename InRun, typename Run, typename Pair>
void walk_task(const CycleWalk& walk, int64_t begin, int64_t end, const InRun& in_run,
               const Run& run, const Pair& pair) {
  for (int64_t p = begin; p < end;) {
    if (const int pairs = run_pairs(walk, p, end, in_run); pairs > 0) {
      run(p, pairs);
      p += pairs;
    } else {
      pair(p);
      ++p;
    }
  }
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
    const auto weights = [&](int64_t i) {
      return std::pair<weight_t, weight_t>(k[i], weight_t(1) - k[adjoint ? other[i] : i]);
    };
    if (!walk.is_permutation) {
      for_each_row(other, batch, row, [&](int64_t i, int64_t j) {
        const auto [wa, wb] = weights(i);
        mix_row(src + i * row, wa, src + j * row, wb, dst + i * row, row);
      });
      return;
    }
    const auto in_run = [&](int64_t p) {
      const auto [wa, wb] = weights(walk.order[p]);
      return !is_copy(wa, wb);
    };
    // In place, the rows in walk.saved are copied first (uninitialised storage: zeroing it
    // would cost as much again); saved_slot[p] is position p's slot, or -1.
    const int64_t saved = in_place ? static_cast<int64_t>(walk.saved.size()) : 0;
    const std::unique_ptr<scalar_t[]> copies(new scalar_t[saved * row]);
    std::vector<int64_t> saved_slot(in_place ? batch : 0, -1);
    for (int64_t slot = 0; slot < saved; ++slot) saved_slot[walk.saved[slot]] = slot;
    torch::stable::parallel_for(0, saved, rows_per_task(row), [&](int64_t begin, int64_t end) {
      for (int64_t slot = begin; slot < end; ++slot) {
        std::memcpy(copies.get() + slot * row, src + walk.order[walk.saved[slot]] * row,
                    row * sizeof(scalar_t));
      }
    });
    // Mixes the positions [begin, end) of one task.
    const auto mix_task = [&](int64_t begin, int64_t end) {
      // In place, the first row of a cycle that this task walks alone, as it was, for the
      // cycle's last pair (unless the run from it is the whole cycle).
      std::unique_ptr<scalar_t[]> first_row;
      int64_t first_position = -1;
      const auto keep_first_row = [&](int64_t p, bool whole_cycle) {
        if (!in_place || !walk.starts_cycle[p] || saved_slot[p] >= 0 || whole_cycle) return;
        if (!first_row) first_row.reset(new scalar_t[row]);
        std::memcpy(first_row.get(), src + walk.order[p] * row, row * sizeof(scalar_t));
        first_position = p;
      };
      // Position q's row as it was before any mixing (inside a run, the next row of the
      // run, not yet written).
      const auto partner = [&](int64_t q) -> const scalar_t* {
        if (q == first_position) return first_row.get();
        if (in_place && saved_slot[q] >= 0) return copies.get() + saved_slot[q] * row;
        return src + walk.order[q] * row;
      };
      walk_task(
          walk, begin, end, in_run,
          [&](int64_t p, int pairs) {
            keep_first_row(p, walk.next[p + pairs - 1] == p);
            with_chain_pairs(pairs, [&](auto chain) {
              constexpr int G = decltype(chain)::value;
              const scalar_t* rows[G + 1];
              scalar_t* outs[G];
              weight_t wa[G], wb[G];
              for (int t = 0; t < G; ++t) {
                const int64_t i = walk.order[p + t];
                rows[t] = src + i * row;
                outs[t] = dst + i * row;
                std::tie(wa[t], wb[t]) = weights(i);
              }
              rows[G] = partner(walk.next[p + G - 1]);
              mix_chain<G>(rows, wa, wb, outs, row);
            });
          },
          [&](int64_t p) {
            keep_first_row(p, false);
            const int64_t i = walk.order[p];
            const auto [wa, wb] = weights(i);
            mix_row(src + i * row, wa, partner(walk.next[p]), wb, dst + i * row, row);
          });
    };
    for_each_task(walk, mix_task);
  });
}

}  // namespace kmixup::cpu
