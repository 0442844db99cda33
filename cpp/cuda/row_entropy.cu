// CUDA row kernel: one thread block per row for wide rows (LM logits), one warp per row for
// narrow ones (top-m similarities). Each thread keeps an online (max, sum, centred moment)
// state over a strided slice of the row; states are merged with warp shuffles, then across
// warps through shared memory: one read of the logits, as on the CPU.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "euds/cuda.hpp"

namespace euds::cuda {
namespace {

constexpr float kExpFloor = -80.0f;  // as on the CPU: keeps every term a normal float

void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess)
    throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(err));
}

// Set by a kernel that met a target outside [0, cols); read and cleared by check_errors().
__device__ int g_bad_target = 0;

struct State {
  float m, s, t;
  bool bad;
};

__device__ inline float to_float(float x) { return x; }
__device__ inline float to_float(std::uint16_t h) { return __half2float(__ushort_as_half(h)); }

__device__ inline void add(State& st, float x) {
  if (isnan(x) || x == INFINITY) {
    st.bad = true;
    return;
  }
  if (x == -INFINITY) return;
  if (x > st.m) {
    const float d = fmaxf(st.m - x, kExpFloor);
    const float f = __expf(d);
    st.t = f * (st.t + d * st.s);
    st.s = f * st.s + 1.0f;
    st.m = x;
  } else {
    const float d = fmaxf(x - st.m, kExpFloor);
    const float e = __expf(d);
    st.s += e;
    st.t += e * d;
  }
}

__device__ inline State merge(State a, State b) {
  State r;
  r.bad = a.bad || b.bad;
  if (b.s <= 0.0f) return State{a.m, a.s, a.t, r.bad};
  if (a.s <= 0.0f) return State{b.m, b.s, b.t, r.bad};
  if (a.m < b.m) {
    const State tmp = a;
    a = b;
    b = tmp;
  }
  const float d = fmaxf(b.m - a.m, kExpFloor);
  const float f = __expf(d);
  r.m = a.m;
  r.s = a.s + f * b.s;
  r.t = a.t + f * (b.t + d * b.s);
  return r;
}

__device__ inline State warp_merge(State st) {
  for (int offset = 16; offset > 0; offset >>= 1) {
    State o;
    o.m = __shfl_down_sync(0xffffffffu, st.m, offset);
    o.s = __shfl_down_sync(0xffffffffu, st.s, offset);
    o.t = __shfl_down_sync(0xffffffffu, st.t, offset);
    o.bad = __shfl_down_sync(0xffffffffu, static_cast<int>(st.bad), offset) != 0;
    st = merge(st, o);
  }
  return st;
}

template <class T, class Target>
__device__ inline void finish(const State& st, const T* row, std::size_t cols, float scale,
                              const Target* targets, std::size_t r, float* entropy, float* nll) {
  const float nan = __int_as_float(0x7fc00000);
  if (st.bad || !(st.s > 0.0f)) {
    entropy[r] = nan;
    if (nll != nullptr) nll[r] = nan;
    return;
  }
  const float log_s = logf(st.s);
  entropy[r] = fmaxf(log_s - st.t / st.s, 0.0f);
  if (nll == nullptr) return;
  if (targets == nullptr) {
    nll[r] = nan;
    return;
  }
  const long long tgt = static_cast<long long>(targets[r]);
  if (tgt < 0 || static_cast<std::size_t>(tgt) >= cols) {
    atomicExch(&g_bad_target, 1);
    nll[r] = nan;
    return;
  }
  nll[r] =
      (st.m - to_float(row[tgt]) * scale) + log_s;  // m - x_t first: keeps ln s for huge logits
}

template <class T, class Target>
__global__ void block_per_row(std::size_t rows, std::size_t cols, const T* __restrict__ in,
                              float scale, const Target* __restrict__ targets,
                              const std::uint8_t* __restrict__ mask, float* entropy, float* nll) {
  const std::size_t r = blockIdx.x;
  if (r >= rows) return;
  if (mask != nullptr && mask[r] == 0) {
    if (threadIdx.x == 0) {
      entropy[r] = __int_as_float(0x7fc00000);
      if (nll != nullptr) nll[r] = __int_as_float(0x7fc00000);
    }
    return;
  }
  const T* row = in + r * cols;
  State st{-INFINITY, 0.0f, 0.0f, false};
  for (std::size_t j = threadIdx.x; j < cols; j += blockDim.x) add(st, to_float(row[j]) * scale);
  st = warp_merge(st);
  __shared__ float sm[32], ss[32], stt[32];
  __shared__ int sbad[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) {
    sm[warp] = st.m;
    ss[warp] = st.s;
    stt[warp] = st.t;
    sbad[warp] = st.bad;
  }
  __syncthreads();
  if (warp == 0) {
    const int n_warps = (blockDim.x + 31) >> 5;
    st = lane < n_warps ? State{sm[lane], ss[lane], stt[lane], sbad[lane] != 0}
                        : State{-INFINITY, 0.0f, 0.0f, false};
    st = warp_merge(st);
    if (lane == 0) finish(st, row, cols, scale, targets, r, entropy, nll);
  }
}

template <class T, class Target>
__global__ void warp_per_row(std::size_t rows, std::size_t cols, const T* __restrict__ in,
                             float scale, const Target* __restrict__ targets,
                             const std::uint8_t* __restrict__ mask, float* entropy, float* nll) {
  const std::size_t r = (static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
  const int lane = threadIdx.x & 31;
  if (r >= rows) return;  // whole warps leave together: r is uniform within a warp
  if (mask != nullptr && mask[r] == 0) {
    if (lane == 0) {
      entropy[r] = __int_as_float(0x7fc00000);
      if (nll != nullptr) nll[r] = __int_as_float(0x7fc00000);
    }
    return;
  }
  const T* row = in + r * cols;
  State st{-INFINITY, 0.0f, 0.0f, false};
  for (std::size_t j = lane; j < cols; j += 32) add(st, to_float(row[j]) * scale);
  st = warp_merge(st);
  if (lane == 0) finish(st, row, cols, scale, targets, r, entropy, nll);
}

template <class T, class Target>
void launch(std::size_t rows, std::size_t cols, const T* in, float scale, const Target* targets,
            const std::uint8_t* mask, float* entropy, float* nll, void* stream) {
  if (!(scale > 0.0f) || !std::isfinite(scale))
    throw std::invalid_argument("scale must be a positive finite number");
  if (rows == 0) return;
  auto s = static_cast<cudaStream_t>(stream);
  if (cols >= 1024) {
    block_per_row<T, Target><<<static_cast<unsigned>(rows), 256, 0, s>>>(
        rows, cols, in, scale, targets, mask, entropy, nll);
  } else {
    const unsigned threads = 256;  // 8 rows per block
    const auto blocks = static_cast<unsigned>((rows * 32 + threads - 1) / threads);
    warp_per_row<T, Target>
        <<<blocks, threads, 0, s>>>(rows, cols, in, scale, targets, mask, entropy, nll);
  }
  check(cudaGetLastError(), "row_softmax_entropy launch");
}

}  // namespace

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error
    return 0;
  }
  return n;
}

std::string device_name(int device) {
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, device) != cudaSuccess) {
    cudaGetLastError();
    return {};
  }
  return std::string(prop.name) + " (sm_" + std::to_string(prop.major) +
         std::to_string(prop.minor) + ", " + std::to_string(prop.totalGlobalMem >> 20) + " MiB)";
}

std::string runtime_version() { return EUDS_CUDA_VERSION; }

void row_softmax_entropy(std::size_t rows, std::size_t cols, const float* in, float scale,
                         const std::int32_t* targets, const std::uint8_t* mask, float* entropy,
                         float* nll, void* stream) {
  launch(rows, cols, in, scale, targets, mask, entropy, nll, stream);
}
void row_softmax_entropy(std::size_t rows, std::size_t cols, const float* in, float scale,
                         const std::int64_t* targets, const std::uint8_t* mask, float* entropy,
                         float* nll, void* stream) {
  launch(rows, cols, in, scale, targets, mask, entropy, nll, stream);
}
void row_softmax_entropy(std::size_t rows, std::size_t cols, const std::uint16_t* in, float scale,
                         const std::int32_t* targets, const std::uint8_t* mask, float* entropy,
                         float* nll, void* stream) {
  launch(rows, cols, in, scale, targets, mask, entropy, nll, stream);
}
void row_softmax_entropy(std::size_t rows, std::size_t cols, const std::uint16_t* in, float scale,
                         const std::int64_t* targets, const std::uint8_t* mask, float* entropy,
                         float* nll, void* stream) {
  launch(rows, cols, in, scale, targets, mask, entropy, nll, stream);
}

void check_errors(void* stream) {
  check(cudaStreamSynchronize(static_cast<cudaStream_t>(stream)), "row_softmax_entropy");
  int bad = 0;
  check(cudaMemcpyFromSymbol(&bad, g_bad_target, sizeof bad), "reading the target check");
  if (bad != 0) {
    const int zero = 0;
    check(cudaMemcpyToSymbol(g_bad_target, &zero, sizeof zero), "clearing the target check");
    throw std::invalid_argument("a target id is outside [0, cols) on an unmasked row");
  }
}

void row_softmax_entropy_host(std::size_t rows, std::size_t cols, const void* in, bool in_is_f16,
                              float scale, const std::int64_t* targets, const std::uint8_t* mask,
                              float* entropy, float* nll, int device) {
  check(cudaSetDevice(device), "cudaSetDevice");
  const std::size_t in_bytes = rows * cols * (in_is_f16 ? 2 : 4);
  // RAII for the device buffers so an exception frees them.
  struct Buffer {
    void* p = nullptr;
    ~Buffer() {
      if (p) cudaFree(p);
    }
  } d_in, d_t, d_m, d_e, d_n;
  auto alloc = [](Buffer& b, std::size_t bytes) {
    if (bytes) check(cudaMalloc(&b.p, bytes), "cudaMalloc");
  };
  alloc(d_in, in_bytes);
  alloc(d_e, rows * sizeof(float));
  if (nll) alloc(d_n, rows * sizeof(float));
  if (targets) alloc(d_t, rows * sizeof(std::int64_t));
  if (mask) alloc(d_m, rows);
  if (in_bytes) check(cudaMemcpy(d_in.p, in, in_bytes, cudaMemcpyHostToDevice), "copy in");
  if (targets)
    check(cudaMemcpy(d_t.p, targets, rows * sizeof(std::int64_t), cudaMemcpyHostToDevice),
          "copy targets");
  if (mask) check(cudaMemcpy(d_m.p, mask, rows, cudaMemcpyHostToDevice), "copy mask");
  const auto* t = static_cast<const std::int64_t*>(d_t.p);
  const auto* m = static_cast<const std::uint8_t*>(d_m.p);
  auto* e = static_cast<float*>(d_e.p);
  auto* n = static_cast<float*>(d_n.p);
  if (cols == 0) {
    for (std::size_t r = 0; r < rows; ++r) {
      if (targets && (!mask || mask[r]))
        throw std::invalid_argument("targets[" + std::to_string(r) +
                                    "] is outside [0, 0): the rows are empty");
      entropy[r] = __builtin_nanf("");
      if (nll) nll[r] = __builtin_nanf("");
    }
    return;
  }
  if (in_is_f16)
    row_softmax_entropy(rows, cols, static_cast<const std::uint16_t*>(d_in.p), scale, t, m, e, n,
                        nullptr);
  else
    row_softmax_entropy(rows, cols, static_cast<const float*>(d_in.p), scale, t, m, e, n, nullptr);
  check_errors(nullptr);
  if (rows) {
    check(cudaMemcpy(entropy, e, rows * sizeof(float), cudaMemcpyDeviceToHost), "copy entropy");
    if (nll) check(cudaMemcpy(nll, n, rows * sizeof(float), cudaMemcpyDeviceToHost), "copy nll");
  }
}

}  // namespace euds::cuda
