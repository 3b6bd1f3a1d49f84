// A pipeline stage that misbehaves on purpose, for tests/integration/mpi_wire_fault_test.sh.
// It is the project's own stage (pipeline::RunPipelineStage over the embedded model, loaded as
// `accullm serve` loads a worker rank) over a transport that damages the Nth batch or result
// this rank sends (heartbeats and the hello-ack pass untouched), then carries on as a healthy
// stage would: the fault lives in the test binary, nothing in the product can be switched to
// misbehave. Run as one rank of an MPMD job beside `accullm serve` ranks:
//   mpirun -np 1 accullm serve ... : -np 1 accullm serve ... : -np 1 pipeline_fault_stage MODEL FAULT N
// FAULT (what the Nth message becomes; 0 for N, or FAULT none: never):
//   none        untouched (the control: answers must equal a normal pipeline's)
//   garbage     every body byte 0xFF (header intact): the body does not decode
//   truncate    only the first half of the bytes
//   oversize    64 MiB of zeros appended (the header's body size unchanged)
//   bad-token   a well-formed result whose first token id is the vocabulary size
//   wrong-type  a hello-ack sent in its place (well-formed, unexpected after the handshake)
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>

#include "common/thread_pool.h"
#include "model/transformer.h"
#include "pipeline/pipeline_stage.h"
#include "pipeline/wire.h"
#include "transport/mpi_transport.h"

namespace {

using namespace accullm;

class FaultyTransport final : public transport::Transport {
 public:
  FaultyTransport(transport::Transport& inner, std::string fault, int nth, int vocab)
      : inner_(inner), fault_(std::move(fault)), nth_(nth), vocab_(vocab) {}
  int rank() const override { return inner_.rank(); }
  int size() const override { return inner_.size(); }
  uint64_t bytes_sent() const override { return inner_.bytes_sent(); }
  absl::StatusOr<std::optional<transport::Envelope>> Receive(std::chrono::milliseconds timeout) override {
    return inner_.Receive(timeout);
  }
  absl::Status Send(int dest, std::vector<uint8_t> bytes) override {
    auto m = pipeline::Decode(bytes.data(), bytes.size());
    const bool counted =
        m.ok() && (m->type() == pipeline::MessageType::kBatch || m->type() == pipeline::MessageType::kResult);
    bool damage = false;
    if (counted) {
      std::lock_guard<std::mutex> lock(mu_);  // the heartbeat thread sends too
      damage = ++sent_ == nth_ && fault_ != "none";
    }
    if (damage) {
      // The wall-clock time of the fault: the test measures the client's error from it.
      const double at = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
      std::fprintf(stderr, "pipeline_fault_stage rank %d: %s on %s %d (batch %llu) to rank %d at %.3f\n", rank(),
                   fault_.c_str(), pipeline::MessageTypeName(m->type()), nth_,
                   static_cast<unsigned long long>(m->batch_id), dest, at);
      bytes = Damage(*m, std::move(bytes));
    }
    return inner_.Send(dest, std::move(bytes));
  }

 private:
  std::vector<uint8_t> Damage(pipeline::Message& m, std::vector<uint8_t> bytes) const {
    if (fault_ == "garbage") {
      std::memset(bytes.data() + pipeline::kHeaderBytes, 0xFF, bytes.size() - pipeline::kHeaderBytes);
    } else if (fault_ == "truncate") {
      bytes.resize(bytes.size() / 2);
    } else if (fault_ == "oversize") {
      bytes.resize(bytes.size() + (64u << 20), 0);
    } else if (fault_ == "bad-token") {
      if (auto* r = std::get_if<pipeline::Result>(&m.body); r != nullptr && !r->tokens.empty()) {
        r->tokens[0].id = vocab_;
        bytes = pipeline::Encode(m);
      }
    } else if (fault_ == "wrong-type") {
      pipeline::HelloAck ack;
      ack.stage = static_cast<uint32_t>(rank() - 1);
      ack.ok = true;
      bytes = pipeline::Encode(pipeline::Message{m.batch_id, ack});
    }
    return bytes;
  }

  transport::Transport& inner_;
  const std::string fault_;
  const int nth_, vocab_;
  std::mutex mu_;
  int sent_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr,
                 "usage: pipeline_fault_stage MODEL_DIR none|garbage|truncate|oversize|bad-token|wrong-type N\n");
    return 2;
  }
  const std::string fault = argv[2];
  if (fault != "none" && fault != "garbage" && fault != "truncate" && fault != "oversize" && fault != "bad-token" &&
      fault != "wrong-type") {
    std::fprintf(stderr, "pipeline_fault_stage: unknown fault %s\n", fault.c_str());
    return 2;
  }
  // As accullm serve's worker ranks: mpirun forwards SIGTERM, the coordinator's shutdown ends us.
  std::signal(SIGTERM, SIG_IGN);
  std::signal(SIGINT, SIG_IGN);
  auto mpi = transport::MpiTransport::Create();
  if (!mpi.ok()) return std::fprintf(stderr, "%s\n", std::string(mpi.status().message()).c_str()), 1;
  ThreadPool pool(1);
  // What RunWorkerRank loads (cli/serve_command.cc) with serve's default flags.
  auto model = model::Transformer::Load(argv[1], &pool, {.check_finite = false, .prepare_kernels = false});
  if (!model.ok()) {
    std::fprintf(stderr, "pipeline_fault_stage: %s\n", std::string(model.status().message()).c_str());
    (*mpi)->Abort(1);
  }
  FaultyTransport faulty(**mpi, fault, std::atoi(argv[3]), static_cast<int>((*model)->config().vocab_size));
  return pipeline::RunPipelineStage(faulty, **model, mpi->get());
}
