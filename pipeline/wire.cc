#include "pipeline/wire.h"

#include <bit>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "absl/strings/str_cat.h"
#include "common/dtype.h"
#include "common/enum_names.h"
#include "common/status.h"

namespace accullm::pipeline {

namespace {

class Writer {
 public:
  template <typename T>
  void Put(T v) {
    static_assert(std::is_trivially_copyable_v<T>);
    const size_t at = out_.size();
    out_.resize(at + sizeof(T));
    std::memcpy(out_.data() + at, &v, sizeof(T));  // little-endian hosts only (static_assert below)
  }
  void Bytes(const void* p, size_t n) {
    const size_t at = out_.size();
    out_.resize(at + n);
    if (n > 0) std::memcpy(out_.data() + at, p, n);
  }
  void Str(const std::string& s) {
    Put<uint32_t>(static_cast<uint32_t>(s.size()));
    Bytes(s.data(), s.size());
  }
  std::vector<uint8_t>& out() { return out_; }

 private:
  std::vector<uint8_t> out_;
};

static_assert(std::endian::native == std::endian::little, "the wire format is little-endian");

class Reader {
 public:
  Reader(const uint8_t* p, size_t n) : p_(p), n_(n) {}
  size_t left() const { return n_ - at_; }
  template <typename T>
  absl::Status Get(T& v, const char* what) {
    if (left() < sizeof(T)) return Short(what);
    std::memcpy(&v, p_ + at_, sizeof(T));
    at_ += sizeof(T);
    return absl::OkStatus();
  }
  // A count of elements of `elem` bytes each: refused unless that many bytes remain, so a
  // forged count can never make us allocate more than was received.
  absl::Status Count(uint64_t& n, size_t elem, const char* what) {
    uint32_t c = 0;
    RETURN_IF_ERROR(Get(c, what));
    if (elem > 0 && static_cast<uint64_t>(c) > left() / elem) {
      return absl::InvalidArgumentError(
          absl::StrCat("wire: ", what, " count ", c, " × ", elem, " bytes exceeds the ", left(), " bytes remaining"));
    }
    n = c;
    return absl::OkStatus();
  }
  absl::Status Str(std::string& s, const char* what) {
    uint64_t n = 0;
    RETURN_IF_ERROR(Count(n, 1, what));
    s.assign(reinterpret_cast<const char*>(p_ + at_), n);
    at_ += n;
    return absl::OkStatus();
  }
  absl::Status Bytes(std::vector<uint8_t>& v, uint64_t n, const char* what) {
    if (n > left()) return Short(what);
    v.assign(p_ + at_, p_ + at_ + n);
    at_ += n;
    return absl::OkStatus();
  }
  absl::Status Bool(bool& b, const char* what) {
    uint8_t v = 0;
    RETURN_IF_ERROR(Get(v, what));
    if (v > 1) return absl::InvalidArgumentError(absl::StrCat("wire: ", what, " must be 0 or 1, got ", v));
    b = v == 1;
    return absl::OkStatus();
  }
  absl::Status Finish(const char* what) {
    if (left() != 0) return absl::InvalidArgumentError(absl::StrCat("wire: ", left(), " trailing bytes after ", what));
    return absl::OkStatus();
  }

 private:
  absl::Status Short(const char* what) {
    return absl::InvalidArgumentError(absl::StrCat("wire: message truncated in ", what, " (", left(), " bytes left)"));
  }
  const uint8_t* p_;
  size_t n_, at_ = 0;
};

// The activation dtypes the wire allows and their byte on it. The bytes are the wire
// format's (fixed by version 3), not DType's numbering: never renumber them without a new
// wire version.
struct ActivationWireByte {
  DType dtype;
  uint8_t byte;
};
constexpr ActivationWireByte kActivationWireBytes[] = {{DType::kF32, 0}, {DType::kF16, 1}, {DType::kBF16, 2}};

// Their --activations spelling, and the same set of dtypes.
constexpr EnumName<DType> kActivationDTypeNames[] = {
    {DType::kF32, "f32"}, {DType::kF16, "f16"}, {DType::kBF16, "bf16"}};

// A dtype outside the set (which CheckActivationDType keeps from ever being sent) goes out as
// 0xFF, a byte every decoder refuses, rather than as some other dtype's byte.
uint8_t ActivationWireByteOf(DType t) {
  for (const ActivationWireByte& a : kActivationWireBytes)
    if (a.dtype == t) return a.byte;
  return 0xFF;
}

absl::Status Act(Reader& r, DType& t) {
  uint8_t v = 0;
  RETURN_IF_ERROR(r.Get(v, "activation dtype"));
  for (const ActivationWireByte& a : kActivationWireBytes) {
    if (a.byte == v) {
      t = a.dtype;
      return absl::OkStatus();
    }
  }
  return absl::InvalidArgumentError(absl::StrCat("wire: unknown activation dtype ", v));
}

constexpr EnumName<ActivationTransport> kActivationTransportNames[] = {{ActivationTransport::kMpi, "mpi"},
                                                                       {ActivationTransport::kNccl, "nccl"}};

constexpr EnumName<MessageType> kMessageTypeNames[] = {
    {MessageType::kHello, "hello"},   {MessageType::kHelloAck, "hello-ack"},  {MessageType::kBatch, "batch"},
    {MessageType::kResult, "result"}, {MessageType::kHeartbeat, "heartbeat"}, {MessageType::kShutdown, "shutdown"},
};
static_assert(NamesEveryValue(kMessageTypeNames, MessageType::kHello, MessageType::kShutdown));

absl::Status ActTransport(Reader& r, ActivationTransport& t) {
  uint8_t v = 0;
  RETURN_IF_ERROR(r.Get(v, "hello.activation_transport"));
  if (v > 1) return absl::InvalidArgumentError(absl::StrCat("wire: unknown activation transport ", v));
  t = static_cast<ActivationTransport>(v);
  return absl::OkStatus();
}

// KvDType's values are stable (kernels/kv_row_format.h): the byte is the value, checked.
absl::Status KvDTypeByte(Reader& r, kernels::KvDType& t) {
  uint8_t v = 0;
  RETURN_IF_ERROR(r.Get(v, "hello.kv_dtype"));
  if (v > static_cast<uint8_t>(kernels::KvDType::kInt8))
    return absl::InvalidArgumentError(absl::StrCat("wire: unknown KV cache dtype ", v));
  t = static_cast<kernels::KvDType>(v);
  return absl::OkStatus();
}

absl::Status NonNegative(int64_t v, const char* what) {
  if (v < 0) return absl::InvalidArgumentError(absl::StrCat("wire: ", what, " is negative (", v, ")"));
  return absl::OkStatus();
}

absl::Status Finite(double v, const char* what) {
  if (!std::isfinite(v)) return absl::InvalidArgumentError(absl::StrCat("wire: ", what, " is not finite"));
  return absl::OkStatus();
}

void EncodeBody(Writer& w, const Hello& h) {
  w.Put(h.stage), w.Put(h.num_stages), w.Put(h.layer_begin), w.Put(h.layer_end), w.Put(h.num_layers);
  w.Put(h.hidden), w.Put(h.vocab), w.Put(h.model_fingerprint), w.Put(h.kv_block_size), w.Put(h.kv_blocks);
  w.Put(static_cast<uint8_t>(h.kv_dtype)), w.Put(h.context), w.Put(ActivationWireByteOf(h.activations)),
      w.Put(h.heartbeat_ms), w.Put(h.timeout_ms);
  w.Put(static_cast<uint8_t>(h.activation_transport));
}
absl::Status DecodeBody(Reader& r, Hello& h) {
  RETURN_IF_ERROR(r.Get(h.stage, "hello.stage"));
  RETURN_IF_ERROR(r.Get(h.num_stages, "hello.num_stages"));
  RETURN_IF_ERROR(r.Get(h.layer_begin, "hello.layer_begin"));
  RETURN_IF_ERROR(r.Get(h.layer_end, "hello.layer_end"));
  RETURN_IF_ERROR(r.Get(h.num_layers, "hello.num_layers"));
  RETURN_IF_ERROR(r.Get(h.hidden, "hello.hidden"));
  RETURN_IF_ERROR(r.Get(h.vocab, "hello.vocab"));
  RETURN_IF_ERROR(r.Get(h.model_fingerprint, "hello.fingerprint"));
  RETURN_IF_ERROR(r.Get(h.kv_block_size, "hello.kv_block_size"));
  RETURN_IF_ERROR(r.Get(h.kv_blocks, "hello.kv_blocks"));
  RETURN_IF_ERROR(KvDTypeByte(r, h.kv_dtype));
  RETURN_IF_ERROR(r.Get(h.context, "hello.context"));
  RETURN_IF_ERROR(Act(r, h.activations));
  RETURN_IF_ERROR(r.Get(h.heartbeat_ms, "hello.heartbeat_ms"));
  RETURN_IF_ERROR(r.Get(h.timeout_ms, "hello.timeout_ms"));
  RETURN_IF_ERROR(ActTransport(r, h.activation_transport));
  if (h.num_stages == 0 || h.stage >= h.num_stages)
    return absl::InvalidArgumentError(absl::StrCat("wire: hello stage ", h.stage, " of ", h.num_stages));
  if (h.num_layers <= 0 || h.layer_begin < 0 || h.layer_begin >= h.layer_end || h.layer_end > h.num_layers)
    return absl::InvalidArgumentError(absl::StrCat("wire: hello layer range [", h.layer_begin, ", ", h.layer_end,
                                                   ") is not inside [0, ", h.num_layers, ")"));
  if (h.hidden <= 0 || h.vocab <= 0 || h.kv_block_size <= 0 || h.kv_blocks <= 0 || h.context <= 0)
    return absl::InvalidArgumentError("wire: hello sizes must be positive");
  if (h.heartbeat_ms == 0 || h.timeout_ms <= h.heartbeat_ms)
    return absl::InvalidArgumentError("wire: hello timeout must exceed the heartbeat interval");
  return absl::OkStatus();
}

void EncodeBody(Writer& w, const HelloAck& a) {
  w.Put(a.stage), w.Put(a.model_fingerprint), w.Put<uint8_t>(a.ok ? 1 : 0), w.Str(a.message);
}
absl::Status DecodeBody(Reader& r, HelloAck& a) {
  RETURN_IF_ERROR(r.Get(a.stage, "ack.stage"));
  RETURN_IF_ERROR(r.Get(a.model_fingerprint, "ack.fingerprint"));
  RETURN_IF_ERROR(r.Bool(a.ok, "ack.ok"));
  return r.Str(a.message, "ack.message");
}

void EncodeSampling(Writer& w, const model::SamplingParams& s) {
  w.Put(s.temperature), w.Put<int32_t>(s.top_k), w.Put(s.top_p), w.Put(s.min_p), w.Put(s.repetition_penalty);
  w.Put(s.presence_penalty), w.Put(s.frequency_penalty), w.Put(s.seed);
}
absl::Status DecodeSampling(Reader& r, model::SamplingParams& s) {
  int32_t top_k = 0;
  RETURN_IF_ERROR(r.Get(s.temperature, "sampling.temperature"));
  RETURN_IF_ERROR(r.Get(top_k, "sampling.top_k"));
  RETURN_IF_ERROR(r.Get(s.top_p, "sampling.top_p"));
  RETURN_IF_ERROR(r.Get(s.min_p, "sampling.min_p"));
  RETURN_IF_ERROR(r.Get(s.repetition_penalty, "sampling.repetition_penalty"));
  RETURN_IF_ERROR(r.Get(s.presence_penalty, "sampling.presence_penalty"));
  RETURN_IF_ERROR(r.Get(s.frequency_penalty, "sampling.frequency_penalty"));
  RETURN_IF_ERROR(r.Get(s.seed, "sampling.seed"));
  s.top_k = top_k;
  absl::Status st = s.Validate();
  if (!st.ok()) return absl::InvalidArgumentError(absl::StrCat("wire: sampling parameters: ", st.message()));
  return absl::OkStatus();
}

void EncodeBody(Writer& w, const Batch& b) {
  w.Put<uint32_t>(static_cast<uint32_t>(b.opened.size()));
  for (const auto& s : b.opened) {
    w.Put(s.seq);
    EncodeSampling(w, s.sampling);
    w.Put(s.logprobs);
    w.Put<uint32_t>(static_cast<uint32_t>(s.prefix_blocks.size()));
    w.Bytes(s.prefix_blocks.data(), s.prefix_blocks.size() * sizeof(int32_t));
    w.Put<uint32_t>(static_cast<uint32_t>(s.prefix_tokens.size()));
    w.Bytes(s.prefix_tokens.data(), s.prefix_tokens.size() * sizeof(int32_t));
  }
  w.Put<uint32_t>(static_cast<uint32_t>(b.released.size()));
  for (uint64_t s : b.released) w.Put(s);
  w.Put<uint32_t>(static_cast<uint32_t>(b.truncated.size()));
  for (const auto& t : b.truncated) w.Put(t.seq), w.Put(t.length);
  w.Put<uint32_t>(static_cast<uint32_t>(b.items.size()));
  for (const auto& it : b.items) {
    w.Put(it.seq), w.Put(it.position), w.Put(it.n_tokens), w.Put<uint8_t>(it.sample ? 1 : 0);
    w.Put<uint32_t>(static_cast<uint32_t>(it.blocks.size()));
    w.Bytes(it.blocks.data(), it.blocks.size() * sizeof(int32_t));
    w.Put(it.verify);
  }
  w.Put<uint32_t>(static_cast<uint32_t>(b.tokens.size()));
  w.Bytes(b.tokens.data(), b.tokens.size() * sizeof(int32_t));
  w.Put(ActivationWireByteOf(b.act)), w.Put(b.rows), w.Put(b.width), w.Put<uint8_t>(b.activations_over_nccl ? 1 : 0);
  w.Put<uint64_t>(b.activations.size());
  w.Bytes(b.activations.data(), b.activations.size());
}
absl::Status DecodeBody(Reader& r, Batch& b) {
  uint64_t n = 0;
  // Encodings: new sequence 8+36+4+4+4 (sampling: seven 4-byte fields and an 8-byte seed; two
  // counts) + 4 per prefix block id and token, released 8, truncation 16, item 37 + 4 per block
  // id, token 4.
  RETURN_IF_ERROR(r.Count(n, 56, "batch.opened"));
  b.opened.resize(n);
  for (auto& s : b.opened) {
    RETURN_IF_ERROR(r.Get(s.seq, "opened.seq"));
    RETURN_IF_ERROR(DecodeSampling(r, s.sampling));
    RETURN_IF_ERROR(r.Get(s.logprobs, "opened.logprobs"));
    if (s.logprobs < -1 || s.logprobs > kMaxTopLogprobs)
      return absl::InvalidArgumentError(
          absl::StrCat("wire: logprobs ", s.logprobs, " outside [-1, ", kMaxTopLogprobs, "]"));
    uint64_t k = 0;
    RETURN_IF_ERROR(r.Count(k, sizeof(int32_t), "opened.prefix_blocks"));
    s.prefix_blocks.resize(k);
    for (auto& id : s.prefix_blocks) {
      RETURN_IF_ERROR(r.Get(id, "opened.prefix_blocks"));
      if (id < 0) return absl::InvalidArgumentError(absl::StrCat("wire: negative block id ", id));
    }
    RETURN_IF_ERROR(r.Count(k, sizeof(int32_t), "opened.prefix_tokens"));
    s.prefix_tokens.resize(k);
    for (auto& t : s.prefix_tokens) {
      RETURN_IF_ERROR(r.Get(t, "opened.prefix_tokens"));
      if (t < 0) return absl::InvalidArgumentError(absl::StrCat("wire: negative token id ", t));
    }
  }
  RETURN_IF_ERROR(r.Count(n, 8, "batch.released"));
  b.released.resize(n);
  for (auto& s : b.released) RETURN_IF_ERROR(r.Get(s, "released"));
  RETURN_IF_ERROR(r.Count(n, 16, "batch.truncated"));
  b.truncated.resize(n);
  for (auto& t : b.truncated) {
    RETURN_IF_ERROR(r.Get(t.seq, "truncated.seq"));
    RETURN_IF_ERROR(r.Get(t.length, "truncated.length"));
    RETURN_IF_ERROR(NonNegative(t.length, "truncated.length"));
  }
  RETURN_IF_ERROR(r.Count(n, 37, "batch.items"));
  b.items.resize(n);
  for (auto& it : b.items) {
    RETURN_IF_ERROR(r.Get(it.seq, "item.seq"));
    RETURN_IF_ERROR(r.Get(it.position, "item.position"));
    RETURN_IF_ERROR(r.Get(it.n_tokens, "item.n_tokens"));
    RETURN_IF_ERROR(r.Bool(it.sample, "item.sample"));
    RETURN_IF_ERROR(NonNegative(it.position, "item.position"));
    if (it.n_tokens <= 0 || it.n_tokens > (int64_t{1} << 30))
      return absl::InvalidArgumentError(absl::StrCat("wire: item n_tokens ", it.n_tokens, " out of range"));
    uint64_t k = 0;
    RETURN_IF_ERROR(r.Count(k, sizeof(int32_t), "item.blocks"));
    it.blocks.resize(k);
    for (auto& id : it.blocks) {
      RETURN_IF_ERROR(r.Get(id, "item.blocks"));
      if (id < 0) return absl::InvalidArgumentError(absl::StrCat("wire: negative block id ", id));
    }
    RETURN_IF_ERROR(r.Get(it.verify, "item.verify"));
    if (it.verify < 0 || it.verify >= it.n_tokens || (it.verify > 0 && !it.sample))
      return absl::InvalidArgumentError(absl::StrCat("wire: item verifies ", it.verify, " draft tokens of ",
                                                     it.n_tokens, " rows", it.sample ? "" : " without sampling"));
  }
  RETURN_IF_ERROR(r.Count(n, sizeof(int32_t), "batch.tokens"));
  b.tokens.resize(n);
  for (auto& t : b.tokens) {
    RETURN_IF_ERROR(r.Get(t, "batch.tokens"));
    if (t < 0) return absl::InvalidArgumentError(absl::StrCat("wire: negative token id ", t));
  }
  RETURN_IF_ERROR(Act(r, b.act));
  RETURN_IF_ERROR(r.Get(b.rows, "batch.rows"));
  RETURN_IF_ERROR(r.Get(b.width, "batch.width"));
  RETURN_IF_ERROR(NonNegative(b.rows, "batch.rows"));
  RETURN_IF_ERROR(NonNegative(b.width, "batch.width"));
  RETURN_IF_ERROR(r.Bool(b.activations_over_nccl, "batch.activations_over_nccl"));
  uint64_t bytes = 0;
  RETURN_IF_ERROR(r.Get(bytes, "batch.activation_bytes"));
  if (bytes > r.left())
    return absl::InvalidArgumentError(
        absl::StrCat("wire: activation bytes ", bytes, " exceed the ", r.left(), " bytes remaining"));
  // rows * width * size must equal the bytes actually carried (overflow-safe: both bounded).
  if (b.rows > (int64_t{1} << 31) || b.width > (int64_t{1} << 24))
    return absl::InvalidArgumentError("wire: activation shape out of range");
  if (b.activations_over_nccl && bytes != 0)
    return absl::InvalidArgumentError("wire: a batch whose activations follow over NCCL carries activation bytes");
  if (bytes != 0 && static_cast<uint64_t>(b.rows) * static_cast<uint64_t>(b.width) * DTypeSize(b.act) != bytes)
    return absl::InvalidArgumentError(
        absl::StrCat("wire: activations [", b.rows, ", ", b.width, "] ", ActivationDTypeName(b.act), " need ",
                     static_cast<uint64_t>(b.rows) * b.width * DTypeSize(b.act), " bytes, message carries ", bytes));
  return r.Bytes(b.activations, bytes, "batch.activations");
}

void EncodeBody(Writer& w, const Result& res) {
  w.Put<uint8_t>(res.ok ? 1 : 0), w.Str(res.error), w.Put(res.compute_seconds);
  w.Put<uint32_t>(static_cast<uint32_t>(res.tokens.size()));
  for (const auto& t : res.tokens) {
    w.Put(t.seq), w.Put(t.id), w.Put(t.logprob);
    w.Put<uint32_t>(static_cast<uint32_t>(t.top.size()));
    for (const auto& [id, lp] : t.top) w.Put(id), w.Put(lp);
  }
}
absl::Status DecodeBody(Reader& r, Result& res) {
  RETURN_IF_ERROR(r.Bool(res.ok, "result.ok"));
  RETURN_IF_ERROR(r.Str(res.error, "result.error"));
  RETURN_IF_ERROR(r.Get(res.compute_seconds, "result.compute_seconds"));
  RETURN_IF_ERROR(Finite(res.compute_seconds, "result.compute_seconds"));
  uint64_t n = 0;
  RETURN_IF_ERROR(r.Count(n, 20, "result.tokens"));
  res.tokens.resize(n);
  for (auto& t : res.tokens) {
    RETURN_IF_ERROR(r.Get(t.seq, "token.seq"));
    RETURN_IF_ERROR(r.Get(t.id, "token.id"));
    RETURN_IF_ERROR(r.Get(t.logprob, "token.logprob"));
    if (t.id < 0) return absl::InvalidArgumentError(absl::StrCat("wire: negative token id ", t.id));
    uint64_t k = 0;
    RETURN_IF_ERROR(r.Count(k, 8, "token.top"));
    if (k > static_cast<uint64_t>(kMaxTopLogprobs)) return absl::InvalidArgumentError("wire: too many top logprobs");
    t.top.resize(k);
    for (auto& [id, lp] : t.top) {
      RETURN_IF_ERROR(r.Get(id, "top.id"));
      RETURN_IF_ERROR(r.Get(lp, "top.logprob"));
      if (id < 0) return absl::InvalidArgumentError("wire: negative top token id");
    }
  }
  return absl::OkStatus();
}

void EncodeBody(Writer& w, const Heartbeat& h) { w.Put(h.stage), w.Put(h.batches_done), w.Put(h.compute_seconds); }
absl::Status DecodeBody(Reader& r, Heartbeat& h) {
  RETURN_IF_ERROR(r.Get(h.stage, "heartbeat.stage"));
  RETURN_IF_ERROR(r.Get(h.batches_done, "heartbeat.batches_done"));
  RETURN_IF_ERROR(r.Get(h.compute_seconds, "heartbeat.compute_seconds"));
  return Finite(h.compute_seconds, "heartbeat.compute_seconds");
}

void EncodeBody(Writer&, const Shutdown&) {}
absl::Status DecodeBody(Reader&, Shutdown&) { return absl::OkStatus(); }

template <typename T>
absl::StatusOr<Message> DecodeAs(Reader& r, uint64_t batch_id, const char* name) {
  T body;
  RETURN_IF_ERROR(DecodeBody(r, body));
  RETURN_IF_ERROR(r.Finish(name));
  return Message{batch_id, std::move(body)};
}

}  // namespace

const char* MessageTypeName(MessageType t) { return NameOf(kMessageTypeNames, t); }

absl::Status CheckActivationDType(DType t) {
  if (ActivationWireByteOf(t) != 0xFF) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("activations cannot travel between stages as ", DTypeName(t),
                                                 " (valid: ", NameList(kActivationDTypeNames), ")"));
}

const char* ActivationDTypeName(DType t) { return NameOf(kActivationDTypeNames, t); }

absl::StatusOr<DType> ParseActivationDType(std::string_view name) {
  return ParseName(kActivationDTypeNames, name, "activation precision");
}

const char* ActivationTransportName(ActivationTransport t) { return NameOf(kActivationTransportNames, t); }

absl::StatusOr<ActivationTransport> ParseActivationTransport(std::string_view name) {
  return ParseName(kActivationTransportNames, name, "activation transport");
}

size_t ActivationBytes(const Batch& b) {
  return static_cast<size_t>(b.rows) * static_cast<size_t>(b.width) * DTypeSize(b.act);
}

MessageType Message::type() const {
  static constexpr MessageType kTypes[] = {MessageType::kHello,  MessageType::kHelloAck,  MessageType::kBatch,
                                           MessageType::kResult, MessageType::kHeartbeat, MessageType::kShutdown};
  return kTypes[body.index()];
}

std::vector<uint8_t> Encode(const Message& m) {
  Writer w;
  w.Put(kWireMagic), w.Put(kWireVersion), w.Put(static_cast<uint16_t>(m.type())), w.Put<uint32_t>(0);
  w.Put<uint32_t>(0);  // body size, patched below
  w.Put(m.batch_id);
  std::visit([&](const auto& b) { EncodeBody(w, b); }, m.body);
  auto& out = w.out();
  const uint32_t body = static_cast<uint32_t>(out.size() - kHeaderBytes);
  std::memcpy(out.data() + 12, &body, sizeof(body));
  return std::move(out);
}

absl::StatusOr<Message> Decode(const uint8_t* data, size_t size) {
  if (size < kHeaderBytes)
    return absl::InvalidArgumentError(absl::StrCat("wire: ", size, " bytes is shorter than the header"));
  if (size > kMaxMessageBytes)
    return absl::InvalidArgumentError(absl::StrCat("wire: message of ", size, " bytes too large"));
  Reader r(data, size);
  uint32_t magic = 0, flags = 0, body = 0;
  uint16_t version = 0, type = 0;
  uint64_t batch_id = 0;
  RETURN_IF_ERROR(r.Get(magic, "header"));
  RETURN_IF_ERROR(r.Get(version, "header"));
  RETURN_IF_ERROR(r.Get(type, "header"));
  RETURN_IF_ERROR(r.Get(flags, "header"));
  RETURN_IF_ERROR(r.Get(body, "header"));
  RETURN_IF_ERROR(r.Get(batch_id, "header"));
  if (magic != kWireMagic) return absl::InvalidArgumentError("wire: bad magic (not an AccuLLM message)");
  if (version != kWireVersion)
    return absl::InvalidArgumentError(absl::StrCat("wire: version ", version, ", this build speaks ", kWireVersion));
  if (flags != 0) return absl::InvalidArgumentError(absl::StrCat("wire: unknown flags ", flags));
  if (body != size - kHeaderBytes)
    return absl::InvalidArgumentError(
        absl::StrCat("wire: header says ", body, " body bytes, received ", size - kHeaderBytes));
  switch (static_cast<MessageType>(type)) {
    case MessageType::kHello: return DecodeAs<Hello>(r, batch_id, "hello");
    case MessageType::kHelloAck: return DecodeAs<HelloAck>(r, batch_id, "hello-ack");
    case MessageType::kBatch: return DecodeAs<Batch>(r, batch_id, "batch");
    case MessageType::kResult: return DecodeAs<Result>(r, batch_id, "result");
    case MessageType::kHeartbeat: return DecodeAs<Heartbeat>(r, batch_id, "heartbeat");
    case MessageType::kShutdown: return DecodeAs<Shutdown>(r, batch_id, "shutdown");
  }
  return absl::InvalidArgumentError(absl::StrCat("wire: unknown message type ", type));
}

absl::Status ValidateBatch(const Batch& b, bool first_stage, int64_t width, ActivationTransport transport) {
  if (b.items.empty()) return absl::InvalidArgumentError("batch: no items");
  int64_t rows = 0;
  for (const auto& it : b.items) rows += it.n_tokens;  // each <= 2^30, count <= 2^31/37: no overflow
  if (rows != b.rows)
    return absl::InvalidArgumentError(absl::StrCat("batch: items cover ", rows, " rows, header says ", b.rows));
  // Every stage: the last one's history needs a token per row, the others pass them on.
  if (static_cast<int64_t>(b.tokens.size()) != rows)
    return absl::InvalidArgumentError(absl::StrCat("batch: ", b.tokens.size(), " token ids for ", rows, " rows"));
  if (first_stage) {
    if (b.activations_over_nccl)
      return absl::InvalidArgumentError("batch: stage 0 takes token ids, not activations over NCCL");
    if (!b.activations.empty()) return absl::InvalidArgumentError("batch: stage 0 takes token ids, not activations");
  } else {
    if (b.width != width)
      return absl::InvalidArgumentError(absl::StrCat("batch: activation width ", b.width, ", model hidden ", width));
    if (b.activations_over_nccl && transport != ActivationTransport::kNccl)
      return absl::InvalidArgumentError(
          "batch: activations announced over NCCL in a pipeline that moves them over MPI");
    if (transport == ActivationTransport::kNccl) {
      if (!b.activations_over_nccl)
        return absl::InvalidArgumentError(
            "batch: this pipeline moves activations over NCCL, the batch carries them inline");
      if (!b.activations.empty()) return absl::InvalidArgumentError("batch: activations both inline and over NCCL");
      return absl::OkStatus();
    }
    if (b.activations.size() != static_cast<size_t>(rows * width) * DTypeSize(b.act))
      return absl::InvalidArgumentError("batch: activation bytes do not match [rows, width]");
  }
  return absl::OkStatus();
}

std::vector<uint8_t> PackActivations(const float* x, size_t n, DType t) {
  std::vector<uint8_t> out(n * DTypeSize(t));
  switch (t) {
    case DType::kF32:
      // memcpy's pointers must be valid even for 0 bytes, and an empty vector's data() may be null.
      if (n > 0) std::memcpy(out.data(), x, n * sizeof(float));
      break;
    case DType::kF16:
    case DType::kBF16:
      for (size_t i = 0; i < n; ++i) {
        const uint16_t h = t == DType::kF16 ? F32ToF16(x[i]) : F32ToBf16(x[i]);
        std::memcpy(out.data() + 2 * i, &h, 2);
      }
      break;
    default:  // not an activation dtype: CheckActivationDType keeps it from getting here
      break;
  }
  return out;
}

void UnpackActivations(const std::vector<uint8_t>& bytes, DType t, float* out) {
  ConvertToF32(t, bytes.data(), out, bytes.size() / DTypeSize(t));
}

}  // namespace accullm::pipeline
