#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace parley::edge {

// Splits a streamed Markdown reply into prose and the contents of its fenced code blocks as the
// reply arrives, whatever the chunk boundaries (a chunk may end in the middle of a fence line).
// Fences follow CommonMark: a line of up to three spaces, then at least three backticks or
// tildes (an info string may follow; a backtick fence's may not contain a backtick); the block
// ends at a line of up to three spaces, at least as many of the same character, and nothing
// but spaces or tabs, or at the end of the reply. Fence lines belong to neither stream; content
// keeps its newlines and loses as many leading spaces as the opening fence was indented (at
// most). Only top-level fences are recognised: list items and block quotes are prose.
//
// Text is released as soon as no later byte can change what it is, so the pieces returned for a
// reply fed in any chunks concatenate (per kind, in order) to the same thing. Every released
// unit (a byte of prose or code, a finished block) has a position: the number of reply bytes
// consumed when it was decided, or past the end for what only the end of the reply decides.
// Positions let a stream be continued after a given point by replaying the reply from the start.
class FenceSplitter {
 public:
  enum class Kind {
    kProse,
    kCode,       // Inside a fenced block.
    kCodeBlock,  // A block just closed; `text` is its whole content.
  };

  struct Piece {
    Kind kind = Kind::kProse;
    std::string text;
    // Position of the last unit in the piece; see the class comment.
    int64_t position = 0;

    bool operator==(const Piece&) const = default;
  };

  // Positions Finish() gives what the end of the reply decides: held text, then the open block.
  static constexpr int64_t kHeldAtEndOffset = 1;
  static constexpr int64_t kBlockAtEndOffset = 2;

  // Units at positions up to `emit_after` are tracked but not returned: the caller sent them
  // before (0 returns everything).
  explicit FenceSplitter(int64_t emit_after = 0) : emit_after_(emit_after) {}

  // The next bytes of the reply. Consecutive units of one kind come back as one piece.
  std::vector<Piece> Feed(std::string_view text);

  // The reply has ended: text still held is released, and a block still open closes.
  std::vector<Piece> Finish();

  // Reply bytes fed so far.
  int64_t consumed() const { return consumed_; }

 private:
  enum class Mode { kProse, kCode };
  // Where the current line stands.
  enum class Line {
    kStart,    // Undecided: it may still be a fence line; its bytes so far are held.
    kText,     // Decided: plain prose or code content to its end.
    kFence,    // Prose mode: a complete opening fence run; the rest (info string) is held.
    kClosing,  // Code mode: a complete closing run followed by spaces or tabs only.
  };

  void Step(char c);
  void StepProseStart(char c);
  void StepCodeStart(char c);
  void StepText(char c);
  void StepFenceInfo(char c);
  void StepClosing(char c);
  // The held line start turns out to be text; `c` (the deciding byte) follows it.
  void ReleaseHeldAsText(char c);
  void Release(Kind kind, std::string_view text, int64_t position);
  void NewLine();

  int64_t emit_after_;
  std::vector<Piece> out_;
  int64_t consumed_ = 0;
  Mode mode_ = Mode::kProse;
  Line line_ = Line::kStart;
  // The current line's undecided bytes.
  std::string held_;
  int indent_ = 0;     // Leading spaces of the current line, up to 3.
  char run_char_ = 0;  // The fence character the current line starts with, if any.
  int run_ = 0;        // How many of it.
  // The open block: its fence and the content so far.
  char fence_char_ = 0;
  int fence_length_ = 0;
  int fence_indent_ = 0;
  std::string block_;
};

}  // namespace parley::edge
