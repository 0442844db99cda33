// A small persistent thread pool for the batch kernels.
//
// Why not OpenMP: the Python process also loads ONNX Runtime, PyTorch and FAISS, each with its
// own threading runtime; a pool of plain std::threads avoids a second OpenMP runtime in the
// process and lets the caller set the thread count per process without environment games.
#pragma once

#include <cstddef>
#include <functional>

namespace euds {

// Number of threads parallel_for uses (the caller's thread included). Defaults to the
// EUDS_NUM_THREADS environment variable, else std::thread::hardware_concurrency().
int num_threads();
// Sets the thread count; n <= 0 restores the default. Takes effect on the next parallel_for.
void set_num_threads(int n);

// Calls body(begin, end) over [0, n) in chunks of at least `grain` items, spread over the pool.
// Runs inline when n is small, when called from inside a pool worker (no nested parallelism) or
// while another caller holds the pool. The first exception thrown by a chunk is rethrown here
// after every chunk has finished.
void parallel_for(std::size_t n, std::size_t grain,
                  const std::function<void(std::size_t, std::size_t)>& body);

}  // namespace euds
