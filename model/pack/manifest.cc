#include "model/pack/manifest.h"

#include <sys/stat.h>

#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/json.h"
#include "common/mapped_file.h"
#include "common/status.h"

namespace accullm::model {
namespace json = boost::json;

int FormatBits(const std::string& format) {
  if (format.size() != 4 || !format.starts_with("int") || format[3] < '3' || format[3] > '8') return 0;
  return format[3] - '0';
}

namespace {

// A per-layer array of thresholds: numbers (integers included), finite and >= 0.
absl::StatusOr<std::vector<float>> ParseThresholds(const json::object& o, const char* key, size_t layers) {
  const json::value* v = o.if_contains(key);
  if (v == nullptr || !v->is_array())
    return absl::InvalidArgumentError(absl::StrCat("\"sparsity\" needs a \"", key, "\" array (one number per layer)"));
  const json::array& a = v->get_array();
  if (a.size() != layers) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"sparsity\".\"", key, "\" has ", a.size(), " entries but the pack has ", layers, " layers"));
  }
  std::vector<float> out;
  out.reserve(layers);
  for (size_t l = 0; l < a.size(); ++l) {
    const json::value& e = a[l];
    double d = 0;
    if (e.is_double()) {
      d = e.get_double();
    } else if (e.is_int64()) {
      d = static_cast<double>(e.get_int64());
    } else if (e.is_uint64()) {
      d = static_cast<double>(e.get_uint64());
    } else {
      return absl::InvalidArgumentError(absl::StrCat("\"sparsity\".\"", key, "\"[", l, "] is not a number"));
    }
    // A float threshold: a double beyond float's range would become Inf.
    if (!std::isfinite(d) || d < 0 || d > 3.0e38) {
      return absl::InvalidArgumentError(
          absl::StrCat("\"sparsity\".\"", key, "\"[", l, "] is ", d, ": thresholds must be finite and >= 0"));
    }
    out.push_back(static_cast<float>(d));
  }
  return out;
}

}  // namespace

absl::StatusOr<PackSparsity> ParsePackSparsity(const json::value& v, size_t layers) {
  if (!v.is_object()) return absl::InvalidArgumentError("\"sparsity\" must be an object");
  const json::object& o = v.get_object();
  PackSparsity s;
  ASSIGN_OR_RETURN(s.predictor, GetString(o, "predictor"));
  // CATS needs nothing but thresholds; the trained guesser has tensors of its own (kGuesserFile,
  // checked when the model loads) and a rank. Anything else is damage or a newer writer.
  if (s.predictor != "cats" && s.predictor != "lowrank" && s.predictor != "product") {
    return absl::InvalidArgumentError(absl::StrCat("\"sparsity\".\"predictor\" is \"", s.predictor,
                                                   "\"; this build knows \"cats\", \"product\" and \"lowrank\""));
  }
  if (s.predictor == "lowrank") {
    auto rank = GetInt(o, "rank");
    if (!rank.ok() || *rank < 1 || *rank > (int64_t{1} << 20))
      return absl::InvalidArgumentError("\"sparsity\" with predictor \"lowrank\" needs a \"rank\" integer >= 1");
    s.rank = *rank;
    ASSIGN_OR_RETURN(auto field, GetOptionalInt(o, "guesser_out_bits"));
    const int64_t bits = field.value_or(8);  // absent: what packs before the field ran
    if (bits != 8 && bits != 4)
      return absl::InvalidArgumentError(
          absl::StrCat("\"sparsity\".\"guesser_out_bits\" is ", bits, "; this build runs the guesser at 8 or 4 bits"));
    s.guesser_out_bits = static_cast<int>(bits);
  } else if (o.contains("guesser_out_bits")) {
    return absl::InvalidArgumentError("\"sparsity\".\"guesser_out_bits\" belongs to predictor \"lowrank\" only");
  }
  auto target = GetNumber(o, "target");
  if (!target.ok()) return absl::InvalidArgumentError("\"sparsity\".\"target\" must be a number in [0, 1)");
  s.target = *target;
  if (!std::isfinite(s.target) || s.target < 0 || s.target >= 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"sparsity\".\"target\" is ", s.target, "; it must be in [0, 1) (the share of neurons skipped)"));
  }
  ASSIGN_OR_RETURN(s.thresholds, ParseThresholds(o, "thresholds", layers));
  ASSIGN_OR_RETURN(s.active_thresholds, ParseThresholds(o, "active_thresholds", layers));
  if (s.predictor == "product") {
    if (!o.contains("gate_thresholds"))
      return absl::InvalidArgumentError("\"sparsity\" with predictor \"product\" needs \"gate_thresholds\"");
    ASSIGN_OR_RETURN(s.gate_thresholds, ParseThresholds(o, "gate_thresholds", layers));
  } else if (o.contains("gate_thresholds")) {
    return absl::InvalidArgumentError("\"sparsity\".\"gate_thresholds\" belongs to predictor \"product\" only");
  }
  if (o.contains("layer_targets")) {
    ASSIGN_OR_RETURN(std::vector<float> shares, ParseThresholds(o, "layer_targets", layers));
    for (size_t l = 0; l < shares.size(); ++l) {
      if (shares[l] >= 1)
        return absl::InvalidArgumentError(
            absl::StrCat("\"sparsity\".\"layer_targets\"[", l, "] is ", shares[l], "; it must be in [0, 1)"));
      s.layer_targets.push_back(static_cast<double>(shares[l]));
    }
  }
  ASSIGN_OR_RETURN(auto measured_on, GetOptionalString(o, "measured_on"));
  s.measured_on = measured_on.value_or("");
  if (!s.measured_on.empty() && s.measured_on != "quantized" && s.measured_on != "source")
    return absl::InvalidArgumentError("\"sparsity\".\"measured_on\" must be \"quantized\" or \"source\"");
  ASSIGN_OR_RETURN(auto tokens, GetOptionalInt(o, "calibration_tokens"));
  s.calibration_tokens = tokens.value_or(0);
  if (s.calibration_tokens < 0) return absl::InvalidArgumentError("\"sparsity\".\"calibration_tokens\" must be >= 0");
  return s;
}

namespace {

absl::Status ParseInto(const json::object& o, PackManifest& m) {
  ASSIGN_OR_RETURN(std::string format, GetString(o, "format"));
  if (format != "accullm-pack")
    return absl::InvalidArgumentError(absl::StrCat("\"format\" is \"", format, "\", not accullm-pack"));
  ASSIGN_OR_RETURN(int64_t version, GetInt(o, "format_version"));
  // The versioning rule (docs/formats.md): optional additive fields keep the version, so every
  // version up to ours reads with this code; a newer one changed the layout.
  if (version > kPackFormatVersion) {
    return absl::InvalidArgumentError(absl::StrCat(
        "pack format version ", version, " is not supported: it is newer than this build, which reads up to version ",
        kPackFormatVersion, " (upgrade AccuLLM, or re-run accullm quantize with this build)"));
  }
  if (version < 1)
    return absl::InvalidArgumentError(
        absl::StrCat("pack format version ", version, " is not supported (versions start at 1)"));
  m.format_version = static_cast<int>(version);
  // Optional (packs may predate it or come from another writer): absent leaves both empty.
  if (const json::value* src = o.if_contains("source_model"); src != nullptr) {
    if (!src->is_object())
      return absl::InvalidArgumentError("\"source_model\" must be an object with \"path\" and \"hash\"");
    ASSIGN_OR_RETURN(auto path, GetOptionalString(src->get_object(), "path"));
    ASSIGN_OR_RETURN(auto hash, GetOptionalString(src->get_object(), "hash"));
    m.source_model_path = path.value_or("");
    m.source_model_hash = hash.value_or("");
  }
  const json::value* layers = o.if_contains("layer_precision");
  if (layers == nullptr || !layers->is_array()) return absl::InvalidArgumentError("missing \"layer_precision\" array");
  for (const auto& l : layers->get_array()) {
    if (!l.is_string() || (l.get_string() != "fp16" && l.get_string() != "int4")) {
      return absl::InvalidArgumentError("\"layer_precision\" entries must be \"fp16\" or \"int4\"");
    }
    m.layer_precision.emplace_back(l.get_string());
  }
  if (const json::value* fl = o.if_contains("fp16_linears"); fl != nullptr) {
    if (!fl->is_array()) return absl::InvalidArgumentError("\"fp16_linears\" must be an array of linear names");
    for (const auto& l : fl->get_array()) {
      if (!l.is_string() || !std::string_view(l.get_string()).starts_with("model.layers."))
        return absl::InvalidArgumentError(
            "\"fp16_linears\" entries must be names like \"model.layers.7.mlp.down_proj\"");
      m.fp16_linears.emplace(l.get_string());
    }
  }
  for (auto [key, field] :
       {std::pair<const char*, std::string*>{"embeddings", &m.embeddings}, {"lm_head", &m.lm_head}}) {
    ASSIGN_OR_RETURN(auto v, GetOptionalString(o, key));
    *field = v.value_or("fp16");
    if (*field != "fp16" && FormatBits(*field) == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("\"", key, "\" must be \"fp16\" or \"int3\" to \"int8\", not \"", *field, "\""));
    }
  }
  if (const json::value* lb = o.if_contains("linear_bits"); lb != nullptr) {
    if (!lb->is_object()) return absl::InvalidArgumentError("\"linear_bits\" must be an object of linear name -> bits");
    for (const auto& [name, bits] : lb->get_object()) {
      if (!std::string_view(name).starts_with("model.layers.") || !bits.is_int64() || bits.get_int64() < 3 ||
          bits.get_int64() > 8) {
        return absl::InvalidArgumentError(
            "\"linear_bits\" entries must map names like \"model.layers.0.mlp.down_proj\" to 3..8");
      }
      m.linear_bits.emplace(std::string(name), static_cast<int>(bits.get_int64()));
    }
  }
  ASSIGN_OR_RETURN(m.method, GetString(o, "method"));
  ASSIGN_OR_RETURN(m.group_size, GetInt(o, "group_size"));
  ASSIGN_OR_RETURN(auto down_group, GetOptionalInt(o, "down_group_size"));
  m.down_group_size = down_group.value_or(0);
  if (down_group.has_value() && m.down_group_size != 32 && m.down_group_size != 64 && m.down_group_size != 128)
    return absl::InvalidArgumentError(
        absl::StrCat("\"down_group_size\" is ", m.down_group_size, "; it must be 32, 64 or 128"));
  ASSIGN_OR_RETURN(m.symmetric, GetBool(o, "symmetric"));
  ASSIGN_OR_RETURN(auto zero_bits, GetOptionalInt(o, "zero_fraction_bits"));
  m.zero_fraction_bits = static_cast<int>(zero_bits.value_or(0));
  if (m.zero_fraction_bits != 0 && m.zero_fraction_bits != 4)
    return absl::InvalidArgumentError("\"zero_fraction_bits\" must be 0 or 4");
  ASSIGN_OR_RETURN(auto scale_bits, GetOptionalInt(o, "scale_bits"));
  m.scale_bits = static_cast<int>(scale_bits.value_or(16));
  if (m.scale_bits != 16 && m.scale_bits != 8) return absl::InvalidArgumentError("\"scale_bits\" must be 16 or 8");
  ASSIGN_OR_RETURN(auto bits, GetOptionalInt(o, "accumulator_bits"));
  m.accumulator_bits = static_cast<int>(bits.value_or(0));
  ASSIGN_OR_RETURN(auto tile, GetOptionalInt(o, "tile"));
  m.tile = tile.value_or(0);
  if (const json::value* c = o.if_contains("canaries"); c != nullptr && c->is_array()) {
    for (const auto& e : c->get_array()) {
      if (!e.is_object()) return absl::InvalidArgumentError("\"canaries\" entries must be objects");
      PackCanary canary;
      ASSIGN_OR_RETURN(canary.prompt, GetString(e.get_object(), "prompt"));
      ASSIGN_OR_RETURN(canary.logits_tensor, GetString(e.get_object(), "logits_tensor"));
      const json::value* ids = e.get_object().if_contains("ids");
      if (ids == nullptr || !ids->is_array()) return absl::InvalidArgumentError("canary without \"ids\"");
      for (const auto& id : ids->get_array()) {
        if (!id.is_int64()) return absl::InvalidArgumentError("canary ids must be integers");
        canary.ids.push_back(static_cast<int32_t>(id.get_int64()));
      }
      m.canaries.push_back(std::move(canary));
    }
  }
  if (const json::value* sp = o.if_contains("sparsity"); sp != nullptr) {
    ASSIGN_OR_RETURN(m.sparsity, ParsePackSparsity(*sp, m.layer_precision.size()));
    if (m.sparsity->predictor == "lowrank" && m.format_version < kPackFormatVersionGuesser) {
      return absl::InvalidArgumentError(
          absl::StrCat("\"sparsity\".\"predictor\" \"lowrank\" needs format_version >= ", kPackFormatVersionGuesser,
                       " (the manifest says ", m.format_version, ")"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

bool PackManifest::IsBlockDownProjection(std::string_view prefix) {
  return prefix.starts_with("model.layers.") && prefix.ends_with(".mlp.down_proj");
}

int64_t PackManifest::GroupOf(const std::string& prefix) const {
  return down_group_size > 0 && IsBlockDownProjection(prefix) ? down_group_size : group_size;
}

int PackManifest::BitsOf(const std::string& prefix) const {
  if (prefix == "model.embed_tokens") return FormatBits(embeddings);
  if (prefix == "lm_head") return FormatBits(lm_head);
  auto it = linear_bits.find(prefix);
  return it != linear_bits.end() ? it->second : 4;
}

absl::StatusOr<PackManifest> PackManifest::Parse(const std::string& text, const std::string& what) {
  ASSIGN_OR_RETURN(json::value v, ParseJson(text, what));
  if (!v.is_object()) return absl::InvalidArgumentError(absl::StrCat(what, ": not a JSON object"));
  PackManifest m;
  absl::Status s = ParseInto(v.get_object(), m);
  if (!s.ok()) return absl::Status(s.code(), absl::StrCat(what, ": ", s.message()));
  return m;
}

absl::StatusOr<std::optional<PackManifest>> LoadPackManifest(const std::string& dir) {
  const std::string path = dir + "/" + kPackManifestFile;
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return std::optional<PackManifest>();
  ASSIGN_OR_RETURN(std::string text, ReadTextFile(path));
  ASSIGN_OR_RETURN(PackManifest m, PackManifest::Parse(text, path));
  return std::optional<PackManifest>(std::move(m));
}

}  // namespace accullm::model
