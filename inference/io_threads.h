#pragma once

#include <thread>
#include <vector>

#include "boost/asio/executor_work_guard.hpp"
#include "boost/asio/io_context.hpp"

namespace parley::inference {

// The threads every engine runs its timers and sockets on. Owned by main (or a
// test); it must outlive every engine and generation that uses it.
class IoThreads {
 public:
  explicit IoThreads(int threads);
  ~IoThreads();  // Stops and joins.

  IoThreads(const IoThreads&) = delete;
  IoThreads& operator=(const IoThreads&) = delete;

  boost::asio::io_context& context() { return context_; }

 private:
  boost::asio::io_context context_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
  std::vector<std::thread> threads_;
};

}  // namespace parley::inference
