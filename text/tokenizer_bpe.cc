#include "text/tokenizer_bpe.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "text/tokenizer_impl.h"
#include "text/unicode_tables.h"

namespace accullm::text {
namespace {

// Ids beyond this are refused: they would make id-indexed tables absurdly large and no real
// vocabulary comes close.
constexpr int64_t kMaxTokenId = 1 << 24;

struct ByteTables {
  char32_t to_unicode[256];
  int16_t from_unicode[324];  // every mapped code point is below 0x144
};

const ByteTables& Tables() {
  static const ByteTables t = [] {
    ByteTables t{};
    std::fill(std::begin(t.from_unicode), std::end(t.from_unicode), -1);
    // Printable Latin-1 bytes stand for themselves; the rest are shifted to 256 + n in order.
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      t.to_unicode[b] = printable ? b : 256 + n++;
      t.from_unicode[t.to_unicode[b]] = static_cast<int16_t>(b);
    }
    return t;
  }();
  return t;
}

// Raw bytes of a byte-level vocabulary string; nullopt when some character stands for no byte.
std::optional<std::string> ByteLevelToBytes(std::string_view token) {
  if (!IsValidUtf8(token)) return std::nullopt;
  std::string out;
  out.reserve(token.size());
  for (size_t pos = 0; pos < token.size();) {
    const int b = UnicodeToByte(NextCodePoint(token, &pos));
    if (b < 0) return std::nullopt;
    out.push_back(static_cast<char>(b));
  }
  return out;
}

}  // namespace

char32_t ByteToUnicode(uint8_t b) { return Tables().to_unicode[b]; }
int UnicodeToByte(char32_t cp) { return cp < 324 ? Tables().from_unicode[cp] : -1; }

absl::StatusOr<BpeModel> BpeModel::FromJson(const boost::json::object& model, bool byte_level) {
  BpeModel m;
  m.byte_level_ = byte_level;
  auto get_bool = [&](std::string_view key, bool* out) -> absl::Status {
    const boost::json::value* v = model.if_contains(key);
    if (v == nullptr || v->is_null()) return absl::OkStatus();
    if (!v->is_bool()) return absl::InvalidArgumentError(absl::StrCat("model.", AV(key), " must be a boolean"));
    *out = v->as_bool();
    return absl::OkStatus();
  };
  if (auto s = get_bool("byte_fallback", &m.byte_fallback_); !s.ok()) return s;
  if (auto s = get_bool("fuse_unk", &m.fuse_unk_); !s.ok()) return s;
  if (auto s = get_bool("ignore_merges", &m.ignore_merges_); !s.ok()) return s;
  if (const auto* d = model.if_contains("dropout"); d && !d->is_null()) {
    if (!d->is_number() || d->to_number<double>() != 0.0)
      return absl::UnimplementedError("BPE dropout is not supported (it makes encoding random)");
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (const auto* v = model.if_contains(key); v && !v->is_null()) {
      if (!v->is_string()) return absl::InvalidArgumentError(absl::StrCat("model.", key, " must be a string"));
      if (!v->as_string().empty()) return absl::UnimplementedError(absl::StrCat("BPE ", key, " is not supported"));
    }
  }

  const boost::json::value* vocab_v = model.if_contains("vocab");
  if (vocab_v == nullptr || !vocab_v->is_object())
    return absl::InvalidArgumentError("model.vocab must be an object of token -> id");
  const boost::json::object& vocab = vocab_v->as_object();
  // The vocabulary as written, for resolving merges (which use the written form).
  absl::flat_hash_map<std::string_view, int32_t> written;
  written.reserve(vocab.size());
  int64_t max_id = -1;
  for (const auto& [key, idv] : vocab) {
    if (!idv.is_int64() && !idv.is_uint64())
      return absl::InvalidArgumentError(absl::StrCat("model.vocab[\"", AV(key), "\"] must be an integer id"));
    const int64_t id =
        idv.is_int64() ? idv.as_int64() : static_cast<int64_t>(std::min<uint64_t>(idv.as_uint64(), kMaxTokenId));
    if (id < 0 || id >= kMaxTokenId)
      return absl::InvalidArgumentError(absl::StrCat("model.vocab id ", id, " out of range"));
    max_id = std::max(max_id, id);
    written.emplace(std::string_view(key), static_cast<int32_t>(id));
  }
  m.tokens_.assign(static_cast<size_t>(max_id + 1), std::string());
  m.vocab_.reserve(vocab.size());
  for (const auto& [key, id] : written) {
    m.tokens_[id] = std::string(key);
    if (byte_level) {
      if (auto bytes = ByteLevelToBytes(key)) m.vocab_.emplace(std::move(*bytes), id);
    } else {
      m.vocab_.emplace(std::string(key), id);
    }
  }

  m.byte_ids_.fill(-1);
  for (int b = 0; b < 256; ++b) {
    std::string key;
    if (byte_level) {
      key.push_back(static_cast<char>(b));
      if (auto it = m.vocab_.find(key); it != m.vocab_.end()) m.byte_ids_[b] = it->second;
    } else if (m.byte_fallback_) {
      key = absl::StrFormat("<0x%02X>", b);
      if (auto it = m.vocab_.find(key); it != m.vocab_.end()) m.byte_ids_[b] = it->second;
    }
  }

  if (const auto* unk = model.if_contains("unk_token"); unk && !unk->is_null()) {
    if (!unk->is_string()) return absl::InvalidArgumentError("model.unk_token must be a string or null");
    auto it = written.find(std::string_view(unk->as_string()));
    if (it == written.end())
      return absl::InvalidArgumentError(
          absl::StrCat("model.unk_token \"", AV(unk->as_string()), "\" is not in the vocabulary"));
    m.unk_id_ = it->second;
  }

  const boost::json::value* merges_v = model.if_contains("merges");
  if (merges_v == nullptr || !merges_v->is_array()) return absl::InvalidArgumentError("model.merges must be an array");
  const boost::json::array& merges = merges_v->as_array();
  m.merges_.reserve(merges.size());
  std::string merged;
  for (size_t i = 0; i < merges.size(); ++i) {
    std::string_view a, b;
    const boost::json::value& mv = merges[i];
    if (mv.is_string()) {  // legacy "a b"
      std::string_view line = mv.as_string();
      const size_t sp = line.find(' ');
      if (sp == std::string_view::npos || line.find(' ', sp + 1) != std::string_view::npos)
        return absl::InvalidArgumentError(
            absl::StrCat("model.merges[", i, "] \"", AV(line), "\" is not two tokens separated by one space"));
      a = line.substr(0, sp);
      b = line.substr(sp + 1);
    } else if (mv.is_array() && mv.as_array().size() == 2 && mv.as_array()[0].is_string() &&
               mv.as_array()[1].is_string()) {  // newer ["a", "b"]
      a = mv.as_array()[0].as_string();
      b = mv.as_array()[1].as_string();
    } else {
      return absl::InvalidArgumentError(absl::StrCat("model.merges[", i, "] must be \"a b\" or [\"a\", \"b\"]"));
    }
    merged.assign(a);
    merged.append(b);
    auto ia = written.find(a), ib = written.find(b), im = written.find(std::string_view(merged));
    if (ia == written.end() || ib == written.end() || im == written.end())
      return absl::InvalidArgumentError(absl::StrCat("model.merges[", i, "] (\"", AV(a), "\", \"", AV(b),
                                                     "\") references a token missing from the vocabulary"));
    // Like HF, a repeated pair takes the rank of its last occurrence.
    m.merges_.insert_or_assign(PairKey(ia->second, ib->second), Merge{static_cast<int32_t>(i), im->second});
  }
  return m;
}

std::optional<int32_t> BpeModel::Find(std::string_view key) const {
  auto it = vocab_.find(AV(key));
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

void BpeModel::InitialSymbols(std::string_view word, std::vector<int32_t>* syms) const {
  syms->clear();
  bool last_was_unk = false;
  auto push_unk = [&] {
    if (!unk_id_) return;  // HF drops characters it cannot represent when there is no unk
    if (fuse_unk_ && last_was_unk) return;
    syms->push_back(*unk_id_);
    last_was_unk = true;
  };
  if (byte_level_) {
    for (unsigned char c : word) {
      if (byte_ids_[c] >= 0) {
        syms->push_back(byte_ids_[c]);
        last_was_unk = false;
      } else {
        push_unk();
      }
    }
    return;
  }
  for (size_t pos = 0; pos < word.size();) {
    const size_t start = pos;
    NextCodePoint(word, &pos);
    const std::string_view ch = word.substr(start, pos - start);
    if (auto it = vocab_.find(AV(ch)); it != vocab_.end()) {
      syms->push_back(it->second);
      last_was_unk = false;
      continue;
    }
    if (byte_fallback_) {
      bool all = true;
      for (unsigned char c : ch) all = all && byte_ids_[c] >= 0;
      if (all) {
        for (unsigned char c : ch) syms->push_back(byte_ids_[c]);
        last_was_unk = false;
        continue;
      }
    }
    push_unk();
  }
}

void BpeModel::MergeSymbols(std::vector<int32_t>* syms) const {
  const int n = static_cast<int>(syms->size());
  if (n < 2) return;
  struct Node {
    int32_t id, prev, next;
  };
  struct Candidate {
    int32_t rank, pos, left, right, merged;
    // Min-heap on (rank, pos): lowest rank first, leftmost on ties, as HF does.
    bool operator<(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  thread_local std::vector<Node> nodes;
  thread_local std::vector<Candidate> heap;
  nodes.resize(n);
  heap.clear();
  for (int i = 0; i < n; ++i) nodes[i] = Node{(*syms)[i], i - 1, i + 1 < n ? i + 1 : -1};
  auto consider = [&](int32_t pos) {
    const int32_t next = nodes[pos].next;
    if (next < 0) return;
    auto it = merges_.find(PairKey(nodes[pos].id, nodes[next].id));
    if (it == merges_.end()) return;
    heap.push_back(Candidate{it->second.rank, pos, nodes[pos].id, nodes[next].id, it->second.merged});
    std::push_heap(heap.begin(), heap.end());
  };
  for (int i = 0; i + 1 < n; ++i) consider(i);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end());
    const Candidate c = heap.back();
    heap.pop_back();
    Node& left = nodes[c.pos];
    if (left.id != c.left || left.next < 0) continue;  // stale
    Node& right = nodes[left.next];
    if (right.id != c.right) continue;
    left.id = c.merged;
    right.id = -1;
    left.next = right.next;
    if (left.next >= 0) nodes[left.next].prev = c.pos;
    if (left.prev >= 0) consider(left.prev);
    consider(c.pos);
  }
  syms->clear();
  for (int i = 0; i >= 0; i = nodes[i].next) syms->push_back(nodes[i].id);
}

void BpeModel::Encode(std::string_view word, std::vector<int32_t>* out) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    if (auto it = vocab_.find(AV(word)); it != vocab_.end()) {
      out->push_back(it->second);
      return;
    }
  }
  thread_local std::vector<int32_t> syms;
  InitialSymbols(word, &syms);
  MergeSymbols(&syms);
  out->insert(out->end(), syms.begin(), syms.end());
}

}  // namespace accullm::text
