// The container image cannot be built here (no container engine), so these
// tests check the Dockerfile against the binaries this tree builds.
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "tests/deploy/run_command.h"

namespace parley::testing {
namespace {

const std::string kSourceDir = PARLEY_SOURCE_DIR;

std::string CheckCommand(const std::string& dockerfile) {
  std::string command =
      ShellQuote(kSourceDir + "/tests/deploy/check_runtime_libs.sh") + " " + ShellQuote(dockerfile);
  for (absl::string_view binary : absl::StrSplit(PARLEY_RUNTIME_BINARIES, ':')) {
    command.append(" ").append(ShellQuote(std::string(binary)));
  }
  return command;
}

TEST(DockerfileTest, RuntimeStageProvidesEverySharedLibrary) {
  const CommandResult result = RunCommand(CheckCommand(kSourceDir + "/Dockerfile"));
  EXPECT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("runtime-libs: OK"), std::string::npos) << result.output;
}

TEST(DockerfileTest, MissingRuntimePackageIsCaught) {
  const CommandResult result =
      RunCommand(CheckCommand(kSourceDir + "/tests/deploy/fixtures/Dockerfile.missing-grpc"));
  EXPECT_EQ(result.exit_code, 1) << result.output;
  EXPECT_NE(result.output.find("MISSING /lib/x86_64-linux-gnu/libgrpc++.so.1.51"),
            std::string::npos)
      << result.output;
}

TEST(DockerfileTest, RootUserIsCaught) {
  const CommandResult result =
      RunCommand(CheckCommand(kSourceDir + "/tests/deploy/fixtures/Dockerfile.root-user"));
  EXPECT_EQ(result.exit_code, 1) << result.output;
  EXPECT_NE(result.output.find("non-root USER"), std::string::npos) << result.output;
}

TEST(DockerfileTest, BuildStageUsesTheDeveloperPackageList) {
  // The build stage runs scripts/install-deps itself, so it cannot drift from
  // what developers and CI install.
  const CommandResult result =
      RunCommand("grep -E '^(COPY scripts/install-deps |RUN scripts/install-deps)' " +
                 ShellQuote(kSourceDir + "/Dockerfile"));
  EXPECT_EQ(result.exit_code, 0);
  EXPECT_NE(result.output.find("RUN scripts/install-deps"), std::string::npos) << result.output;
  EXPECT_EQ(
      RunCommand("grep -q '^FROM debian:12 AS build' " + ShellQuote(kSourceDir + "/Dockerfile"))
          .exit_code,
      0);
}

}  // namespace
}  // namespace parley::testing
