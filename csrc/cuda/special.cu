// betainc and betaincinv elementwise: the scalar float64 functions of special.h, one element
// per thread (grid-stride), inputs and output float32 or float64.
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/launchers.h"
#include "special.h"

namespace kmixup::cuda {
namespace {

// An element costs up to a few thousand float64 operations (the inverse runs Newton on the
// continued fraction), so small blocks spread even a batch-sized input over many SMs.
constexpr int kSpecialThreads = 64;
constexpr int64_t kMaxBlocks = 1 << 16;

template <typename T, bool kInverse>
__global__ void __launch_bounds__(kSpecialThreads)
    special_kernel(const T* __restrict__ a, const T* __restrict__ b, const T* __restrict__ t,
                   T* __restrict__ out, int64_t n) {
  const int64_t step = int64_t{gridDim.x} * kSpecialThreads;
  for (int64_t i = int64_t{blockIdx.x} * kSpecialThreads + threadIdx.x; i < n; i += step) {
    const double av = a[i], bv = b[i], tv = t[i];
    out[i] = static_cast<T>(kInverse ? kmixup::betaincinv(av, bv, tv)
                                     : kmixup::betainc(av, bv, tv));
  }
}

template <bool kInverse>
cudaError_t launch_special(const SpecialArgs& args, cudaStream_t stream) {
  if (args.numel == 0) return cudaSuccess;
  const int64_t wanted = (args.numel + kSpecialThreads - 1) / kSpecialThreads;
  const auto grid = static_cast<unsigned int>(wanted < kMaxBlocks ? wanted : kMaxBlocks);
  if (args.dtype == DType::kFloat32) {
    special_kernel<float, kInverse><<<grid, kSpecialThreads, 0, stream>>>(
        static_cast<const float*>(args.a), static_cast<const float*>(args.b),
        static_cast<const float*>(args.t), static_cast<float*>(args.out), args.numel);
  } else if (args.dtype == DType::kFloat64) {
    special_kernel<double, kInverse><<<grid, kSpecialThreads, 0, stream>>>(
        static_cast<const double*>(args.a), static_cast<const double*>(args.b),
        static_cast<const double*>(args.t), static_cast<double*>(args.out), args.numel);
  } else {
    return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_betainc(const SpecialArgs& args, cudaStream_t stream) {
  return launch_special<false>(args, stream);
}

cudaError_t launch_betaincinv(const SpecialArgs& args, cudaStream_t stream) {
  return launch_special<true>(args, stream);
}

}  // namespace kmixup::cuda
