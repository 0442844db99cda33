#include "euds/parallel.hpp"

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

namespace euds {
namespace {

int default_threads() {
  if (const char* env = std::getenv("EUDS_NUM_THREADS")) {
    char* end = nullptr;
    const long n = std::strtol(env, &end, 10);  // LONG_MAX on overflow: clamped below
    while (*end == ' ' || *end == '\t' || *end == '\n') ++end;
    if (end != env && *end == '\0' && n > 0)
      return static_cast<int>(std::min<long>(n, kMaxThreads));
  }
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(std::min<unsigned>(hw, kMaxThreads));
}

thread_local bool tls_in_worker = false;

// Never destroyed (see pool()): joining threads from a static destructor at interpreter exit
// can hang, and a pool abandoned at fork() holds handles of threads the child does not have.
class Pool {
 public:
  explicit Pool(int threads) : threads_(threads) {}

  int threads() const { return threads_.load(); }

  void set_threads(int n) {
    threads_.store(n);
    // Never waits: the caller may hold the GIL while another Python thread's kernel holds the
    // pool. An idle pool shrinks at once; a running job keeps its workers and the next job
    // resizes the pool, since run() reads the count only under run_mutex_.
    std::unique_lock<std::mutex> run(run_mutex_, std::try_to_lock);
    if (run.owns_lock() && static_cast<int>(workers_.size()) > n - 1) stop_workers();
  }

  void run(std::size_t n, std::size_t grain,
           const std::function<void(std::size_t, std::size_t)>& body) {
    if (n == 0) return;
    grain = std::max<std::size_t>(grain, 1);
    const std::size_t chunks = (n + grain - 1) / grain;
    if (chunks <= 1 || tls_in_worker || threads_.load() <= 1) {
      body(0, n);
      return;
    }
    std::unique_lock<std::mutex> run(run_mutex_, std::try_to_lock);
    if (!run.owns_lock()) {
      body(0, n);
      return;
    }
    const int threads = threads_.load();  // once: the job and the pool size must agree
    const int want = static_cast<int>(std::min<std::size_t>(chunks, threads));
    if (want > 1) ensure_workers(threads - 1);
    const int participants = std::min(want - 1, static_cast<int>(workers_.size()));
    if (participants <= 0) {
      run.unlock();
      body(0, n);
      return;
    }

    Job job;
    job.n = n;
    job.grain = grain;
    job.body = &body;
    job.participants = participants;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = &job;
      ++generation_;
    }
    cv_.notify_all();
    work(job);
    {
      std::unique_lock<std::mutex> lock(mutex_);
      done_cv_.wait(lock, [&] { return job.finished == job.participants; });
      job_ = nullptr;
    }
    if (job.error) std::rethrow_exception(job.error);
  }

 private:
  struct Job {
    std::size_t n = 0, grain = 1;
    const std::function<void(std::size_t, std::size_t)>* body = nullptr;
    std::atomic<std::size_t> next{0};
    int participants = 0;  // workers that take part (the caller comes on top)
    int joined = 0;        // guarded by mutex_
    int finished = 0;      // guarded by mutex_
    std::exception_ptr error;
    std::mutex error_mutex;
  };

  static void work(Job& job) {
    for (;;) {
      const std::size_t begin = job.next.fetch_add(job.grain);
      if (begin >= job.n) return;
      const std::size_t end = std::min(job.n, begin + job.grain);
      try {
        (*job.body)(begin, end);
      } catch (...) {
        std::lock_guard<std::mutex> lock(job.error_mutex);
        if (!job.error) job.error = std::current_exception();
        job.next.store(job.n);  // stop handing out chunks
      }
    }
  }

  void worker_loop() {
    tls_in_worker = true;
    std::uint64_t seen = 0;
    for (;;) {
      Job* job = nullptr;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        cv_.wait(lock, [&] { return stopping_ || (job_ != nullptr && generation_ != seen); });
        if (stopping_) return;
        seen = generation_;
        if (job_->joined >= job_->participants) continue;
        job = job_;
        ++job->joined;
      }
      work(*job);
      {
        std::lock_guard<std::mutex> lock(mutex_);
        ++job->finished;
      }
      done_cv_.notify_all();
    }
  }

  // Called with run_mutex_ held. Starts fewer workers when the system refuses more threads;
  // `target_` then keeps later jobs from retrying on every call.
  void ensure_workers(int n) {
    if (n == target_) return;
    stop_workers();
    target_ = n;
    for (int i = 0; i < n; ++i) {
      try {
        workers_.emplace_back([this] { worker_loop(); });
      } catch (const std::system_error&) {
        break;
      }
    }
  }

  // Called with run_mutex_ held, so no job is running.
  void stop_workers() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
    target_ = 0;
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = false;
  }

  std::atomic<int> threads_;
  std::mutex run_mutex_;  // one job at a time; other callers run inline
  std::mutex mutex_;
  std::condition_variable cv_, done_cv_;
  std::vector<std::thread> workers_;  // guarded by run_mutex_
  int target_ = 0;                    // workers asked for; guarded by run_mutex_
  Job* job_ = nullptr;
  std::uint64_t generation_ = 0;
  bool stopping_ = false;
};

// Counts the open ComputeScopes; fork() closes it (see ComputeScope in parallel.hpp).
class ForkGate {
 public:
  explicit ForkGate(int open = 0) : open_(open) {}

  void enter() {
    std::unique_lock<std::mutex> lock(mutex_);
    cv_.wait(lock, [&] { return !forking_; });
    ++open_;
  }

  void leave() {
    bool wake = false;  // only close() waits for open_ to fall
    {
      std::lock_guard<std::mutex> lock(mutex_);
      --open_;
      wake = forking_;
    }
    if (wake) cv_.notify_all();
  }

  // `own` is the forking thread's own open scope (0 or 1), which cannot close first.
  void close(int own) {
    std::unique_lock<std::mutex> lock(mutex_);
    forking_ = true;
    cv_.wait(lock, [&] { return open_ == own; });
  }

  void reopen() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      forking_ = false;
    }
    cv_.notify_all();
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  int open_;
  bool forking_ = false;
};

thread_local int tls_scope_depth = 0;

std::atomic<Pool*> g_pool{nullptr};
std::atomic<ForkGate*> g_gate{nullptr};
std::once_flag g_once;

// Before fork(): wait for every open scope (a running pool job is inside its caller's scope),
// and hold new ones back. Scopes never wait on the forking thread (they run without the GIL and
// take the pool with try_lock), so this ends.
void close_gate_for_fork() { g_gate.load()->close(tls_scope_depth > 0 ? 1 : 0); }
void reopen_gate_after_fork() { g_gate.load()->reopen(); }

// In the child only the forking thread exists: the parent's workers, and any thread waiting at
// the gate, are gone. The old pool and gate are abandoned (leaked: the pool's thread handles
// must never be joined or destroyed, and the gate's condition variable may count waiters that
// do not exist here); fresh ones keep the parent's thread count and the forking thread's scope.
void reset_in_child() {
  g_pool.store(new Pool(g_pool.load()->threads()));
  g_gate.store(new ForkGate(tls_scope_depth > 0 ? 1 : 0));
}

void init_once() {
  std::call_once(g_once, [] {
    g_pool.store(new Pool(default_threads()));
    g_gate.store(new ForkGate());
    pthread_atfork(close_gate_for_fork, reopen_gate_after_fork, reset_in_child);
  });
}

Pool& pool() {
  init_once();
  return *g_pool.load();
}

}  // namespace

ComputeScope::ComputeScope() : entered_(tls_scope_depth++ == 0 && !tls_in_worker) {
  if (!entered_) return;
  init_once();
  try {
    g_gate.load()->enter();
  } catch (...) {
    --tls_scope_depth;
    throw;
  }
}

ComputeScope::~ComputeScope() {
  --tls_scope_depth;
  if (entered_) g_gate.load()->leave();
}

int num_threads() { return pool().threads(); }

void set_num_threads(long long n) {
  if (n < 0 || n > kMaxThreads)
    throw std::invalid_argument("set_num_threads: n must be 0 (the default) or 1 to " +
                                std::to_string(kMaxThreads) + ", got " + std::to_string(n));
  pool().set_threads(n == 0 ? default_threads() : static_cast<int>(n));
}

void parallel_for(std::size_t n, std::size_t grain,
                  const std::function<void(std::size_t, std::size_t)>& body) {
  const ComputeScope scope;
  pool().run(n, grain, body);
}

}  // namespace euds
