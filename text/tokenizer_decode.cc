// Decoding and streaming decoding.
//
// HF decoders transform a list of token strings. Every decoder we support is, in effect,
// a per-token transform to bytes followed by concatenation, plus two sequence-level rules
// (dropping leading / trailing characters of the whole text, from Strip after Fuse and from
// Metaspace's first-token rule). Expressing decoding that way lets Decode and
// StreamingDecoder share one code path, so streamed text always concatenates to Decode's.
// Supported decoders: ByteLevel, Metaspace, Sequence of Replace (String) / ByteFallback /
// Fuse / Strip / ByteLevel / Metaspace. No decoder: tokens joined with ' ' (as HF).
//
// One deliberate difference from HF's Rust ByteFallback: an ill-formed run of byte tokens
// becomes one U+FFFD per maximal ill-formed subsequence (as from_utf8_lossy / TextDecoder
// do) rather than one per byte. It only shows on garbage model output.
// A Replace after Fuse is applied per token: identical for the one-character patterns real
// files use ("▁" -> " ").
#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_replace.h"
#include "text/tokenizer.h"
#include "text/tokenizer_impl.h"
#include "text/unicode_tables.h"

namespace accullm::text {
namespace {

// "<0xNN>" -> NN, as HF's ByteFallback recognises it.
int ByteFallbackValue(std::string_view t) {
  if (t.size() != 6 || !absl::StartsWith(AV(t), "<0x") || t[5] != '>') return -1;
  auto hex = [](char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  const int hi = hex(t[3]), lo = hex(t[4]);
  return (hi < 0 || lo < 0) ? -1 : hi * 16 + lo;
}

// Moves the complete (or definitively ill-formed) prefix of `pending` to `out` as valid
// UTF-8, keeping an unfinished final character. `at_end`: nothing more will come.
void DrainUtf8(std::string* pending, bool at_end, std::string* out) {
  size_t i = 0;
  const std::string& p = *pending;
  while (i < p.size()) {
    const unsigned char c = p[i];
    if (c < 0x80) {
      out->push_back(static_cast<char>(c));
      ++i;
      continue;
    }
    const std::string_view rest = std::string_view(p).substr(i);
    bool complete;
    const size_t valid = Utf8SequenceLength(rest, &complete);
    if (complete) {
      out->append(rest.substr(0, valid));
      i += valid;
    } else if (valid > 0 && valid == rest.size() && !at_end) {
      break;  // may still complete
    } else {
      out->append("\xEF\xBF\xBD");
      i += std::max<size_t>(1, valid);
    }
  }
  pending->erase(0, i);
}

}  // namespace

void TokenizerImpl::StartDecode(DecodeState* state) const {
  *state = DecodeState{};
  state->lead_strip_left = decoder_.global_strip_start;
}

void TokenizerImpl::DecodeToken(int32_t id, bool skip_special, DecodeState* state) const {
  if (id < 0 || static_cast<size_t>(id) >= id_to_token_.size()) return;
  if (skip_special && is_special_[id]) return;
  const std::string_view token = id_to_token_[id];
  if (token.empty()) return;
  const bool first = state->tokens++ == 0;

  std::string t = (decoder_.none && !first) ? " " : "";
  t.append(token);
  for (const DecoderOp& op : decoder_.per_token) {
    switch (op.kind) {
      case DecoderOp::Kind::kReplace: t = absl::StrReplaceAll(t, {{op.from, op.to}}); break;
      case DecoderOp::Kind::kByteFallback:
        if (int b = ByteFallbackValue(t); b >= 0) t.assign(1, static_cast<char>(b));
        break;
      case DecoderOp::Kind::kByteLevel: {
        // Characters of GPT-2's byte alphabet become their bytes; a token holding any other
        // character (e.g. an added token) is kept as its UTF-8, as HF does.
        std::string bytes;
        bool ok = IsValidUtf8(t);
        for (size_t pos = 0; ok && pos < t.size();) {
          const int b = UnicodeToByte(NextCodePoint(t, &pos));
          if (b < 0) ok = false;
          else bytes.push_back(static_cast<char>(b));
        }
        if (ok) t.swap(bytes);
        break;
      }
      case DecoderOp::Kind::kMetaspace:
        t = absl::StrReplaceAll(t, {{op.from, " "}});
        if (first && op.strip_first && !t.empty() && t[0] == ' ') t.erase(0, 1);
        break;
      case DecoderOp::Kind::kStrip: {
        size_t b = 0, e = t.size();
        for (int k = 0; k < op.start && t.compare(b, op.content.size(), op.content) == 0; ++k) b += op.content.size();
        for (int k = 0; k < op.stop && e >= b + op.content.size() &&
                        t.compare(e - op.content.size(), op.content.size(), op.content) == 0;
             ++k)
          e -= op.content.size();
        t = t.substr(b, e - b);
        break;
      }
    }
  }

  const std::string& sc = decoder_.global_strip_content;
  if (!sc.empty()) {
    size_t b = 0;
    while (!state->lead_done && state->lead_strip_left > 0 && t.compare(b, sc.size(), sc) == 0) {
      b += sc.size();
      --state->lead_strip_left;
    }
    t.erase(0, b);
    if (!t.empty()) state->lead_done = true;
    if (decoder_.global_strip_stop > 0) {
      // Hold back the trailing run of strippable characters: only the end of the text
      // decides whether they are dropped.
      size_t e = t.size();
      while (e >= sc.size() && t.compare(e - sc.size(), sc.size(), sc) == 0) e -= sc.size();
      if (e > 0) {
        state->pending += state->held;
        state->held.clear();
      }
      state->pending.append(t, 0, e);
      state->held.append(t, e, std::string::npos);
      return;
    }
  }
  state->pending += t;
}

void TokenizerImpl::FinishDecode(DecodeState* state) const {
  const std::string& sc = decoder_.global_strip_content;
  if (!state->held.empty()) {
    size_t e = state->held.size();
    for (int k = 0; k < decoder_.global_strip_stop && e >= sc.size(); ++k) e -= sc.size();
    state->pending.append(state->held, 0, e);
    state->held.clear();
  }
}

std::string Tokenizer::Decode(const std::vector<int32_t>& ids, bool skip_special) const {
  DecodeState state;
  impl_->StartDecode(&state);
  for (int32_t id : ids) impl_->DecodeToken(id, skip_special, &state);
  impl_->FinishDecode(&state);
  std::string out;
  out.reserve(state.pending.size());
  DrainUtf8(&state.pending, /*at_end=*/true, &out);
  return out;
}

struct StreamingDecoder::State : DecodeState {};

StreamingDecoder::StreamingDecoder(const Tokenizer& tokenizer, bool skip_special)
    : tokenizer_(tokenizer), skip_special_(skip_special), state_(std::make_unique<State>()) {
  tokenizer_.impl().StartDecode(state_.get());
}
StreamingDecoder::~StreamingDecoder() = default;

std::string StreamingDecoder::Push(int32_t id) {
  tokenizer_.impl().DecodeToken(id, skip_special_, state_.get());
  std::string out;
  DrainUtf8(&state_->pending, /*at_end=*/false, &out);
  return out;
}

std::string StreamingDecoder::Flush() {
  tokenizer_.impl().FinishDecode(state_.get());
  std::string out;
  DrainUtf8(&state_->pending, /*at_end=*/true, &out);
  tokenizer_.impl().StartDecode(state_.get());
  return out;
}

}  // namespace accullm::text
