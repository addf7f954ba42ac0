#include "thread_pool.h"

#include <cstdlib>

namespace attnkit {

ThreadPool::ThreadPool(int threads) { start(threads); }
ThreadPool::~ThreadPool() { stop(); }

int ThreadPool::default_threads() {
  if (const char* env = std::getenv("ATTNKIT_NUM_THREADS")) {
    const int n = std::atoi(env);
    if (n > 0) return n;
  }
  const unsigned hw = std::thread::hardware_concurrency();
  return hw ? static_cast<int>(hw) : 1;
}

ThreadPool& ThreadPool::global() {
  // Leaked on purpose: joining threads from a static destructor at process exit can deadlock.
  static ThreadPool* pool = new ThreadPool(default_threads());
  return *pool;
}

void ThreadPool::start(int threads) {
  threads_ = threads < 1 ? 1 : threads;
  quit_ = false;
  for (int i = 1; i < threads_.load(); ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

void ThreadPool::stop() {
  {
    std::lock_guard<std::mutex> g(mu_);
    quit_ = true;
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
  workers_.clear();
}

int ThreadPool::threads() const {
  const int pending = pending_threads_.load();
  return pending > 0 ? pending : threads_.load();
}

void ThreadPool::resize(int threads) {
  pending_threads_.store(threads < 1 ? 1 : threads);
  // Apply now if no job is running; otherwise the next job applies it.
  std::unique_lock<std::mutex> job(job_lock_, std::try_to_lock);
  if (job.owns_lock()) apply_pending_resize();
}

void ThreadPool::apply_pending_resize() {
  const int n = pending_threads_.exchange(0);
  if (n <= 0 || n == threads_.load()) return;
  stop();
  start(n);
}

void ThreadPool::run_tasks(int worker_id) {
  for (;;) {
    const int64_t i = next_.fetch_add(1, std::memory_order_relaxed);
    if (i >= n_tasks_) break;
    (*task_)(i, worker_id);
  }
}

void ThreadPool::worker_loop(int id) {
  uint64_t seen = 0;
  for (;;) {
    {
      std::unique_lock<std::mutex> g(mu_);
      wake_.wait(g, [&] { return quit_ || generation_ != seen; });
      if (quit_) return;
      seen = generation_;
      ++active_;
    }
    run_tasks(id);
    {
      std::lock_guard<std::mutex> g(mu_);
      if (--active_ == 0) done_.notify_all();
    }
  }
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t, int)>& task) {
  if (n <= 0) return;
  std::lock_guard<std::mutex> job(job_lock_);
  apply_pending_resize();
  if (n == 1 || threads_.load() == 1) {
    for (int64_t i = 0; i < n; ++i) task(i, 0);
    return;
  }
  {
    std::lock_guard<std::mutex> g(mu_);
    task_ = &task;
    n_tasks_ = n;
    next_.store(0, std::memory_order_relaxed);
    ++generation_;
  }
  wake_.notify_all();
  run_tasks(0);
  std::unique_lock<std::mutex> g(mu_);
  done_.wait(g, [&] { return active_ == 0; });
  task_ = nullptr;
}

}  // namespace attnkit
