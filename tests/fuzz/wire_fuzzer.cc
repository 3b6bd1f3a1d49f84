// Door: every message between the coordinator and the stages (pipeline/wire.h: hello,
// hello-ack, batch, result, heartbeat, shutdown). The first byte's low bit picks raw mode (the
// rest is the whole message) or body mode (the next byte picks the type, the rest is its body,
// behind a well-formed header so that the fuzzer spends its time in the body decoders).
// A decoded message must re-encode to bytes that decode to the same encoding, and a batch that
// passes ValidateBatch must have exactly the activation bytes it announces.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <variant>
#include <vector>

#include "pipeline/wire.h"
#include "tests/fuzz/fuzz_input.h"

namespace {

using namespace accullm;
using namespace accullm::pipeline;

void CheckBatch(const Batch& b) {
  for (bool first_stage : {true, false}) {
    for (ActivationTransport t : {ActivationTransport::kMpi, ActivationTransport::kNccl}) {
      if (!ValidateBatch(b, first_stage, b.width, t).ok()) continue;
      if (first_stage || t != ActivationTransport::kMpi) continue;
      if (b.activations.size() != ActivationBytes(b)) fuzz::Broken("a valid batch's activation bytes disagree");
      std::vector<float> x(static_cast<size_t>(b.rows * b.width));
      UnpackActivations(b.activations, b.act, x.data());
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  std::vector<uint8_t> message;
  if (data[0] & 1) {
    message.assign(data + 1, data + size);
  } else {
    const uint16_t type = static_cast<uint16_t>(1 + data[1] % 6);
    const uint32_t body = static_cast<uint32_t>(size - 2), flags = 0;
    const uint64_t batch_id = 7;
    message.resize(kHeaderBytes);
    std::memcpy(message.data(), &kWireMagic, 4);
    std::memcpy(message.data() + 4, &kWireVersion, 2);
    std::memcpy(message.data() + 6, &type, 2);
    std::memcpy(message.data() + 8, &flags, 4);
    std::memcpy(message.data() + 12, &body, 4);
    std::memcpy(message.data() + 16, &batch_id, 8);
    message.insert(message.end(), data + 2, data + size);
  }
  auto decoded = Decode(message.data(), message.size());
  if (!decoded.ok()) return 0;
  const std::vector<uint8_t> encoded = Encode(*decoded);
  auto again = Decode(encoded.data(), encoded.size());
  if (!again.ok()) fuzz::Broken("a decoded message re-encodes to bytes that do not decode");
  if (Encode(*again) != encoded) fuzz::Broken("decode(encode(m)) encodes differently");
  if (const auto* b = std::get_if<Batch>(&decoded->body)) CheckBatch(*b);
  return 0;
}
