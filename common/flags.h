#pragma once

#include <string_view>

namespace parley::common {

// Parses the command line after applying `PARLEY_<FLAG>` environment variables
// (upper-cased flag name) as defaults, so a flag given on the command line
// always wins over the environment. Exits with a clear message on a bad value.
void ParseFlags(int argc, char** argv, std::string_view usage);

}  // namespace parley::common
