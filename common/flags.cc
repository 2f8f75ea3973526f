#include "common/flags.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"

namespace parley::common {
namespace {

std::string EnvironmentVariable(absl::string_view flag_name) {
  return absl::StrCat("PARLEY_", absl::AsciiStrToUpper(flag_name));
}

// Parley's own flags, by name; Abseil's (--flagfile, --help, ...) are not listed.
std::vector<absl::CommandLineFlag*> ParleyFlags() {
  std::vector<absl::CommandLineFlag*> flags;
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    if (!absl::StrContains(flag->Filename(), "absl/")) {
      flags.push_back(flag);
    }
  }
  std::sort(flags.begin(), flags.end(),
            [](const auto* a, const auto* b) { return a->Name() < b->Name(); });
  return flags;
}

void PrintHelp(absl::string_view usage) {
  std::string text = absl::StrCat("usage: ", usage,
                                  "\n\nEvery flag can also be set by the environment variable "
                                  "PARLEY_<FLAG> (upper case); the command line wins.\n");
  for (const absl::CommandLineFlag* flag : ParleyFlags()) {
    const std::string default_value = flag->DefaultValue();
    absl::StrAppend(&text, "\n  --", flag->Name(), "  (", EnvironmentVariable(flag->Name()),
                    ")  default: ", default_value.empty() ? "\"\"" : default_value, "\n");
    for (absl::string_view line : absl::StrSplit(flag->Help(), '\n')) {
      absl::StrAppend(&text, "      ", line, "\n");
    }
  }
  std::fputs(text.c_str(), stdout);
}

[[noreturn]] void UsageError(absl::string_view program, absl::string_view usage,
                             absl::string_view problem) {
  std::fprintf(stderr, "%s: %s\nusage: %s\n(--help lists every flag)\n",
               std::string(program).c_str(), std::string(problem).c_str(),
               std::string(usage).c_str());
  std::exit(2);
}

bool IsHelpFlag(absl::string_view name) {
  return name == "help" || name == "helpfull" || name == "helpshort" || name == "helppackage" ||
         name == "helpmatch";
}

// Checks every `--name[=value]` before Abseil parses the line, because Abseil exits 1 for both
// --help and an unknown flag. Values are parsed into their flags here, which Abseil's parse then
// sets again to the same value.
void CheckCommandLine(int argc, char** argv, absl::string_view usage) {
  const absl::string_view program = argv[0] == nullptr ? "parley" : argv[0];
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (arg == "--") {
      return;  // The rest is positional.
    }
    if (arg.size() < 2 || arg[0] != '-') {
      continue;
    }
    absl::ConsumePrefix(&arg, "-");
    absl::ConsumePrefix(&arg, "-");
    const size_t equals = arg.find('=');
    const absl::string_view name = arg.substr(0, equals);
    const bool has_value = equals != absl::string_view::npos;
    if (IsHelpFlag(name)) {
      PrintHelp(usage);
      std::exit(0);
    }
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    if (flag == nullptr && !has_value && absl::StartsWith(name, "no")) {
      const absl::CommandLineFlag* negated = absl::FindCommandLineFlag(name.substr(2));
      if (negated != nullptr && negated->IsOfType<bool>()) {
        continue;  // --noflag sets a boolean to false.
      }
    }
    if (flag == nullptr) {
      UsageError(program, usage, absl::StrCat("unknown flag --", name));
    }
    std::string value;
    if (has_value) {
      value = std::string(arg.substr(equals + 1));
    } else if (flag->IsOfType<bool>()) {
      continue;
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      UsageError(program, usage, absl::StrCat("--", name, " needs a value"));
    }
    std::string error;
    if (!flag->ParseFrom(value, &error)) {
      UsageError(program, usage, absl::StrCat("invalid --", name, "=", value, ": ", error));
    }
  }
}

}  // namespace

void ParseFlags(int argc, char** argv, std::string_view usage_text) {
  const absl::string_view usage(usage_text.data(), usage_text.size());
  absl::SetProgramUsageMessage(usage);
  for (absl::CommandLineFlag* flag : ParleyFlags()) {
    const std::string variable = EnvironmentVariable(flag->Name());
    const char* value = std::getenv(variable.c_str());
    if (value == nullptr) {
      continue;
    }
    std::string error;
    if (!flag->ParseFrom(value, &error)) {
      std::fprintf(stderr, "invalid %s=%s: %s\n", variable.c_str(), value, error.c_str());
      std::exit(2);
    }
  }
  CheckCommandLine(argc, argv, usage);
  absl::ParseCommandLine(argc, argv);
}

}  // namespace parley::common
