// The identity of the model a pack was quantized from, as accullm.json records it
// ("source_model": {"hash": ...}): the pack writer stamps it, golden mode checks that its
// draft pack came from the model it verifies with.
#pragma once

#include <string>

#include "model/safetensors.h"

namespace accullm::model {

// 16 hex digits of a 64-bit FNV-1a over `dir`/config.json, each tensor's name, dtype and
// shape, and 64 sampled bytes of each tensor (so retrained weights of equal shapes differ)
// — it identifies a model without hashing gigabytes. Packs on disk carry it: the recipe must
// never change.
std::string SourceModelHash(const TensorStore& tensors, const std::string& dir);

}  // namespace accullm::model
