#include "edge/protocol/fence_splitter.h"

#include <algorithm>
#include <utility>

namespace parley::edge {

std::vector<FenceSplitter::Piece> FenceSplitter::Feed(std::string_view text) {
  for (char c : text) {
    Step(c);
  }
  return std::exchange(out_, {});
}

std::vector<FenceSplitter::Piece> FenceSplitter::Finish() {
  const int64_t held_at = consumed_ + kHeldAtEndOffset;
  const int64_t block_at = consumed_ + kBlockAtEndOffset;
  if (mode_ == Mode::kProse) {
    if (line_ == Line::kFence || (line_ == Line::kStart && run_ >= 3)) {
      // The reply ends on an opening fence: an empty block, closed by the end.
      Release(Kind::kCodeBlock, "", block_at);
    } else if (!held_.empty()) {
      Release(Kind::kProse, held_, held_at);
    }
  } else {
    const bool ends_on_closing_fence =
        line_ == Line::kClosing || (line_ == Line::kStart && run_ >= fence_length_);
    if (!ends_on_closing_fence && !held_.empty()) {
      std::string_view held = held_;
      held.remove_prefix(std::min<size_t>(fence_indent_, indent_));
      block_.append(held);
      Release(Kind::kCode, held, held_at);
    }
    Release(Kind::kCodeBlock, block_, block_at);
    block_.clear();
  }
  mode_ = Mode::kProse;
  NewLine();
  return std::exchange(out_, {});
}

void FenceSplitter::Step(char c) {
  ++consumed_;
  switch (line_) {
    case Line::kStart:
      if (mode_ == Mode::kProse) {
        StepProseStart(c);
      } else {
        StepCodeStart(c);
      }
      return;
    case Line::kText:
      StepText(c);
      return;
    case Line::kFence:
      StepFenceInfo(c);
      return;
    case Line::kClosing:
      StepClosing(c);
      return;
  }
}

void FenceSplitter::StepText(char c) {
  if (mode_ == Mode::kCode) {
    block_.push_back(c);
  }
  Release(mode_ == Mode::kProse ? Kind::kProse : Kind::kCode, std::string_view(&c, 1), consumed_);
  if (c == '\n') {
    NewLine();
  }
}

void FenceSplitter::StepFenceInfo(char c) {
  if (c == '\n') {
    // An opening fence: its line is sent in neither stream.
    mode_ = Mode::kCode;
    fence_char_ = run_char_;
    fence_length_ = run_;
    fence_indent_ = indent_;
    block_.clear();
    NewLine();
  } else if (run_char_ == '`' && c == '`') {
    // A backtick in a backtick fence's info string: inline code, not a fence.
    ReleaseHeldAsText(c);
  } else {
    held_.push_back(c);
  }
}

void FenceSplitter::StepClosing(char c) {
  if (c == '\n') {
    Release(Kind::kCodeBlock, block_, consumed_);
    block_.clear();
    mode_ = Mode::kProse;
    NewLine();
  } else if (c == ' ' || c == '\t' || c == '\r') {
    held_.push_back(c);
  } else {
    // Anything else after the run makes the line content.
    ReleaseHeldAsText(c);
  }
}

void FenceSplitter::StepProseStart(char c) {
  if (run_ == 0) {
    if (c == ' ' && indent_ < 3) {
      ++indent_;
      held_.push_back(c);
    } else if (c == '`' || c == '~') {
      run_char_ = c;
      run_ = 1;
      held_.push_back(c);
    } else {
      ReleaseHeldAsText(c);
    }
    return;
  }
  if (c == run_char_) {
    ++run_;
    held_.push_back(c);
  } else if (run_ >= 3) {
    // The run is a fence; what follows on its line is the info string.
    line_ = Line::kFence;
    StepFenceInfo(c);
  } else {
    ReleaseHeldAsText(c);
  }
}

void FenceSplitter::StepCodeStart(char c) {
  if (run_ == 0) {
    if (c == ' ' && indent_ < 3) {
      ++indent_;
      held_.push_back(c);
    } else if (c == fence_char_) {
      run_char_ = c;
      run_ = 1;
      held_.push_back(c);
    } else {
      ReleaseHeldAsText(c);
    }
    return;
  }
  if (c == fence_char_) {
    ++run_;
    held_.push_back(c);
  } else if (run_ >= fence_length_ && (c == ' ' || c == '\t' || c == '\r' || c == '\n')) {
    line_ = Line::kClosing;
    StepClosing(c);
  } else {
    ReleaseHeldAsText(c);
  }
}

void FenceSplitter::ReleaseHeldAsText(char c) {
  held_.push_back(c);
  std::string_view text = held_;
  if (mode_ == Mode::kCode) {
    // Content loses the indentation its opening fence had, as far as it has that much.
    text.remove_prefix(std::min(fence_indent_, indent_));
    block_.append(text);
  }
  Release(mode_ == Mode::kProse ? Kind::kProse : Kind::kCode, text, consumed_);
  held_.clear();
  line_ = Line::kText;
  if (c == '\n') {
    NewLine();
  }
}

void FenceSplitter::Release(Kind kind, std::string_view text, int64_t position) {
  if (position <= emit_after_ || (text.empty() && kind != Kind::kCodeBlock)) {
    return;
  }
  if (kind != Kind::kCodeBlock && !out_.empty() && out_.back().kind == kind) {
    out_.back().text.append(text);
    out_.back().position = position;
    return;
  }
  out_.push_back(Piece{kind, std::string(text), position});
}

void FenceSplitter::NewLine() {
  line_ = Line::kStart;
  held_.clear();
  indent_ = 0;
  run_char_ = 0;
  run_ = 0;
}

}  // namespace parley::edge
