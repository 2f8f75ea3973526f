#include "tests/support/child_process.h"

#include <signal.h>
#include <stdlib.h>

#include <fstream>
#include <string>

#include "gtest/gtest.h"

namespace parley::testing {
namespace {

class ChildProcessTest : public ::testing::Test {
 protected:
  // Runs system tools instead of Parley binaries.
  void SetUp() override { setenv("PARLEY_BIN_DIR", "/bin", 1); }
  void TearDown() override { unsetenv("PARLEY_BIN_DIR"); }
};

TEST_F(ChildProcessTest, ReadsListeningAddressAndStopsOnSignal) {
  auto child = ChildProcess::Start(
      "sh", {"-c",
             R"(echo '{"msg":"listening","listen":"127.0.0.1:5","metrics_listen":"127.0.0.1:6"}';
                exec sleep 60)"});
  ASSERT_NE(child, nullptr);
  EXPECT_EQ(child->WaitForListening(), "127.0.0.1:5");
  EXPECT_EQ(child->WaitForListening("metrics_listen"), "127.0.0.1:6");
  child->Signal(SIGTERM);
  EXPECT_EQ(child->Wait(), 128 + SIGTERM);
}

TEST_F(ChildProcessTest, ReportsExitCodeAndEveryLine) {
  auto child = ChildProcess::Start("sh", {"-c", "echo one; echo two; exit 3"});
  ASSERT_NE(child, nullptr);
  EXPECT_EQ(child->Wait(), 3);
  EXPECT_EQ(child->WaitForLine("nothing like this"), "");
  EXPECT_EQ(child->Lines(), (std::vector<std::string>{"one", "two"}));
}

TEST_F(ChildProcessTest, StopReturnsOnceTheProcessIsStoppedAndItGoesOnAfterSigcont) {
  auto child = ChildProcess::Start("sh", {"-c", "while :; do :; done"});
  ASSERT_NE(child, nullptr);
  ASSERT_TRUE(child->Stop());
  std::ifstream stat("/proc/" + std::to_string(child->pid()) + "/stat");
  std::string line;
  std::getline(stat, line);
  const size_t close = line.rfind(')');
  ASSERT_NE(close, std::string::npos);
  EXPECT_EQ(line.substr(close + 2, 1), "T") << line;
  child->Signal(SIGCONT);
  child->Signal(SIGTERM);
  EXPECT_EQ(child->Wait(), 128 + SIGTERM);
}

TEST_F(ChildProcessTest, PassesEnvironment) {
  auto child = ChildProcess::Start("sh", {"-c", "echo value=$PARLEY_X"}, {{"PARLEY_X", "42"}});
  ASSERT_NE(child, nullptr);
  EXPECT_EQ(child->WaitForLine("value="), "value=42");
}

}  // namespace
}  // namespace parley::testing
