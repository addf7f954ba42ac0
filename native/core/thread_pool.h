// attnkit's own CPU thread pool (never libuv's). One parallel job runs at a time; a caller that
// submits a job also works on it, so a pool of N threads has N-1 workers plus the caller.
// Concurrent callers (several async calls in flight) queue on the job lock.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace attnkit {

class ThreadPool {
 public:
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  // The size the pool has, or will have from its next job if a resize is pending.
  int threads() const;
  // Takes effect at the start of the next job, so it never waits for a running one.
  void resize(int threads);

  // Runs task(i) for i in [0, n) across the pool; returns when all are done. Tasks are handed out
  // in index order, one at a time, so put the heaviest first. task receives (index, worker id).
  void parallel_for(int64_t n, const std::function<void(int64_t, int)>& task);

  static ThreadPool& global();
  static int default_threads();

 private:
  void start(int threads);
  void stop();
  void worker_loop(int id);
  void run_tasks(int worker_id);

  void apply_pending_resize();  // caller holds job_lock_

  std::atomic<int> threads_{1};
  std::atomic<int> pending_threads_{0};  // 0: none
  std::vector<std::thread> workers_;
  std::mutex job_lock_;  // serialises jobs and resizes

  std::mutex mu_;
  std::condition_variable wake_;
  std::condition_variable done_;
  uint64_t generation_ = 0;
  bool quit_ = false;
  const std::function<void(int64_t, int)>* task_ = nullptr;
  int64_t n_tasks_ = 0;
  std::atomic<int64_t> next_{0};
  int active_ = 0;
};

}  // namespace attnkit
