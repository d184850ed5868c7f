// CPU kernels of pair_sq_dist and the fused kernel_mix: one pass over each pair for the
// distance, B scalar warps, one pass over each pair for the interpolation.
#include <torch/csrc/stable/library.h>

#include <cmath>
#include <string_view>
#include <tuple>
#include <vector>

#include "checks.h"
#include "cpu/rows.h"

namespace kmixup::cpu {
namespace {

// Squared distance of every sample to its partner, as pair_sq_dist returns it: rounded to
// the accumulation type (float32 for float/half/bfloat16 rows), so a distance beyond its
// range is inf on every backend and follows the non-finite rule. f must be row-dense and
// perm's values checked. Pairs are visited in cycle order (rows.h).
std::vector<double> sq_dists(const Tensor& f, const int64_t* partner) {
  const int64_t batch = f.size(0), row = row_length(f);
  std::vector<double> dist(batch);
  KMIXUP_DISPATCH_FLOATING(f.scalar_type(), "kmixup_sq_dists", [&] {
    const scalar_t* data = f.const_data_ptr<scalar_t>();
    const auto rounded = [](double d) {
      return static_cast<double>(static_cast<acc_t<scalar_t>>(d));
    };
    const auto pair = [&](int64_t i, int64_t j) {
      dist[i] = rounded(row_sq_dist(data + i * row, data + j * row, row));
    };
    const CycleWalk walk = cycle_walk(partner, batch, row);
    if (!walk.is_permutation) {
      for_each_row(partner, batch, row, pair);
      return;
    }
    for_each_task(walk, [&](int64_t begin, int64_t end) {
      walk_task(
          walk, begin, end, [](int64_t) { return true; },
          [&](int64_t p, int pairs) {
            with_chain_pairs(pairs, [&](auto chain) {
              constexpr int G = decltype(chain)::value;
              const scalar_t* rows[G + 1];
              for (int t = 0; t < G; ++t) rows[t] = data + walk.order[p + t] * row;
              rows[G] = data + walk.order[walk.next[p + G - 1]] * row;
              double run[G];
              sq_dist_chain<G>(rows, row, run);
              for (int t = 0; t < G; ++t) dist[walk.order[p + t]] = rounded(run[t]);
            });
          },
          [&](int64_t p) { pair(walk.order[p], walk.order[walk.next[p]]); });
    });
  });
  return dist;
}

Tensor pair_sq_dist_cpu(const Tensor& f, const Tensor& perm) {
  check_batch_and_perm(f, "f", perm);
  const auto dtype = acc_dtype(f);
  const Tensor perm_c = contiguous_in(perm);
  check_perm_range(perm_c.const_data_ptr<int64_t>(), f.size(0));
  const auto dist = sq_dists(row_dense(f), perm_c.const_data_ptr<int64_t>());
  Tensor out = empty_vector(f.size(0), dtype, f);
  KMIXUP_DISPATCH_FLOAT_DOUBLE(dtype, "kmixup_pair_sq_dist", [&] {
    scalar_t* data = out.mutable_data_ptr<scalar_t>();
    for (size_t i = 0; i < dist.size(); ++i) data[i] = static_cast<scalar_t>(dist[i]);
  });
  return out;
}

// The fused op, writing the mixed batch into out: a row-dense tensor in x's layout, which
// may be x itself (in place). Returns the coefficients.
Tensor kernel_mix_into(const Tensor& x, const Tensor& perm, const Tensor& lam,
                       const Tensor& feats, double tau_max, double tau_std,
                       std::string_view warping_name, const Tensor& out) {
  const int warping = check_kernel_mix(x, perm, lam, feats, tau_max, tau_std, warping_name);
  const int64_t batch = x.size(0);
  const Tensor perm_c = contiguous_in(perm);
  const int64_t* partner = perm_c.const_data_ptr<int64_t>();
  check_perm_range(partner, batch);
  const Tensor lam64 = contiguous_as(lam, ScalarType::Double);
  const double* lam_data = lam64.const_data_ptr<double>();
  check_lam_range(lam_data, batch);

  std::vector<double> dist(batch, 0.0);
  double mean = 0.0;
  if (warping != kNone) {
    dist = sq_dists(row_dense(feats), partner);
    // The mean leaves out non-finite distances: their pairs stay unmixed (coefficient 1).
    int64_t finite = 0;
    for (double d : dist) {
      if (std::isfinite(d)) {
        mean += d;
        ++finite;
      }
    }
    mean = finite > 0 ? mean / finite : 0.0;
  }
  const auto coeff_dtype = acc_dtype(x);
  Tensor coeff = empty_vector(batch, coeff_dtype, x);
  KMIXUP_DISPATCH_FLOAT_DOUBLE(coeff_dtype, "kmixup_coefficients", [&] {
    scalar_t* k = coeff.mutable_data_ptr<scalar_t>();
    // Evaluated in scalar_t (float for float/half/bfloat16 x). Spread over the threads in
    // chunks that outweigh waking one (a few us): a float warp costs ~0.2 us per pair
    // (inverse_beta_cdf) or ~0.1 us (beta_cdf), more in double; "none" is a copy. Measured
    // at a CIFAR batch (128) on 2 threads: 32/64-pair chunks take ~14/6 us off the op
    // against a single 256-pair chunk.
    const int64_t grain = warping == kInverseBetaCdf ? 32
                          : warping == kBetaCdf      ? 64
                                                     : std::max<int64_t>(batch, 1);
    torch::stable::parallel_for(0, batch, grain, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        k[i] = pair_coefficient<scalar_t>(dist[i], mean, lam_data[i], tau_max, tau_std,
                                          warping);
      }
    });
  });
  mix_batch(out.data_ptr() == x.data_ptr() ? x : row_dense(x), partner, coeff,
            /*adjoint=*/false, out);
  return coeff;
}

std::tuple<Tensor, Tensor> kernel_mix_cpu(const Tensor& x, const Tensor& perm, const Tensor& lam,
                                          const Tensor& feats, double tau_max, double tau_std,
                                          StrArg warping) {
  const std::string warping_name = take_string(warping);
  check_float(x, "x");
  Tensor mixed = empty_rows_like(x);
  Tensor coeff = kernel_mix_into(x, perm, lam, feats, tau_max, tau_std, warping_name, mixed);
  return {mixed, coeff};
}

Tensor kernel_mix_out_cpu(const Tensor& x, const Tensor& perm, const Tensor& lam,
                          const Tensor& feats, double tau_max, double tau_std, StrArg warping,
                          Tensor& out) {
  const std::string warping_name = take_string(warping);
  check_out(out, x);
  return kernel_mix_into(x, perm, lam, feats, tau_max, tau_std, warping_name, out);
}

Tensor kernel_mix_inplace_cpu(Tensor& x, const Tensor& perm, const Tensor& lam,
                              const Tensor& feats, double tau_max, double tau_std,
                              StrArg warping) {
  const std::string warping_name = take_string(warping);
  check_in_place(x);
  return kernel_mix_into(x, perm, lam, feats, tau_max, tau_std, warping_name, x);
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(kmixup_C, CPU, m) {
  m.impl("pair_sq_dist", TORCH_BOX(&pair_sq_dist_cpu));
  m.impl("kernel_mix", TORCH_BOX(&kernel_mix_cpu));
  m.impl("kernel_mix_out", TORCH_BOX(&kernel_mix_out_cpu));
  m.impl("kernel_mix_", TORCH_BOX(&kernel_mix_inplace_cpu));
}

}  // namespace kmixup::cpu
