#include "inference/io_threads.h"

namespace parley::inference {

IoThreads::IoThreads(int threads) : work_(boost::asio::make_work_guard(context_)) {
  for (int i = 0; i < (threads > 0 ? threads : 1); ++i) {
    threads_.emplace_back([this] { context_.run(); });
  }
}

IoThreads::~IoThreads() {
  work_.reset();
  context_.stop();
  for (std::thread& thread : threads_) {
    thread.join();
  }
}

}  // namespace parley::inference
