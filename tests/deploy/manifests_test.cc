// Kubernetes manifests, alert rules and the dashboard, checked with the tools
// an operator would use: kubectl kustomize, the Kubernetes API schemas (npm
// kubernetes-models), TypeScript for unknown fields, and promtool.
#include <string>

#include "gtest/gtest.h"
#include "tests/deploy/run_command.h"

namespace parley::testing {
namespace {

const std::string kSource = PARLEY_SOURCE_DIR;
const std::string kNodeDir = PARLEY_NODE_DIR;  // node_modules installed by the setup test.
const std::string kWork = PARLEY_WORK_DIR;

std::string Check(const std::string& work, const std::string& arguments) {
  return ShellQuote(kSource + "/tests/deploy/manifests/check_manifests.sh") + " " +
         ShellQuote(kNodeDir) + " " + ShellQuote(kWork + "/" + work) + " " + arguments;
}

TEST(ManifestsTest, DevOverlayRendersAndValidates) {
  const CommandResult result = RunCommand(
      Check("dev", "--overlay " + ShellQuote(kSource + "/k8s/overlays/dev") + " --profile dev"));
  EXPECT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("manifests: OK"), std::string::npos) << result.output;
}

TEST(ManifestsTest, ProdOverlayRendersAndValidates) {
  const CommandResult result = RunCommand(
      Check("prod", "--overlay " + ShellQuote(kSource + "/k8s/overlays/prod") + " --profile prod"));
  EXPECT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("manifests: OK"), std::string::npos) << result.output;
}

TEST(ManifestsTest, UnknownFieldsAreCaughtByTheStrictPass) {
  const CommandResult result = RunCommand(
      Check("unknown-fields",
            "--rendered " +
                ShellQuote(kSource + "/tests/deploy/manifests/fixtures/unknown-fields.yaml")));
  EXPECT_EQ(result.exit_code, 1) << result.output;
  EXPECT_NE(result.output.find("strict: Object literal may only specify known properties, and "
                               "'\"livenesProbe\"' does not exist"),
            std::string::npos)
      << result.output;
  EXPECT_NE(result.output.find("'\"selectr\"' does not exist"), std::string::npos) << result.output;
}

TEST(ManifestsTest, WrongTypesAreCaughtByTheSchemaPass) {
  const CommandResult result = RunCommand(Check(
      "schema-violation", "--rendered " + ShellQuote(kSource + "/tests/deploy/manifests/fixtures/"
                                                               "schema-violation.yaml")));
  EXPECT_EQ(result.exit_code, 1) << result.output;
  EXPECT_NE(result.output.find("schema: data/spec/replicas must be integer"), std::string::npos)
      << result.output;
}

TEST(ManifestsTest, PolicyViolationsAreCaught) {
  const CommandResult result = RunCommand(Check(
      "policy-violation", "--rendered " + ShellQuote(kSource + "/tests/deploy/manifests/fixtures/"
                                                               "policy-violation.yaml")));
  EXPECT_EQ(result.exit_code, 1) << result.output;
  for (const char* expected :
       {"lacks label app.kubernetes.io/version", "root filesystem is writable",
        "terminationGracePeriodSeconds 20 is not above"}) {
    EXPECT_NE(result.output.find(expected), std::string::npos) << expected << "\n" << result.output;
  }
}

TEST(ManifestsTest, AProdOverlayWithOneEdgeOrOnePersistenceReplicaIsRefused) {
  const CommandResult result = RunCommand(Check(
      "one-replica-prod",
      "--overlay " + ShellQuote(kSource + "/tests/deploy/manifests/fixtures/one-replica-prod") +
          " --profile prod"));
  EXPECT_EQ(result.exit_code, 1) << result.output;
  for (const char* expected :
       {"parley-edge must start with at least 3 replicas in prod, not 1",
        "parley-persistence must start with at least 2 replicas in prod, not 1"}) {
    EXPECT_NE(result.output.find(expected), std::string::npos) << expected << "\n" << result.output;
  }
}

TEST(AlertsTest, RulesPassPromtoolCheck) {
  const CommandResult result = RunCommand(
      "promtool check rules " + ShellQuote(kSource + "/deploy/prometheus/parley-rules.yaml"));
  EXPECT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("SUCCESS"), std::string::npos) << result.output;
}

TEST(AlertsTest, RulesPassTheirUnitTests) {
  const CommandResult result = RunCommand(
      "promtool test rules " + ShellQuote(kSource + "/deploy/prometheus/parley-rules.test.yaml"));
  EXPECT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("SUCCESS"), std::string::npos) << result.output;
}

TEST(AlertsTest, BrokenRulesAreRejected) {
  const CommandResult result = RunCommand(
      "promtool check rules " + ShellQuote(kSource + "/tests/deploy/fixtures/broken-rules.yaml"));
  EXPECT_NE(result.exit_code, 0) << result.output;
}

TEST(AlertsTest, PrometheusRuleIsRenderedFromTheRulesFile) {
  // The operator's PrometheusRule and the plain rules file must not drift.
  const CommandResult result =
      RunCommand(ShellQuote(kSource + "/deploy/prometheus/render-prometheus-rule") + " | diff -u " +
                 ShellQuote(kSource + "/k8s/overlays/prod/prometheus-rule.yaml") + " -");
  EXPECT_EQ(result.exit_code, 0)
      << "k8s/overlays/prod/prometheus-rule.yaml is stale; regenerate it with "
         "deploy/prometheus/render-prometheus-rule\n"
      << result.output;
}

TEST(DashboardTest, QueriesAreValidPromqlOverDocumentedMetrics) {
  const CommandResult result =
      RunCommand("node " + ShellQuote(kSource + "/tests/deploy/check_dashboard.cjs") + " " +
                 ShellQuote(kSource + "/deploy/grafana/parley-dashboard.json") + " " +
                 ShellQuote(kWork + "/dashboard"));
  EXPECT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("dashboard: OK"), std::string::npos) << result.output;
  // Every metric a panel shows is documented for operators.
  const CommandResult docs = RunCommand("cat " + ShellQuote(kSource + "/docs/operations.md"));
  ASSERT_EQ(docs.exit_code, 0);
  size_t pos = 0;
  int metrics = 0;
  while ((pos = result.output.find("metric: ", pos)) != std::string::npos) {
    const size_t end = result.output.find('\n', pos);
    const std::string name = result.output.substr(pos + 8, end - pos - 8);
    EXPECT_NE(docs.output.find("`" + name), std::string::npos)
        << name << " is not in docs/operations.md";
    ++metrics;
    pos = end;
  }
  EXPECT_GT(metrics, 20);
}

}  // namespace
}  // namespace parley::testing
