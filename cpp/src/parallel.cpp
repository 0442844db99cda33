#include "euds/parallel.hpp"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace euds {
namespace {

int default_threads() {
  if (const char* env = std::getenv("EUDS_NUM_THREADS")) {
    const int n = std::atoi(env);
    if (n > 0) return n;
  }
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}

thread_local bool tls_in_worker = false;

class Pool {
 public:
  ~Pool() { stop_workers(); }

  int threads() const { return threads_.load(); }
  void set_threads(int n) {
    std::lock_guard<std::mutex> run(run_mutex_);
    stop_workers();
    threads_.store(n > 0 ? n : default_threads());
  }

  void run(std::size_t n, std::size_t grain,
           const std::function<void(std::size_t, std::size_t)>& body) {
    if (n == 0) return;
    grain = std::max<std::size_t>(grain, 1);
    const std::size_t chunks = (n + grain - 1) / grain;
    const int want = static_cast<int>(std::min<std::size_t>(chunks, threads_.load()));
    std::unique_lock<std::mutex> run(run_mutex_, std::try_to_lock);
    if (want <= 1 || tls_in_worker || !run.owns_lock()) {
      body(0, n);
      return;
    }
    ensure_workers(threads_.load() - 1);

    Job job;
    job.n = n;
    job.grain = grain;
    job.body = &body;
    job.participants = want - 1;
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

  void ensure_workers(int n) {
    if (static_cast<int>(workers_.size()) == n) return;
    stop_workers();
    stopping_ = false;
    for (int i = 0; i < n; ++i) workers_.emplace_back([this] { worker_loop(); });
  }

  void stop_workers() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
    stopping_ = false;
  }

  std::atomic<int> threads_{default_threads()};
  std::mutex run_mutex_;  // one job at a time; other callers run inline
  std::mutex mutex_;
  std::condition_variable cv_, done_cv_;
  std::vector<std::thread> workers_;
  Job* job_ = nullptr;
  std::uint64_t generation_ = 0;
  bool stopping_ = false;
};

Pool& pool() {
  // Leaked on purpose: joining threads from a static destructor at interpreter exit can hang.
  static Pool* p = new Pool();
  return *p;
}

}  // namespace

int num_threads() { return pool().threads(); }
void set_num_threads(int n) { pool().set_threads(n); }

void parallel_for(std::size_t n, std::size_t grain,
                  const std::function<void(std::size_t, std::size_t)>& body) {
  pool().run(n, grain, body);
}

}  // namespace euds
