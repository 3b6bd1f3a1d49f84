#include "quant/pack_writer.h"

#include <sys/stat.h>

#include <cmath>
#include <cstring>
#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "boost/json.hpp"
#include "common/dtype.h"
#include "common/mapped_file.h"
#include "common/status.h"
#include "kernels/low_bit_matrix.h"
#include "model/pack/source_hash.h"
#include "model/pack/tensor_names.h"
#include "quant/safetensors_writer.h"

namespace accullm::quant {

namespace {

// F16 copy of a stored tensor; BF16/F32 values beyond F16's range keep their dtype instead.
void AddAsF16(SafetensorsWriter& w, const model::TensorView& t) {
  std::vector<float> f(static_cast<size_t>(t.numel()));
  ConvertToF32(t.dtype, t.data, f.data(), f.size());
  bool fits = true;
  for (float v : f) fits = fits && std::fabs(v) <= 65504.f;
  if (!fits || t.dtype == DType::kF16) {
    w.Add(t.name, t.dtype, t.shape, t.data, t.nbytes);
    return;
  }
  std::vector<uint16_t> h(f.size());
  for (size_t i = 0; i < f.size(); ++i) h[i] = F32ToF16(f[i]);
  w.Add(t.name, DType::kF16, t.shape, h.data(), h.size() * 2);
}

}  // namespace

absl::StatusOr<size_t> WritePack(const model::Transformer& model, const QuantizedMatrices& matrices,
                                 const PackDescription& desc, const std::string& out_dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat("cannot create ", out_dir, ": ", ec.message()));
  if (fs::equivalent(out_dir, desc.source_dir, ec)) {
    return absl::InvalidArgumentError("the pack directory must differ from the source model directory");
  }
  // An old manifest must not vouch for the new, half-written tensors.
  fs::remove(fs::path(out_dir) / model::kPackManifestFile, ec);
  SafetensorsWriter w;
  for (const auto& [name, t] : model.tensors().tensors()) {
    // Tensors of INT4 linears are replaced by their quantized form below.
    const std::string linear = absl::EndsWith(name, model::pack_tensor::kWeight)
                                   ? name.substr(0, name.size() - std::strlen(model::pack_tensor::kWeight))
                                   : std::string();
    if (!linear.empty() && (matrices.count(linear) || desc.int8.count(linear))) continue;
    if (absl::StrContains(name, "layernorm") || absl::StrContains(name, "norm.weight") ||
        absl::EndsWith(name, model::pack_tensor::kBias)) {
      std::vector<float> f(static_cast<size_t>(t.numel()));
      ConvertToF32(t.dtype, t.data, f.data(), f.size());
      w.Add(name, DType::kF32, t.shape, f.data(), f.size() * 4);
    } else {
      AddAsF16(w, t);
    }
  }
  boost::json::object outliers, linear_bits;
  for (const auto& [prefix, m] : desc.int8) {
    w.Add(prefix + model::pack_tensor::kInt8Codes, DType::kU8, {m->out, m->in}, m->codes.data(), m->codes.size());
    w.Add(prefix + model::pack_tensor::kInt8Scales, DType::kF16, {m->out}, m->scales.data(), m->scales.size() * 2);
  }
  // One scale format and one zero-point resolution per pack (the manifest records each once;
  // wider codes cap the resolution at 8 - bits, see QuantOptions::zero_fraction_bits).
  int zero_bits = 0, scale_bits = -1;
  for (const auto& [prefix, q] : matrices) {
    const kernels::LowBitMatrix m = q->view();
    const int bits = m.scale_codes == nullptr ? 16 : 8;
    if (scale_bits >= 0 && bits != scale_bits)
      return absl::InternalError("matrices with different scale formats cannot share a pack");
    scale_bits = bits;
    if (!m.symmetric() && m.zero_frac_bits > 0) zero_bits = 4;
  }
  for (const auto& [prefix, q] : matrices) {
    const kernels::LowBitMatrix m = q->view();
    if (!m.symmetric() && m.zero_frac_bits != kernels::ZeroFractionBits(zero_bits, m.bits))
      return absl::InternalError("matrices with different zero-point formats cannot share a pack");
  }
  if (scale_bits < 0) scale_bits = 16;  // no low-bit matrix: the default
  for (const auto& [prefix, q] : matrices) {
    const kernels::LowBitMatrix m = q->view();
    const int64_t groups = m.groups_per_row();
    w.Add(prefix + model::pack_tensor::kCodes, DType::kU8, {m.out, kernels::CodeRowBytes(m.in, m.bits)}, m.codes,
          q->codes.size());
    if (m.bits != 4 && absl::StartsWith(prefix, "model.layers.")) linear_bits[prefix] = m.bits;
    if (m.scale_codes != nullptr) {
      w.Add(prefix + model::pack_tensor::kScales, DType::kU8, {m.out, groups}, m.scale_codes, q->scale_codes.size());
      w.Add(prefix + model::pack_tensor::kRowScales, DType::kF16, {m.out}, m.row_scales, q->row_scales.size() * 2);
    } else {
      w.Add(prefix + model::pack_tensor::kScales, DType::kF16, {m.out, groups}, m.scales, q->scales.size() * 2);
    }
    if (!m.symmetric())
      w.Add(prefix + model::pack_tensor::kZeros, DType::kU8, {m.out, groups}, m.zeros, q->zeros.size());
    if (!q->outlier_cols.empty()) {
      const int64_t k = static_cast<int64_t>(q->outlier_cols.size());
      w.Add(prefix + model::pack_tensor::kOutlierCols, DType::kI32, {k}, q->outlier_cols.data(), k * 4);
      w.Add(prefix + model::pack_tensor::kOutlierWeight, DType::kF16, {m.out, k}, q->outlier_weights.data(),
            q->outlier_weights.size() * 2);
      boost::json::array cols;
      for (int32_t c : q->outlier_cols) cols.push_back(c);
      outliers[prefix] = std::move(cols);
    }
  }
  boost::json::array canaries;
  for (size_t i = 0; i < desc.canaries.size(); ++i) {
    const auto& c = desc.canaries[i];
    const std::string tensor = model::pack_tensor::CanaryLogits(i);
    w.Add(tensor, DType::kF32, {static_cast<int64_t>(c.logits.size())}, c.logits.data(), c.logits.size() * 4);
    boost::json::array ids;
    for (int32_t id : c.ids) ids.push_back(id);
    canaries.push_back(boost::json::object{{"prompt", c.prompt}, {"ids", std::move(ids)}, {"logits_tensor", tensor}});
  }
  w.AddMetadata("format", "accullm-pack");

  const QuantOptions& q = desc.options.quant;
  boost::json::array layers;
  for (auto p : desc.plan.layers) layers.push_back(boost::json::string(sharding::LayerPrecisionName(p)));
  boost::json::array fp16_linears;
  for (const std::string& name : desc.plan.Fp16LinearNames()) fp16_linears.push_back(boost::json::string(name));
  auto format_of = [&](const std::string& prefix) {
    auto it = matrices.find(prefix);
    return it == matrices.end() ? std::string("fp16") : absl::StrCat("int", it->second->format.bits);
  };
  boost::json::object manifest{
      {"format", "accullm-pack"},
      {"format_version", model::kPackFormatVersion},
      {"source_model", boost::json::object{{"path", desc.source_dir},
                                           {"hash", model::SourceModelHash(model.tensors(), desc.source_dir)}}},
      {"layer_precision", std::move(layers)},
      {"fp16_linears", std::move(fp16_linears)},
      {"linear_bits", std::move(linear_bits)},
      {"embeddings", format_of("model.embed_tokens")},
      {"lm_head", desc.int8.count("lm_head") ? std::string("int8") : format_of("lm_head")},
      {"method", QuantMethodName(q.method)},
      {"group_size", q.group_size},
      {"symmetric", q.symmetric},
      {"zero_fraction_bits", zero_bits},
      {"scale_bits", scale_bits},
      {"stochastic_rounding", q.stochastic},
      {"seed", q.seed},
      {"dampening", q.dampening},
      {"accumulator_bits", q.accumulator_bits},
      {"tile", q.tile},
      {"outliers", boost::json::object{{"enabled", desc.options.outliers.enabled},
                                       {"threshold", desc.options.outliers.threshold},
                                       {"max_fraction", desc.options.outliers.max_fraction},
                                       {"top_fraction", desc.options.outliers.top_fraction},
                                       {"channels", std::move(outliers)}}},
      {"calibration", boost::json::object{{"file", desc.calibration_file}, {"tokens", desc.calibration_tokens}}},
      {"predictor", nullptr},
      {"canaries", std::move(canaries)},
  };
  if (desc.options.down_group_size > 0 && desc.options.down_group_size != q.group_size)
    manifest["down_group_size"] = desc.options.down_group_size;
  const std::string st_path = out_dir + "/model.safetensors";
  RETURN_IF_ERROR(w.Write(st_path));
  for (const char* f : {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                        "tokenizer.model", "special_tokens_map.json"}) {
    const fs::path src = fs::path(desc.source_dir) / f;
    if (fs::exists(src)) {
      fs::copy_file(src, fs::path(out_dir) / f, fs::copy_options::overwrite_existing, ec);
      if (ec) return absl::PermissionDeniedError(absl::StrCat("cannot copy ", src.string(), ": ", ec.message()));
    }
  }
  fs::remove(fs::path(out_dir) / "model.safetensors.index.json", ec);
  // The manifest goes last: a pack without one is recognisably incomplete.
  const std::string manifest_path = out_dir + "/" + model::kPackManifestFile;
  std::FILE* f = std::fopen(manifest_path.c_str(), "wb");
  if (f == nullptr) return absl::PermissionDeniedError(absl::StrCat("cannot write ", manifest_path));
  const std::string text = boost::json::serialize(manifest) + "\n";
  const bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
  if (std::fclose(f) != 0 || !ok) return absl::DataLossError(absl::StrCat("failed writing ", manifest_path));
  return static_cast<size_t>(fs::file_size(st_path));
}

}  // namespace accullm::quant
