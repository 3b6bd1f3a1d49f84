// tokenizer.json loading and encoding.
//
// Supported (anything else is refused at Load, naming the component):
//   model:          BPE (vocab, merges as "a b" or ["a","b"], unk_token, fuse_unk,
//                   byte_fallback, ignore_merges; no dropout / subword affixes)
//   normalizer:     Sequence, Prepend, Replace (String pattern), NFC
//   pre_tokenizer:  Sequence, Split (the GPT-2 / Llama-3 / Qwen2 regexes or a String;
//                   all behaviors; invert), ByteLevel (add_prefix_space, use_regex; must be
//                   last), Metaspace (replacement, prepend_scheme / add_prefix_space, split)
//   post_processor: TemplateProcessing (single), ByteLevel, Sequence, BertProcessing,
//                   RobertaProcessing
//   decoder:        see tokenizer_decode.cc
#include "text/tokenizer.h"

#include <algorithm>
#include <filesystem>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/enum_names.h"
#include "common/json.h"
#include "common/mapped_file.h"
#include "common/status.h"
#include "text/tokenizer_impl.h"
#include "text/unicode_tables.h"

namespace accullm::text {
namespace {

using boost::json::object;
using boost::json::value;

absl::Status Invalid(std::string_view where, std::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(AV(where), ": ", AV(what)));
}

// Optional typed fields: absent or null -> default.
absl::StatusOr<bool> BoolOr(const object& o, std::string_view key, bool def, std::string_view where) {
  const value* v = o.if_contains(key);
  if (v == nullptr || v->is_null()) return def;
  if (!v->is_bool()) return Invalid(where, absl::StrCat("\"", AV(key), "\" must be a boolean"));
  return v->as_bool();
}
absl::StatusOr<std::string> StringOr(const object& o, std::string_view key, std::string_view def,
                                     std::string_view where) {
  const value* v = o.if_contains(key);
  if (v == nullptr || v->is_null()) return std::string(def);
  if (!v->is_string()) return Invalid(where, absl::StrCat("\"", AV(key), "\" must be a string"));
  return std::string(v->as_string());
}
absl::StatusOr<std::string> TypeOf(const value& v, std::string_view where) {
  if (!v.is_object()) return Invalid(where, "must be an object");
  const value* t = v.as_object().if_contains("type");
  if (t == nullptr || !t->is_string()) return Invalid(where, "missing string \"type\"");
  return std::string(t->as_string());
}
absl::StatusOr<int64_t> IntOf(const value& v, std::string_view where) {
  if (v.is_int64()) return v.as_int64();
  if (v.is_uint64() && v.as_uint64() < (1ull << 31)) return static_cast<int64_t>(v.as_uint64());
  return Invalid(where, "must be an integer");
}

// {"String": s} or {"Regex": r}; the pattern objects of Split / Replace.
struct Pattern {
  bool is_regex;
  std::string text;
};
absl::StatusOr<Pattern> ParsePattern(const object& o, std::string_view where) {
  const value* p = o.if_contains("pattern");
  if (p == nullptr || !p->is_object()) return Invalid(where, "missing \"pattern\" object");
  const object& po = p->as_object();
  if (const value* s = po.if_contains("String"); s && s->is_string())
    return Pattern{false, std::string(s->as_string())};
  if (const value* r = po.if_contains("Regex"); r && r->is_string()) return Pattern{true, std::string(r->as_string())};
  return Invalid(where, "pattern must be {\"String\": ...} or {\"Regex\": ...}");
}

absl::Status ParseNormalizer(const value& v, std::vector<NormalizerStep>* steps) {
  ASSIGN_OR_RETURN(std::string type, TypeOf(v, "normalizer"));
  const object& o = v.as_object();
  if (type == "Sequence") {
    const value* list = o.if_contains("normalizers");
    if (list == nullptr || !list->is_array()) return Invalid("normalizer", "Sequence needs a \"normalizers\" array");
    for (const value& n : list->as_array()) RETURN_IF_ERROR(ParseNormalizer(n, steps));
  } else if (type == "Prepend") {
    ASSIGN_OR_RETURN(std::string p, StringOr(o, "prepend", "", "normalizer Prepend"));
    steps->push_back({NormalizerStep::Kind::kPrepend, std::move(p), ""});
  } else if (type == "Replace") {
    ASSIGN_OR_RETURN(Pattern p, ParsePattern(o, "normalizer Replace"));
    if (p.is_regex) return absl::UnimplementedError("normalizer Replace with a Regex pattern is not supported");
    if (p.text.empty()) return Invalid("normalizer Replace", "empty pattern");
    ASSIGN_OR_RETURN(std::string content, StringOr(o, "content", "", "normalizer Replace"));
    steps->push_back({NormalizerStep::Kind::kReplace, std::move(p.text), std::move(content)});
  } else if (type == "NFC") {
    steps->push_back({NormalizerStep::Kind::kNfc, "", ""});
  } else {
    return absl::UnimplementedError(absl::StrCat("normalizer type \"", type, "\" is not supported"));
  }
  return absl::OkStatus();
}

constexpr EnumName<SplitBehavior> kSplitBehaviorNames[] = {
    {SplitBehavior::kRemoved, "Removed"},
    {SplitBehavior::kIsolated, "Isolated"},
    {SplitBehavior::kMergedWithPrevious, "MergedWithPrevious"},
    {SplitBehavior::kMergedWithNext, "MergedWithNext"},
    {SplitBehavior::kContiguous, "Contiguous"},
};
static_assert(NamesEveryValue(kSplitBehaviorNames, SplitBehavior::kRemoved, SplitBehavior::kContiguous));

absl::StatusOr<SplitBehavior> ParseBehavior(std::string_view b) {
  absl::StatusOr<SplitBehavior> behavior = ParseName(kSplitBehaviorNames, b, "behavior");
  if (!behavior.ok()) return Invalid("pre_tokenizer Split", std::string(behavior.status().message()));
  return behavior;
}

absl::Status ParsePreTokenizer(const value& v, std::vector<PreTokenizerStep>* steps) {
  ASSIGN_OR_RETURN(std::string type, TypeOf(v, "pre_tokenizer"));
  const object& o = v.as_object();
  if (type == "Sequence") {
    const value* list = o.if_contains("pretokenizers");
    if (list == nullptr || !list->is_array())
      return Invalid("pre_tokenizer", "Sequence needs a \"pretokenizers\" array");
    for (const value& p : list->as_array()) RETURN_IF_ERROR(ParsePreTokenizer(p, steps));
    return absl::OkStatus();
  }
  PreTokenizerStep step;
  if (type == "Split") {
    step.kind = PreTokenizerStep::Kind::kSplit;
    ASSIGN_OR_RETURN(Pattern p, ParsePattern(o, "pre_tokenizer Split"));
    if (p.is_regex) {
      ASSIGN_OR_RETURN(step.pattern, RecognizeSplitPattern(p.text));
    } else {
      if (p.text.empty()) return Invalid("pre_tokenizer Split", "empty pattern");
      step.literal = std::move(p.text);
    }
    ASSIGN_OR_RETURN(std::string behavior, StringOr(o, "behavior", "Isolated", "pre_tokenizer Split"));
    ASSIGN_OR_RETURN(step.behavior, ParseBehavior(behavior));
    ASSIGN_OR_RETURN(step.invert, BoolOr(o, "invert", false, "pre_tokenizer Split"));
  } else if (type == "ByteLevel") {
    step.kind = PreTokenizerStep::Kind::kByteLevel;
    ASSIGN_OR_RETURN(step.add_prefix_space, BoolOr(o, "add_prefix_space", true, "pre_tokenizer ByteLevel"));
    ASSIGN_OR_RETURN(step.use_regex, BoolOr(o, "use_regex", true, "pre_tokenizer ByteLevel"));
  } else if (type == "Metaspace") {
    step.kind = PreTokenizerStep::Kind::kMetaspace;
    ASSIGN_OR_RETURN(step.replacement, StringOr(o, "replacement", "\xE2\x96\x81", "pre_tokenizer Metaspace"));
    if (step.replacement.empty()) return Invalid("pre_tokenizer Metaspace", "empty replacement");
    ASSIGN_OR_RETURN(step.split, BoolOr(o, "split", true, "pre_tokenizer Metaspace"));
    // Newer files say prepend_scheme; older ones add_prefix_space (true = always).
    ASSIGN_OR_RETURN(bool add_prefix, BoolOr(o, "add_prefix_space", true, "pre_tokenizer Metaspace"));
    ASSIGN_OR_RETURN(std::string scheme,
                     StringOr(o, "prepend_scheme", add_prefix ? "always" : "never", "pre_tokenizer Metaspace"));
    if (scheme == "always") step.prepend = PreTokenizerStep::Prepend::kAlways;
    else if (scheme == "first") step.prepend = PreTokenizerStep::Prepend::kFirst;
    else if (scheme == "never") step.prepend = PreTokenizerStep::Prepend::kNever;
    else return Invalid("pre_tokenizer Metaspace", absl::StrCat("unknown prepend_scheme \"", scheme, "\""));
  } else {
    return absl::UnimplementedError(absl::StrCat("pre_tokenizer type \"", type, "\" is not supported"));
  }
  steps->push_back(std::move(step));
  return absl::OkStatus();
}

// Post-processing of a single sequence: ids before and after it.
struct Wrapping {
  std::vector<int32_t> prefix, suffix;
};

absl::Status ParsePostProcessor(const value& v, Wrapping* w) {
  ASSIGN_OR_RETURN(std::string type, TypeOf(v, "post_processor"));
  const object& o = v.as_object();
  if (type == "Sequence") {
    const value* list = o.if_contains("processors");
    if (list == nullptr || !list->is_array()) return Invalid("post_processor", "Sequence needs a \"processors\" array");
    for (const value& p : list->as_array()) RETURN_IF_ERROR(ParsePostProcessor(p, w));
  } else if (type == "ByteLevel") {
    // Only adjusts offsets.
  } else if (type == "TemplateProcessing") {
    const value* single = o.if_contains("single");
    const value* specials = o.if_contains("special_tokens");
    if (single == nullptr || !single->is_array())
      return Invalid("post_processor TemplateProcessing", "missing \"single\" array");
    Wrapping inner;
    bool seen_sequence = false;
    for (const value& item : single->as_array()) {
      if (!item.is_object()) return Invalid("post_processor TemplateProcessing", "template items must be objects");
      const object& io = item.as_object();
      if (io.contains("Sequence")) {
        seen_sequence = true;
        continue;
      }
      const value* st = io.if_contains("SpecialToken");
      if (st == nullptr || !st->is_object() || !st->as_object().contains("id") || !st->as_object().at("id").is_string())
        return Invalid("post_processor TemplateProcessing", "item is neither Sequence nor SpecialToken{id}");
      std::string_view name = st->as_object().at("id").as_string();
      const value* entry = (specials && specials->is_object()) ? specials->as_object().if_contains(name) : nullptr;
      const value* ids = (entry && entry->is_object()) ? entry->as_object().if_contains("ids") : nullptr;
      if (ids == nullptr || !ids->is_array())
        return Invalid("post_processor TemplateProcessing",
                       absl::StrCat("special token \"", AV(name), "\" has no ids"));
      for (const value& idv : ids->as_array()) {
        ASSIGN_OR_RETURN(int64_t id, IntOf(idv, "post_processor TemplateProcessing ids"));
        (seen_sequence ? inner.suffix : inner.prefix).push_back(static_cast<int32_t>(id));
      }
    }
    w->prefix.insert(w->prefix.begin(), inner.prefix.begin(), inner.prefix.end());
    w->suffix.insert(w->suffix.end(), inner.suffix.begin(), inner.suffix.end());
  } else if (type == "BertProcessing" || type == "RobertaProcessing") {
    for (const char* key : {"cls", "sep"}) {
      const value* p = o.if_contains(key);
      if (p == nullptr || !p->is_array() || p->as_array().size() != 2)
        return Invalid(absl::StrCat("post_processor ", type), absl::StrCat("\"", key, "\" must be [token, id]"));
      ASSIGN_OR_RETURN(int64_t id, IntOf(p->as_array()[1], "post_processor id"));
      if (std::string_view(key) == "cls") w->prefix.insert(w->prefix.begin(), static_cast<int32_t>(id));
      else w->suffix.push_back(static_cast<int32_t>(id));
    }
  } else {
    return absl::UnimplementedError(absl::StrCat("post_processor type \"", type, "\" is not supported"));
  }
  return absl::OkStatus();
}

absl::Status ParseDecoder(const value& v, bool after_fuse, DecoderPlan* plan) {
  ASSIGN_OR_RETURN(std::string type, TypeOf(v, "decoder"));
  const object& o = v.as_object();
  DecoderOp op;
  if (type == "Sequence") {
    const value* list = o.if_contains("decoders");
    if (list == nullptr || !list->is_array()) return Invalid("decoder", "Sequence needs a \"decoders\" array");
    for (const value& d : list->as_array()) {
      RETURN_IF_ERROR(ParseDecoder(d, after_fuse, plan));
      if (d.is_object() && d.as_object().contains("type") && d.as_object().at("type") == "Fuse") after_fuse = true;
    }
    return absl::OkStatus();
  }
  if (type == "Fuse") return absl::OkStatus();  // bytes are concatenated anyway
  if (type == "Replace") {
    op.kind = DecoderOp::Kind::kReplace;
    ASSIGN_OR_RETURN(Pattern p, ParsePattern(o, "decoder Replace"));
    if (p.is_regex) return absl::UnimplementedError("decoder Replace with a Regex pattern is not supported");
    if (p.text.empty()) return Invalid("decoder Replace", "empty pattern");
    op.from = std::move(p.text);
    ASSIGN_OR_RETURN(op.to, StringOr(o, "content", "", "decoder Replace"));
  } else if (type == "ByteFallback") {
    op.kind = DecoderOp::Kind::kByteFallback;
  } else if (type == "ByteLevel") {
    op.kind = DecoderOp::Kind::kByteLevel;
  } else if (type == "Metaspace") {
    op.kind = DecoderOp::Kind::kMetaspace;
    ASSIGN_OR_RETURN(op.from, StringOr(o, "replacement", "\xE2\x96\x81", "decoder Metaspace"));
    ASSIGN_OR_RETURN(bool add_prefix, BoolOr(o, "add_prefix_space", true, "decoder Metaspace"));
    ASSIGN_OR_RETURN(std::string scheme,
                     StringOr(o, "prepend_scheme", add_prefix ? "always" : "never", "decoder Metaspace"));
    op.strip_first = scheme != "never";
  } else if (type == "Strip") {
    ASSIGN_OR_RETURN(std::string content, StringOr(o, "content", " ", "decoder Strip"));
    int64_t start = 0, stop = 0;
    if (const value* s = o.if_contains("start")) {
      ASSIGN_OR_RETURN(start, IntOf(*s, "decoder Strip start"));
    }
    if (const value* s = o.if_contains("stop")) {
      ASSIGN_OR_RETURN(stop, IntOf(*s, "decoder Strip stop"));
    }
    if (content.empty() || start < 0 || stop < 0 || start > 1024 || stop > 1024)
      return Invalid("decoder Strip", "needs one content character and small non-negative start/stop");
    if (after_fuse) {
      if (!plan->global_strip_content.empty()) return absl::UnimplementedError("decoder: two Strip steps after Fuse");
      plan->global_strip_content = std::move(content);
      plan->global_strip_start = static_cast<int>(start);
      plan->global_strip_stop = static_cast<int>(stop);
      return absl::OkStatus();
    }
    op.kind = DecoderOp::Kind::kStrip;
    op.content = std::move(content);
    op.start = static_cast<int>(start);
    op.stop = static_cast<int>(stop);
  } else {
    return absl::UnimplementedError(absl::StrCat("decoder type \"", type, "\" is not supported"));
  }
  plan->per_token.push_back(std::move(op));
  return absl::OkStatus();
}

// tokenizer_config.json's bos_token / eos_token: a string, {"content": ...}, or null.
std::optional<std::string> ConfigToken(const object* config, std::string_view key) {
  if (config == nullptr) return std::nullopt;
  const value* v = config->if_contains(key);
  if (v == nullptr) return std::nullopt;
  if (v->is_string()) return std::string(v->as_string());
  if (v->is_object()) {
    const value* c = v->as_object().if_contains("content");
    if (c && c->is_string()) return std::string(c->as_string());
  }
  return std::nullopt;
}

bool IsWordChar(char32_t cp) {
  const CharClass c = ClassOf(cp);
  return c == CharClass::kLetter || c == CharClass::kNumber;
}

}  // namespace

// ----------------------------------------------------------------------------------------
// Added tokens

void AddedTokenMatcher::Add(std::string content, const AddedToken* token) {
  if (content.empty()) return;
  entries_.push_back(Entry{std::move(content), token});
}

void AddedTokenMatcher::Finish() {
  for (auto& v : by_byte_) v.clear();
  for (size_t i = 0; i < entries_.size(); ++i)
    by_byte_[static_cast<unsigned char>(entries_[i].content[0])].push_back(static_cast<int32_t>(i));
  for (auto& v : by_byte_) {
    std::stable_sort(v.begin(), v.end(),
                     [&](int32_t a, int32_t b) { return entries_[a].content.size() > entries_[b].content.size(); });
  }
}

void AddedTokenMatcher::FindAll(std::string_view text, std::vector<Match>* out) const {
  size_t taken = 0;  // text before this is already part of a match
  size_t pos = 0;
  while (pos < text.size()) {
    const auto& candidates = by_byte_[static_cast<unsigned char>(text[pos])];
    const Entry* found = nullptr;
    for (int32_t i : candidates) {
      const Entry& e = entries_[i];
      if (text.compare(pos, e.content.size(), e.content) != 0) continue;
      if (e.token->single_word) {
        // Not inside a word on either side.
        bool ok = true;
        if (pos > 0) {
          size_t p = pos - 1;
          while (p > 0 && (static_cast<unsigned char>(text[p]) & 0xC0) == 0x80) --p;
          size_t q = p;
          ok = !IsWordChar(NextCodePoint(text, &q));
        }
        const size_t end = pos + e.content.size();
        if (ok && end < text.size()) {
          size_t q = end;
          ok = !IsWordChar(NextCodePoint(text, &q));
        }
        if (!ok) continue;
      }
      found = &e;
      break;
    }
    if (found == nullptr) {
      ++pos;
      while (pos < text.size() && (static_cast<unsigned char>(text[pos]) & 0xC0) == 0x80) ++pos;
      continue;
    }
    size_t begin = pos, end = pos + found->content.size();
    if (found->token->lstrip) {
      while (begin > taken) {
        size_t p = begin - 1;
        while (p > taken && (static_cast<unsigned char>(text[p]) & 0xC0) == 0x80) --p;
        size_t q = p;
        if (!IsWhiteSpace(NextCodePoint(text, &q))) break;
        begin = p;
      }
    }
    if (found->token->rstrip) {
      while (end < text.size()) {
        size_t q = end;
        if (!IsWhiteSpace(NextCodePoint(text, &q))) break;
        end = q;
      }
    }
    out->push_back(Match{begin, end, found->token->id});
    taken = pos = end;
  }
}

// ----------------------------------------------------------------------------------------
// Loading

absl::StatusOr<std::unique_ptr<TokenizerImpl>> TokenizerImpl::Build(const object& root, const object* config,
                                                                    const object* generation) {
  auto t = std::make_unique<TokenizerImpl>();

  if (const value* n = root.if_contains("normalizer"); n && !n->is_null()) {
    RETURN_IF_ERROR(ParseNormalizer(*n, &t->normalizer_));
    t->has_normalizer_ = true;
  }
  if (const value* p = root.if_contains("pre_tokenizer"); p && !p->is_null())
    RETURN_IF_ERROR(ParsePreTokenizer(*p, &t->pre_tokenizer_));
  for (size_t i = 0; i < t->pre_tokenizer_.size(); ++i) {
    if (t->pre_tokenizer_[i].kind != PreTokenizerStep::Kind::kByteLevel) continue;
    if (i + 1 != t->pre_tokenizer_.size())
      return absl::UnimplementedError("pre_tokenizer: ByteLevel must be the last step");
    t->byte_level_ = true;
  }

  const value* model = root.if_contains("model");
  if (model == nullptr || !model->is_object()) return Invalid("tokenizer.json", "missing \"model\" object");
  // Files written by older versions omit the model type; only BPE has merges.
  std::string model_type = "BPE";
  if (const value* mt = model->as_object().if_contains("type")) {
    if (!mt->is_string()) return Invalid("model", "\"type\" must be a string");
    model_type = std::string(mt->as_string());
  }
  if (model_type != "BPE")
    return absl::UnimplementedError(absl::StrCat("model type \"", model_type, "\" is not supported (only BPE)"));
  {
    auto m = BpeModel::FromJson(model->as_object(), t->byte_level_);
    if (!m.ok()) return absl::Status(m.status().code(), absl::StrCat("model: ", m.status().message()));
    t->model_ = std::move(*m);
  }

  if (const value* at = root.if_contains("added_tokens"); at && !at->is_null()) {
    if (!at->is_array()) return Invalid("tokenizer.json", "\"added_tokens\" must be an array");
    for (const value& v : at->as_array()) {
      if (!v.is_object()) return Invalid("added_tokens", "entries must be objects");
      const object& o = v.as_object();
      AddedToken tok;
      const value* idv = o.if_contains("id");
      const value* cv = o.if_contains("content");
      if (idv == nullptr || cv == nullptr || !cv->is_string())
        return Invalid("added_tokens", "entry needs \"id\" and string \"content\"");
      ASSIGN_OR_RETURN(int64_t id, IntOf(*idv, "added_tokens id"));
      if (id < 0 || id >= (1 << 24)) return Invalid("added_tokens", absl::StrCat("id ", id, " out of range"));
      tok.id = static_cast<int32_t>(id);
      tok.content = std::string(cv->as_string());
      if (!IsValidUtf8(tok.content)) return Invalid("added_tokens", "content is not valid UTF-8");
      ASSIGN_OR_RETURN(tok.special, BoolOr(o, "special", false, "added_tokens"));
      ASSIGN_OR_RETURN(tok.single_word, BoolOr(o, "single_word", false, "added_tokens"));
      ASSIGN_OR_RETURN(tok.lstrip, BoolOr(o, "lstrip", false, "added_tokens"));
      ASSIGN_OR_RETURN(tok.rstrip, BoolOr(o, "rstrip", false, "added_tokens"));
      ASSIGN_OR_RETURN(tok.normalized, BoolOr(o, "normalized", !tok.special, "added_tokens"));
      t->added_.push_back(std::move(tok));
    }
  }
  // Pointers into added_ are taken below: no more push_back after this point.
  for (const AddedToken& tok : t->added_) {
    t->added_by_content_.insert_or_assign(tok.content, tok.id);
    if (tok.normalized && t->has_normalizer_) t->normalized_matcher_.Add(t->Normalize(tok.content), &tok);
    else t->raw_matcher_.Add(tok.content, &tok);
  }
  t->raw_matcher_.Finish();
  t->normalized_matcher_.Finish();

  // id -> token text and special flags.
  const auto& model_tokens = t->model_.tokens();
  size_t n = model_tokens.size();
  for (const AddedToken& tok : t->added_) n = std::max(n, static_cast<size_t>(tok.id) + 1);
  t->id_to_token_.assign(n, std::string_view());
  t->is_special_.assign(n, 0);
  for (size_t i = 0; i < model_tokens.size(); ++i) t->id_to_token_[i] = model_tokens[i];
  for (const AddedToken& tok : t->added_) {
    t->id_to_token_[tok.id] = tok.content;
    t->is_special_[tok.id] = tok.special;
  }

  Wrapping wrap;
  if (const value* p = root.if_contains("post_processor"); p && !p->is_null())
    RETURN_IF_ERROR(ParsePostProcessor(*p, &wrap));
  for (int32_t id : wrap.prefix)
    if (static_cast<size_t>(id) >= n)
      return Invalid("post_processor", absl::StrCat("special id ", id, " is not in the vocabulary"));
  for (int32_t id : wrap.suffix)
    if (static_cast<size_t>(id) >= n)
      return Invalid("post_processor", absl::StrCat("special id ", id, " is not in the vocabulary"));

  if (const value* d = root.if_contains("decoder"); d && !d->is_null()) {
    t->decoder_.none = false;
    RETURN_IF_ERROR(ParseDecoder(*d, /*after_fuse=*/false, &t->decoder_));
  }

  // BOS / EOS: tokenizer_config.json names them; without it, the template's leading
  // special token is taken as BOS.
  if (auto bos = ConfigToken(config, "bos_token")) t->bos_id_ = t->TokenToId(*bos);
  else if (!wrap.prefix.empty() && config == nullptr) t->bos_id_ = wrap.prefix.front();
  if (auto eos = ConfigToken(config, "eos_token")) {
    if (auto id = t->TokenToId(*eos)) t->eos_ids_.push_back(*id);
  }
  if (generation != nullptr) {
    if (const value* e = generation->if_contains("eos_token_id")) {
      std::vector<const value*> vals;
      if (e->is_array())
        for (const value& x : e->as_array()) vals.push_back(&x);
      else vals.push_back(e);
      for (const value* x : vals) {
        auto id = IntOf(*x, "generation_config eos_token_id");
        if (id.ok() && *id >= 0 && static_cast<size_t>(*id) < n &&
            std::find(t->eos_ids_.begin(), t->eos_ids_.end(), *id) == t->eos_ids_.end())
          t->eos_ids_.push_back(static_cast<int32_t>(*id));
      }
    }
  }
  // transformers rebuilds the post-processor from add_bos_token / add_eos_token when the
  // config sets them explicitly (LlamaTokenizerFast and, in recent versions, all fast
  // tokenizers); do the same so we add exactly what transformers adds.
  if (config != nullptr && (config->contains("add_bos_token") || config->contains("add_eos_token"))) {
    ASSIGN_OR_RETURN(bool add_bos, BoolOr(*config, "add_bos_token", false, "tokenizer_config.json"));
    ASSIGN_OR_RETURN(bool add_eos, BoolOr(*config, "add_eos_token", false, "tokenizer_config.json"));
    wrap.prefix.clear();
    wrap.suffix.clear();
    if (add_bos && t->bos_id_) wrap.prefix.push_back(*t->bos_id_);
    if (add_eos && !t->eos_ids_.empty()) wrap.suffix.push_back(t->eos_ids_.front());
  }
  t->prefix_ids_ = std::move(wrap.prefix);
  t->suffix_ids_ = std::move(wrap.suffix);
  return t;
}

std::optional<int32_t> TokenizerImpl::TokenToId(std::string_view token) const {
  if (auto it = added_by_content_.find(AV(token)); it != added_by_content_.end()) return it->second;
  if (!byte_level_) return model_.Find(token);
  // The model is keyed by raw bytes: translate the written (byte-level alphabet) form.
  if (!IsValidUtf8(token)) return std::nullopt;
  std::string bytes;
  for (size_t pos = 0; pos < token.size();) {
    const int b = UnicodeToByte(NextCodePoint(token, &pos));
    if (b < 0) return std::nullopt;
    bytes.push_back(static_cast<char>(b));
  }
  return model_.Find(bytes);
}

// ----------------------------------------------------------------------------------------
// Encoding

std::string TokenizerImpl::Normalize(std::string_view text) const {
  std::string s(text);
  for (const NormalizerStep& step : normalizer_) {
    switch (step.kind) {
      case NormalizerStep::Kind::kPrepend:
        if (!s.empty()) s.insert(0, step.a);
        break;
      case NormalizerStep::Kind::kReplace: s = absl::StrReplaceAll(s, {{step.a, step.b}}); break;
      case NormalizerStep::Kind::kNfc: s = NormalizeNfc(s); break;
    }
  }
  return s;
}

namespace {

// Splits each word around the matches [begin, end) per `behavior`.
void ApplySplit(std::string_view word, const std::vector<std::pair<size_t, size_t>>& matches, SplitBehavior behavior,
                bool invert, std::vector<std::string_view>* out) {
  // Segments alternate between delimiters (pattern matches, or the gaps when inverted)
  // and the text between them.
  struct Seg {
    size_t b, e;
    bool delim;
  };
  std::vector<Seg> segs;
  size_t prev = 0;
  for (const auto& [b, e] : matches) {
    if (b > prev) segs.push_back({prev, b, invert});
    segs.push_back({b, e, !invert});
    prev = e;
  }
  if (prev < word.size()) segs.push_back({prev, word.size(), invert});

  auto emit = [&](size_t b, size_t e) {
    if (e > b) out->push_back(word.substr(b, e - b));
  };
  switch (behavior) {
    case SplitBehavior::kRemoved:
      for (const Seg& s : segs)
        if (!s.delim) emit(s.b, s.e);
      break;
    case SplitBehavior::kIsolated:
      for (const Seg& s : segs) emit(s.b, s.e);
      break;
    case SplitBehavior::kContiguous: {
      size_t i = 0;
      while (i < segs.size()) {
        size_t j = i + 1;
        if (segs[i].delim)
          while (j < segs.size() && segs[j].delim) ++j;
        emit(segs[i].b, segs[j - 1].e);
        i = j;
      }
      break;
    }
    case SplitBehavior::kMergedWithPrevious: {
      size_t start = 0;
      for (const Seg& s : segs) {
        if (s.delim) {
          emit(start, s.e);
          start = s.e;
        }
      }
      emit(start, word.size());
      break;
    }
    case SplitBehavior::kMergedWithNext: {
      size_t start = 0;
      for (const Seg& s : segs) {
        if (s.delim) {
          emit(start, s.b);
          start = s.b;
        }
      }
      emit(start, word.size());
      break;
    }
  }
}

void FindLiteral(std::string_view word, std::string_view lit, std::vector<std::pair<size_t, size_t>>* m) {
  for (size_t p = word.find(lit); p != std::string_view::npos; p = word.find(lit, p + lit.size()))
    m->emplace_back(p, p + lit.size());
}

}  // namespace

void TokenizerImpl::EncodePiece(std::string_view piece, bool first_section, std::vector<int32_t>* out) const {
  if (pre_tokenizer_.empty()) {
    model_.Encode(piece, out);
    return;
  }
  thread_local std::vector<std::string_view> words, next;
  thread_local std::vector<std::pair<size_t, size_t>> matches;
  std::deque<std::string> arena;  // text created by pre-tokenizers (rare)
  words.assign(1, piece);
  for (const PreTokenizerStep& step : pre_tokenizer_) {
    next.clear();
    for (size_t wi = 0; wi < words.size(); ++wi) {
      std::string_view w = words[wi];
      switch (step.kind) {
        case PreTokenizerStep::Kind::kSplit:
          matches.clear();
          if (step.pattern) FindPatternMatches(*step.pattern, w, &matches);
          else FindLiteral(w, step.literal, &matches);
          ApplySplit(w, matches, step.behavior, step.invert, &next);
          break;
        case PreTokenizerStep::Kind::kByteLevel:
          if (step.add_prefix_space && !w.empty() && w[0] != ' ') {
            arena.push_back(absl::StrCat(" ", AV(w)));
            w = arena.back();
          }
          if (step.use_regex) {
            matches.clear();
            FindPatternMatches(SplitPattern::kGpt2, w, &matches);
            ApplySplit(w, matches, SplitBehavior::kIsolated, false, &next);
          } else if (!w.empty()) {
            next.push_back(w);
          }
          break;
        case PreTokenizerStep::Kind::kMetaspace: {
          std::string s = absl::StrReplaceAll(AV(w), {{" ", step.replacement}});
          const bool prepend = step.prepend == PreTokenizerStep::Prepend::kAlways ||
                               (step.prepend == PreTokenizerStep::Prepend::kFirst && first_section && wi == 0);
          if (prepend && !absl::StartsWith(s, step.replacement)) s.insert(0, step.replacement);
          arena.push_back(std::move(s));
          std::string_view sv = arena.back();
          if (step.split) {
            matches.clear();
            FindLiteral(sv, step.replacement, &matches);
            ApplySplit(sv, matches, SplitBehavior::kMergedWithNext, false, &next);
          } else if (!sv.empty()) {
            next.push_back(sv);
          }
          break;
        }
      }
    }
    words.swap(next);
  }
  for (std::string_view w : words) model_.Encode(w, out);
}

void TokenizerImpl::EncodeNormalizedText(std::string_view text, bool first_section, std::vector<int32_t>* out) const {
  if (!has_normalizer_) {
    EncodePiece(text, first_section, out);
    return;
  }
  const std::string normalized = Normalize(text);
  if (normalized_matcher_.empty()) {
    if (!normalized.empty()) EncodePiece(normalized, first_section, out);
    return;
  }
  std::vector<AddedTokenMatcher::Match> found;
  normalized_matcher_.FindAll(normalized, &found);
  size_t prev = 0;
  for (const auto& m : found) {
    if (m.begin > prev)
      EncodePiece(std::string_view(normalized).substr(prev, m.begin - prev), first_section && prev == 0, out);
    out->push_back(m.id);
    prev = m.end;
  }
  if (prev < normalized.size()) EncodePiece(std::string_view(normalized).substr(prev), first_section && prev == 0, out);
}

std::vector<int32_t> TokenizerImpl::Encode(std::string_view text, bool add_special) const {
  std::string sanitized;
  if (!IsValidUtf8(text)) {
    sanitized = SanitizeUtf8(text);
    text = sanitized;
  }
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  if (add_special) out = prefix_ids_;
  std::vector<AddedTokenMatcher::Match> found;
  raw_matcher_.FindAll(text, &found);
  size_t prev = 0;
  for (const auto& m : found) {
    if (m.begin > prev) EncodeNormalizedText(text.substr(prev, m.begin - prev), prev == 0, &out);
    out.push_back(m.id);
    prev = m.end;
  }
  if (prev < text.size()) EncodeNormalizedText(text.substr(prev), prev == 0, &out);
  if (add_special) out.insert(out.end(), suffix_ids_.begin(), suffix_ids_.end());
  return out;
}

// ----------------------------------------------------------------------------------------
// Tokenizer

Tokenizer::Tokenizer(std::unique_ptr<TokenizerImpl> impl) : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromJson(std::string_view tokenizer_json,
                                                               std::string_view config_json, std::string_view what) {
  ASSIGN_OR_RETURN(value root, ParseJson(tokenizer_json, what));
  if (!root.is_object()) return Invalid(what, "top level must be a JSON object");
  value config;
  if (!config_json.empty()) {
    ASSIGN_OR_RETURN(config, ParseJson(config_json, "tokenizer_config.json"));
    if (!config.is_object()) return Invalid("tokenizer_config.json", "top level must be a JSON object");
  }
  auto impl = TokenizerImpl::Build(root.as_object(), config.is_object() ? &config.as_object() : nullptr, nullptr);
  if (!impl.ok()) return absl::Status(impl.status().code(), absl::StrCat(AV(what), ": ", impl.status().message()));
  return std::unique_ptr<Tokenizer>(new Tokenizer(std::move(*impl)));
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::Load(const std::string& path_or_dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::path path(path_or_dir);
  if (fs::is_directory(path, ec)) path /= "tokenizer.json";
  if (!fs::is_regular_file(path, ec)) return absl::NotFoundError(absl::StrCat("no tokenizer.json at ", path.string()));
  ASSIGN_OR_RETURN(std::string text, ReadTextFile(path.string()));
  ASSIGN_OR_RETURN(value root, ParseJson(text, path.string()));
  if (!root.is_object()) return Invalid(path.string(), "top level must be a JSON object");

  // Optional companions in the same directory.
  auto read_optional = [&](const char* name, value* out) -> absl::Status {
    const fs::path p = path.parent_path() / name;
    if (!fs::is_regular_file(p, ec)) return absl::OkStatus();
    ASSIGN_OR_RETURN(std::string t, ReadTextFile(p.string()));
    ASSIGN_OR_RETURN(*out, ParseJson(t, p.string()));
    if (!out->is_object()) return Invalid(p.string(), "top level must be a JSON object");
    return absl::OkStatus();
  };
  value config, generation;
  RETURN_IF_ERROR(read_optional("tokenizer_config.json", &config));
  RETURN_IF_ERROR(read_optional("generation_config.json", &generation));
  auto impl = TokenizerImpl::Build(root.as_object(), config.is_object() ? &config.as_object() : nullptr,
                                   generation.is_object() ? &generation.as_object() : nullptr);
  if (!impl.ok()) return absl::Status(impl.status().code(), absl::StrCat(path.string(), ": ", impl.status().message()));
  return std::unique_ptr<Tokenizer>(new Tokenizer(std::move(*impl)));
}

std::vector<int32_t> Tokenizer::Encode(std::string_view text, bool add_special) const {
  return impl_->Encode(text, add_special);
}

int32_t Tokenizer::vocab_size() const { return static_cast<int32_t>(impl_->id_to_token_.size()); }
std::optional<int32_t> Tokenizer::bos_id() const { return impl_->bos_id_; }
std::vector<int32_t> Tokenizer::eos_ids() const { return impl_->eos_ids_; }
bool Tokenizer::add_bos() const {
  return impl_->bos_id_ && !impl_->prefix_ids_.empty() && impl_->prefix_ids_.front() == *impl_->bos_id_;
}
std::optional<int32_t> Tokenizer::TokenToId(std::string_view token) const { return impl_->TokenToId(token); }
std::string_view Tokenizer::IdToToken(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= impl_->id_to_token_.size()) return {};
  return impl_->id_to_token_[id];
}
bool Tokenizer::IsSpecial(int32_t id) const {
  return id >= 0 && static_cast<size_t>(id) < impl_->is_special_.size() && impl_->is_special_[id];
}

}  // namespace accullm::text
