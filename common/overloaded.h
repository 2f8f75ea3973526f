#pragma once

namespace parley::common {

// One callable out of several lambdas, for std::visit over a variant of commands or events.
template <class... Ts>
struct Overloaded : Ts... {
  using Ts::operator()...;
};
// Spelled out for compilers without C++20 aggregate deduction (clang 14, used for fuzzing).
template <class... Ts>
Overloaded(Ts...) -> Overloaded<Ts...>;

}  // namespace parley::common
