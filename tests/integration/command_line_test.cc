// The binaries' command lines as scripts and package managers see them: exit codes and where
// the text goes.
#include <signal.h>
#include <sys/wait.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/child_process.h"
#include "tests/support/ws_client.h"

namespace parley::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

struct Outcome {
  int exit_code = -1;
  std::string out;
  std::string err;
};

std::string ReadFile(const std::string& path) {
  std::ifstream file(path);
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

// Runs `binary` with `args` (already shell-quoted) and an optional environment assignment.
Outcome RunBinary(const std::string& binary, const std::string& args, const std::string& env = "") {
  const std::string dir = MakeTempDir();
  const std::string command =
      absl::StrCat(env, env.empty() ? "" : " ", "'", BinaryPath(binary), "' ", args, " >", dir,
                   "/out 2>", dir, "/err </dev/null");
  const int status = std::system(command.c_str());
  Outcome outcome;
  outcome.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  outcome.out = ReadFile(dir + "/out");
  outcome.err = ReadFile(dir + "/err");
  return outcome;
}

struct Binary {
  std::string name;
  std::string int_flag;  // One of its integer flags.
};

void PrintTo(const Binary& binary, std::ostream* out) { *out << binary.name; }

class CommandLineTest : public ::testing::TestWithParam<Binary> {
 protected:
  const std::string& binary() const { return GetParam().name; }
};

TEST_P(CommandLineTest, HelpListsEveryFlagWithItsVariableAndExitsZero) {
  const Outcome help = RunBinary(binary(), "--help");
  EXPECT_EQ(help.exit_code, 0) << help.err;
  EXPECT_THAT(help.out, HasSubstr("usage: " + binary()));
  EXPECT_THAT(help.out, HasSubstr("--listen"));
  EXPECT_THAT(help.out, HasSubstr("PARLEY_LISTEN"));
  // Abseil's own flags are not Parley's to document.
  EXPECT_THAT(help.out, Not(HasSubstr("--flagfile")));
  EXPECT_EQ(help.err, "");
}

TEST_P(CommandLineTest, AnUnknownFlagExitsTwoWithTheUsageLine) {
  const Outcome unknown = RunBinary(binary(), "--no_such_flag=1");
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_THAT(unknown.err, HasSubstr("unknown flag --no_such_flag"));
  EXPECT_THAT(unknown.err, HasSubstr("usage: " + binary()));
  EXPECT_EQ(unknown.out, "");
}

TEST_P(CommandLineTest, ABadValueOrAMissingOneExitsTwo) {
  const std::string& flag = GetParam().int_flag;
  const Outcome missing = RunBinary(binary(), "--listen");
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_THAT(missing.err, HasSubstr("--listen needs a value"));

  const Outcome bad = RunBinary(binary(), absl::StrCat("--", flag, "=soon"));
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_THAT(bad.err, HasSubstr(absl::StrCat("invalid --", flag, "=soon")));

  const std::string variable = "PARLEY_" + absl::AsciiStrToUpper(flag);
  const Outcome bad_environment = RunBinary(binary(), "--help", variable + "=soon");
  EXPECT_EQ(bad_environment.exit_code, 2);
  EXPECT_THAT(bad_environment.err, HasSubstr(variable + "=soon"));
}

// Two services on one host: the second on a taken address must say so and go, not crash.
TEST(EdgeStartupTest, ASecondEdgeOnATakenAddressNamesItAndExitsOne) {
  // The edge starts without its backends (they only make /readyz fail).
  const std::vector<std::string> backends = {"--inference=127.0.0.1:1", "--persistence=127.0.0.1:1",
                                             "--allow_anonymous"};
  std::vector<std::string> args = backends;
  args.push_back("--listen=127.0.0.1:0");
  auto first = ChildProcess::Start("parley-edge", args);
  ASSERT_NE(first, nullptr);
  const std::string listen = first->WaitForListening();
  ASSERT_FALSE(listen.empty());

  args = backends;
  args.push_back("--listen=" + listen);
  auto second = ChildProcess::Start("parley-edge", args);
  ASSERT_NE(second, nullptr);
  EXPECT_EQ(second->Wait(), 1);
  bool named = false;
  for (const std::string& line : second->Lines()) {
    named = named ||
            (line.find("cannot start") != std::string::npos &&
             line.find(listen) != std::string::npos && line.find("in use") != std::string::npos);
  }
  EXPECT_TRUE(named) << "no log line names " << listen << " as in use";

  // The first edge still answers.
  absl::StatusOr<HttpResponse> health = HttpGet(listen, "/healthz");
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(health->status, 200);
  first->Signal(SIGTERM);
  EXPECT_EQ(first->Wait(), 0);
}

INSTANTIATE_TEST_SUITE_P(Binaries, CommandLineTest,
                         ::testing::Values(Binary{"parley-edge", "drain_grace_ms"},
                                           Binary{"parley-inference", "shutdown_grace_ms"},
                                           Binary{"parley-persistence", "store_threads"}),
                         [](const auto& info) {
                           return info.param.name.substr(info.param.name.find('-') + 1);
                         });

}  // namespace
}  // namespace parley::testing
