// A small persistent thread pool for the batch kernels.
//
// Why not OpenMP: the Python process also loads ONNX Runtime, PyTorch and FAISS, each with its
// own threading runtime; a pool of plain std::threads avoids a second OpenMP runtime in the
// process and lets the caller set the thread count per process without environment games.
#pragma once

#include <cstddef>
#include <functional>

namespace euds {

// The largest thread count accepted. Far above any useful count (the kernels are memory-bound
// well before) but low enough that a typo such as 100000 cannot exhaust the process's threads.
constexpr int kMaxThreads = 1024;

// Number of threads parallel_for uses (the caller's thread included). Defaults to the
// EUDS_NUM_THREADS environment variable (clamped to kMaxThreads), else
// std::thread::hardware_concurrency().
int num_threads();
// Sets the thread count; 0 restores the default. Throws std::invalid_argument for n < 0 or
// n > kMaxThreads. Never waits for a running job: it keeps its threads, the next one uses n.
// Safe to call from any thread, also while kernels run.
void set_num_threads(long long n);

// Calls body(begin, end) over [0, n) in chunks of at least `grain` items, spread over the pool.
// Runs inline when n is small, when called from inside a pool worker (no nested parallelism) or
// while another caller holds the pool. The first exception thrown by a chunk is rethrown here
// after every chunk has finished. It runs inside a ComputeScope; in a fork()ed child the pool
// starts afresh (the parent's workers do not exist there), with the parent's thread count.
void parallel_for(std::size_t n, std::size_t grain,
                  const std::function<void(std::size_t, std::size_t)>& body);

// A stretch of kernel work, allocations and frees included, that fork() must not cut through.
// fork() waits until every open scope has closed and holds new ones back until it returns, so
// the child never inherits a lock (an allocator's, the pool's) held by a thread that does not
// exist there. glibc's malloc survives such a fork anyway; other allocators (GCC 12's
// AddressSanitizer) leave the child hung. Open one wherever a caller's thread computes outside
// its own control, as the Python bindings do wherever they release the GIL. Nested scopes on one
// thread, and scopes on pool workers (inside a caller's scope), cost nothing and never wait.
// Work inside a scope must not wait on a thread that may be fork()ing.
class ComputeScope {
 public:
  ComputeScope();
  ~ComputeScope();
  ComputeScope(const ComputeScope&) = delete;
  ComputeScope& operator=(const ComputeScope&) = delete;

 private:
  bool entered_;
};

}  // namespace euds
