#pragma once

#include <string_view>

namespace parley::common {

// Parses the command line after applying `PARLEY_<FLAG>` environment variables
// (upper-cased flag name) as defaults, so a flag given on the command line
// always wins over the environment.
//
// Exit codes follow the command-line convention that scripts and package
// managers read: `--help` prints every flag to stdout and exits 0; an unknown
// flag, a missing value or a bad value (on the command line or in the
// environment) prints the usage line to stderr and exits 2.
void ParseFlags(int argc, char** argv, std::string_view usage);

}  // namespace parley::common
