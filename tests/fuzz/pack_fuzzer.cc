// Door: an AccuLLM pack: accullm.json (the manifest) and the tensors it describes. The input is
// the manifest text, the split line (fuzz_input.h), then a safetensors image. A manifest that
// parses is used to load every linear the tensor table names, as the model loader does
// (model/pack/pack_reader.h), and each loaded linear runs one row forward: a matrix the reader
// accepts must never make a kernel read outside its tensors.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/thread_pool.h"
#include "model/pack/manifest.h"
#include "model/pack/pack_reader.h"
#include "model/pack/tensor_names.h"
#include "model/safetensors.h"
#include "tests/fuzz/fuzz_input.h"

namespace {

using namespace accullm;

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

void RunOneRow(const model::LinearOp& op) {
  static ThreadPool pool(1);
  const int64_t in = op.in_features(), out = op.out_features();
  if (in <= 0 || out <= 0 || in * out > (int64_t{1} << 20)) return;  // keep each input fast
  std::vector<float> x(static_cast<size_t>(in), 0.5f), y(static_cast<size_t>(out));
  op.Forward(x.data(), 1, y.data(), pool);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto parts = fuzz::SplitInput(data, size, 2);
  auto manifest = model::PackManifest::Parse(std::string(parts[0]), "accullm.json");
  if (!manifest.ok()) return 0;
  // The tensors in their own allocation, so that ASan sees reads past the image's end.
  const std::vector<uint8_t> image(parts[1].begin(), parts[1].end());
  auto file = model::SafetensorsFile::FromBytes(image.data(), image.size(), "model.safetensors");
  if (!file.ok()) return 0;
  const auto store = model::TensorStore::FromFile(std::move(*file), "fuzz-pack");
  for (const auto& [name, t] : store->tensors()) {
    if (t.shape.size() != 2) continue;
    absl::StatusOr<std::unique_ptr<model::LinearOp>> op = absl::UnknownError("");
    if (EndsWith(name, model::pack_tensor::kCodes)) {
      const std::string prefix = name.substr(0, name.size() - std::string_view(model::pack_tensor::kCodes).size());
      const int bits = manifest->BitsOf(prefix);
      if (bits <= 0) continue;
      op = model::LoadLinear(*store, prefix, t.shape[0], t.shape[1] * 8 / bits, store->Has(prefix + ".bias"),
                             &*manifest, /*quantized_expected=*/true);
    } else if (EndsWith(name, model::pack_tensor::kInt8Codes)) {
      const std::string prefix = name.substr(0, name.size() - std::string_view(model::pack_tensor::kInt8Codes).size());
      for (int64_t block : {int64_t{0}, int64_t{32}}) {
        auto int8 = model::LoadInt8Linear(*store, prefix, t.shape[0], t.shape[1], block);
        if (int8.ok()) RunOneRow(**int8);
      }
      continue;
    } else if (EndsWith(name, model::pack_tensor::kWeight)) {
      const std::string prefix = name.substr(0, name.size() - std::string_view(model::pack_tensor::kWeight).size());
      op = model::LoadLinear(*store, prefix, t.shape[0], t.shape[1], store->Has(prefix + ".bias"), &*manifest,
                             /*quantized_expected=*/false);
    } else {
      continue;
    }
    if (op.ok()) RunOneRow(**op);
  }
  return 0;
}
