#pragma once

#include <string>
#include <string_view>

namespace parley::edge {

// Output sanitising, for dialects whose clients put the model's text into a page as HTML: every
// "<script", in any case, becomes "&lt;script" in what the client receives, so a reply cannot
// open a script element in that page. The stored reply keeps the model's own text; only the
// frames change.
//
// A reply streams in pieces and the model may split "<script" across two of them, so the
// sanitiser is held per reply: it keeps back the end of a piece only while that end could still
// become "<script" (at most six bytes, all ASCII, so a UTF-8 character is never split) and
// releases it with the next piece or at Finish(). The concatenation of everything it returns is
// exactly SanitizeScriptTags() of the concatenated input.
class OutputSanitizer {
 public:
  // What may be sent now for `piece`; empty when all of it is held back.
  std::string Feed(std::string_view piece);

  // The held-back rest at the end of the reply (never a complete "<script").
  std::string Finish();

 private:
  std::string held_;
};

// The whole-text form of the same replacement.
std::string SanitizeScriptTags(std::string_view text);

}  // namespace parley::edge
