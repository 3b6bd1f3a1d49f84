#include "model/model_config.h"

#include "absl/strings/str_cat.h"
#include "common/json.h"
#include "common/mapped_file.h"
#include "common/status.h"

namespace accullm::model {
namespace json = boost::json;

namespace {

// Prefixes a field error with the file it came from.
absl::Status InFile(const absl::Status& s, const std::string& what) {
  return absl::Status(s.code(), absl::StrCat(what, ": ", s.message()));
}

absl::StatusOr<RopeScaling> ParseRopeScaling(const json::object& o) {
  RopeScaling r;
  auto type = GetOptionalString(o, "rope_type");
  if (!type.ok()) return type.status();
  if (!type->has_value()) {
    type = GetOptionalString(o, "type");  // older configs spell it "type"
    if (!type.ok()) return type.status();
  }
  r.type = type->value_or("");
  if (r.type == "default" || r.type.empty()) {
    r.type.clear();
    return r;
  }
  if (r.type != "llama3") {
    return absl::InvalidArgumentError(
        absl::StrCat("rope_scaling type \"", r.type, "\" is not supported (supported: llama3)"));
  }
  ASSIGN_OR_RETURN(r.factor, GetNumber(o, "factor"));
  ASSIGN_OR_RETURN(r.low_freq_factor, GetNumber(o, "low_freq_factor"));
  ASSIGN_OR_RETURN(r.high_freq_factor, GetNumber(o, "high_freq_factor"));
  ASSIGN_OR_RETURN(r.original_max_position_embeddings, GetInt(o, "original_max_position_embeddings"));
  if (r.factor <= 0 || r.low_freq_factor <= 0 || r.high_freq_factor <= r.low_freq_factor ||
      r.original_max_position_embeddings <= 0) {
    return absl::InvalidArgumentError("rope_scaling llama3 parameters out of range");
  }
  return r;
}

absl::Status ParseInto(const json::object& o, ModelConfig& c) {
  ASSIGN_OR_RETURN(c.model_type, GetString(o, "model_type"));
  if (c.model_type != "llama" && c.model_type != "mistral" && c.model_type != "qwen2") {
    return absl::InvalidArgumentError(
        absl::StrCat("unsupported architecture: model_type \"", c.model_type, "\" (supported: llama, mistral, qwen2)"));
  }
  ASSIGN_OR_RETURN(c.vocab_size, GetInt(o, "vocab_size"));
  ASSIGN_OR_RETURN(c.hidden_size, GetInt(o, "hidden_size"));
  ASSIGN_OR_RETURN(c.intermediate_size, GetInt(o, "intermediate_size"));
  ASSIGN_OR_RETURN(c.num_layers, GetInt(o, "num_hidden_layers"));
  ASSIGN_OR_RETURN(c.num_heads, GetInt(o, "num_attention_heads"));
  ASSIGN_OR_RETURN(auto kv, GetOptionalInt(o, "num_key_value_heads"));
  c.num_kv_heads = kv.value_or(c.num_heads);
  ASSIGN_OR_RETURN(auto head_dim, GetOptionalInt(o, "head_dim"));
  ASSIGN_OR_RETURN(auto max_pos, GetOptionalInt(o, "max_position_embeddings"));
  c.max_position_embeddings = max_pos.value_or(2048);
  ASSIGN_OR_RETURN(auto eps, GetOptionalNumber(o, "rms_norm_eps"));
  c.rms_norm_eps = eps.value_or(1e-6);
  ASSIGN_OR_RETURN(auto theta, GetOptionalNumber(o, "rope_theta"));
  c.rope_theta = theta.value_or(10000.0);
  ASSIGN_OR_RETURN(auto attn_bias, GetOptionalBool(o, "attention_bias"));
  c.attention_bias = attn_bias.value_or(c.model_type == "qwen2");
  ASSIGN_OR_RETURN(auto mlp_bias, GetOptionalBool(o, "mlp_bias"));
  c.mlp_bias = mlp_bias.value_or(false);
  ASSIGN_OR_RETURN(auto tied, GetOptionalBool(o, "tie_word_embeddings"));
  c.tie_word_embeddings = tied.value_or(false);
  ASSIGN_OR_RETURN(auto bos, GetOptionalInt(o, "bos_token_id"));
  c.bos_token_id = bos.value_or(-1);
  if (auto it = o.find("eos_token_id"); it != o.end() && !it->value().is_null()) {
    if (it->value().is_array()) {
      for (const auto& e : it->value().get_array()) {
        if (!e.is_int64()) return absl::InvalidArgumentError("field \"eos_token_id\" must be integers");
        c.eos_token_ids.push_back(e.get_int64());
      }
    } else {
      ASSIGN_OR_RETURN(int64_t eos, GetInt(o, "eos_token_id"));
      c.eos_token_ids.push_back(eos);
    }
  }
  if (auto it = o.find("rope_scaling"); it != o.end() && !it->value().is_null()) {
    if (!it->value().is_object()) return absl::InvalidArgumentError("field \"rope_scaling\" must be an object");
    ASSIGN_OR_RETURN(c.rope_scaling, ParseRopeScaling(it->value().get_object()));
  }
  if (auto hidden_act = GetOptionalString(o, "hidden_act");
      hidden_act.ok() && hidden_act->has_value() && **hidden_act != "silu") {
    return absl::InvalidArgumentError(absl::StrCat("hidden_act \"", **hidden_act, "\" is not supported (silu only)"));
  }

  // Sanity: sizes positive and consistent, and small enough that products cannot overflow.
  auto positive = [](int64_t v, const char* name) -> absl::Status {
    if (v <= 0 || v > (int64_t{1} << 24)) {
      return absl::InvalidArgumentError(absl::StrCat("field \"", name, "\" out of range: ", v));
    }
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(positive(c.vocab_size, "vocab_size"));
  RETURN_IF_ERROR(positive(c.hidden_size, "hidden_size"));
  RETURN_IF_ERROR(positive(c.intermediate_size, "intermediate_size"));
  RETURN_IF_ERROR(positive(c.num_layers, "num_hidden_layers"));
  RETURN_IF_ERROR(positive(c.num_heads, "num_attention_heads"));
  RETURN_IF_ERROR(positive(c.num_kv_heads, "num_key_value_heads"));
  RETURN_IF_ERROR(positive(c.max_position_embeddings, "max_position_embeddings"));
  if (c.num_heads % c.num_kv_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "num_attention_heads (", c.num_heads, ") is not a multiple of num_key_value_heads (", c.num_kv_heads, ")"));
  }
  if (head_dim.has_value()) {
    c.head_dim = *head_dim;
  } else {
    if (c.hidden_size % c.num_heads != 0) {
      return absl::InvalidArgumentError(absl::StrCat("hidden_size (", c.hidden_size,
                                                     ") is not divisible by num_attention_heads (", c.num_heads,
                                                     ") and no head_dim is given"));
    }
    c.head_dim = c.hidden_size / c.num_heads;
  }
  RETURN_IF_ERROR(positive(c.head_dim, "head_dim"));
  if (c.head_dim % 2 != 0) return absl::InvalidArgumentError("head_dim must be even for RoPE");
  if (!(c.rms_norm_eps > 0)) return absl::InvalidArgumentError("rms_norm_eps must be positive");
  if (!(c.rope_theta > 0)) return absl::InvalidArgumentError("rope_theta must be positive");
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ModelConfig> ModelConfig::Parse(const std::string& json_text, const std::string& what) {
  ASSIGN_OR_RETURN(json::value v, ParseJson(json_text, what));
  if (!v.is_object()) return absl::InvalidArgumentError(absl::StrCat(what, ": not a JSON object"));
  ModelConfig c;
  absl::Status s = ParseInto(v.get_object(), c);
  if (!s.ok()) return InFile(s, what);
  return c;
}

absl::StatusOr<ModelConfig> ModelConfig::Load(const std::string& model_dir) {
  const std::string path = model_dir + "/config.json";
  ASSIGN_OR_RETURN(std::string text, ReadTextFile(path));
  return Parse(text, path);
}

}  // namespace accullm::model
