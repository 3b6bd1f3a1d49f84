#include "tests/support/scheduler_harness.h"

#include <regex>

#include "pipeline/pipeline_stage.h"
#include "pipeline/wire.h"
#include "tests/support/test_support.h"

namespace accullm::test_support {

void EmbeddedModelTest::SetUp() {
  pool_ = std::make_unique<ThreadPool>(threads_);
  model_ = LoadModelOrFail(ModelDir(), pool_.get());
  ASSERT_NE(model_, nullptr);
  tok_ = LoadTokenizerOrFail(ModelDir());
  ASSERT_NE(tok_, nullptr);
}

std::unique_ptr<coordinator::Scheduler> EmbeddedModelTest::EmbeddedScheduler(model::KvBlockPool& kv,
                                                                             const coordinator::SchedulerConfig& config,
                                                                             monitoring::ServingMetrics* metrics) {
  auto s = coordinator::Scheduler::CreateEmbedded(*model_, tok_.get(), kv, config, metrics);
  if (!s.ok()) {
    ADD_FAILURE() << "the embedded scheduler: " << s.status();
    return nullptr;
  }
  return std::move(*s);
}

std::vector<coordinator::SequenceParams> MixedRequest(int i, coordinator::SequenceParams base) {
  if (i == 2) base.sampling.repetition_penalty = 1.3f;
  if (i == 3) base.stop = {" the"};
  if (i == 4) base.logprobs = 2;
  std::vector<coordinator::SequenceParams> choices{base};
  if (i == 1 || i == 5) {
    choices.push_back(base);
    choices.back().sampling.seed = base.sampling.seed + 1;
  }
  return choices;
}

std::vector<std::shared_ptr<coordinator::GenerationStream>> SubmitAll(
    coordinator::Scheduler& scheduler, const std::vector<std::vector<coordinator::SequenceParams>>& requests) {
  std::vector<std::shared_ptr<coordinator::GenerationStream>> streams;
  for (size_t i = 0; i < requests.size(); ++i) {
    streams.push_back(std::make_shared<coordinator::GenerationStream>(static_cast<int>(requests[i].size())));
    const absl::Status st = scheduler.Submit(requests[i], streams.back());
    if (!st.ok()) {
      ADD_FAILURE() << "request " << i << " refused: " << st;
      return {};
    }
  }
  return streams;
}

std::vector<std::shared_ptr<coordinator::GenerationStream>> SubmitEach(
    coordinator::Scheduler& scheduler, const std::vector<coordinator::SequenceParams>& sequences) {
  std::vector<std::vector<coordinator::SequenceParams>> one_choice_each;
  for (const auto& p : sequences) one_choice_each.push_back({p});
  return SubmitAll(scheduler, one_choice_each);
}

std::vector<StreamedChoice> WaitForChoices(coordinator::GenerationStream& stream,
                                           std::chrono::steady_clock::time_point deadline) {
  std::vector<StreamedChoice> out(static_cast<size_t>(stream.choices()));
  int done = 0;
  while (true) {
    for (auto& e : stream.Drain()) {
      StreamedChoice& c = out[static_cast<size_t>(e.index)];
      for (auto& t : e.tokens) {
        c.ids.push_back(t.id);
        c.logprobs.push_back(t.logprob);
        c.top.push_back(std::move(t.top));
      }
      c.text += e.text;
      c.completion_tokens = e.completion_tokens;
      if (!e.finish_reason.empty()) {
        c.finish = e.finish_reason;
        c.error = e.error;
        ++done;
      }
    }
    if (done >= stream.choices() || std::chrono::steady_clock::now() >= deadline) return out;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

std::vector<StreamedChoice> WaitForAll(const std::vector<std::shared_ptr<coordinator::GenerationStream>>& streams,
                                       std::chrono::milliseconds timeout_each) {
  std::vector<StreamedChoice> out;
  for (const auto& s : streams) {
    std::vector<StreamedChoice> c = WaitForChoices(*s, std::chrono::steady_clock::now() + timeout_each);
    out.insert(out.end(), std::make_move_iterator(c.begin()), std::make_move_iterator(c.end()));
  }
  return out;
}

void ExpectSameChoices(const std::vector<StreamedChoice>& got, const std::vector<StreamedChoice>& want,
                       const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(got[i].ids, want[i].ids) << what << ", choice " << i;
    EXPECT_EQ(got[i].text, want[i].text) << what << ", choice " << i;
    EXPECT_EQ(got[i].finish, want[i].finish) << what << ", choice " << i;
    EXPECT_EQ(got[i].logprobs, want[i].logprobs) << what << ", choice " << i;
    EXPECT_EQ(got[i].top, want[i].top) << what << ", choice " << i;
  }
}

double SeriesValue(const std::string& exposition, const std::string& name, double absent) {
  std::smatch m;
  if (!std::regex_search(exposition, m, std::regex("\n" + name + "\\{[^}]*\\} ([0-9.e+]+)"))) return absent;
  return std::stod(m[1]);
}

EmbeddedPipelineWrapper::EmbeddedPipelineWrapper(model::Transformer& model, int64_t kv_blocks) {
  pipeline::PipelineConfig pc;
  pc.kv_blocks = kv_blocks;
  pc.context = model.config().max_position_embeddings;
  auto p = pipeline::EmbeddedPipeline::Start(model, pc);
  if (!p.ok()) {
    ADD_FAILURE() << "the embedded pipeline: " << p.status();
    return;
  }
  pipeline_ = std::move(*p);
}

void EmbeddedPipelineWrapper::Open(pipeline::SequenceSetup setup) {
  if (pipeline_ != nullptr) pipeline_->Open(std::move(setup));
}

void EmbeddedPipelineWrapper::Release(uint64_t seq) {
  if (pipeline_ != nullptr) pipeline_->Release(seq);
}

void EmbeddedPipelineWrapper::Truncate(uint64_t seq, int64_t length) {
  if (pipeline_ != nullptr) pipeline_->Truncate(seq, length);
}

absl::StatusOr<uint64_t> EmbeddedPipelineWrapper::Launch(std::vector<int32_t> tokens,
                                                         std::vector<pipeline::ExecItem> items) {
  if (pipeline_ == nullptr) return absl::FailedPreconditionError("the embedded pipeline did not start");
  return pipeline_->Launch(std::move(tokens), std::move(items));
}

absl::StatusOr<std::vector<pipeline::SampledToken>> EmbeddedPipelineWrapper::Wait(uint64_t ticket) {
  if (pipeline_ == nullptr) return absl::FailedPreconditionError("the embedded pipeline did not start");
  return pipeline_->Wait(ticket);
}

InProcessPipeline::InProcessPipeline(int stages, const std::string& model_dir)
    : stages_(stages), hub_(stages + 1), codes_(static_cast<size_t>(stages + 1), -1) {
  for (int r = 1; r <= stages_; ++r) {
    pools_.push_back(std::make_unique<ThreadPool>(1));
    models_.push_back(LoadModelOrFail(model_dir, pools_.back().get()));
    loaded_ = loaded_ && models_.back() != nullptr;
  }
}

InProcessPipeline::~InProcessPipeline() { Finish(); }

pipeline::PipelineExecutor* InProcessPipeline::Start(
    const model::ModelConfig& model, const sharding::StagePlan& plan, const pipeline::PipelineConfig& config,
    const std::function<transport::Transport&(int rank)>& stage_transport) {
  if (!loaded_ || !threads_.empty()) {
    ADD_FAILURE() << (loaded_ ? "the pipeline was started before" : "a stage's model did not load");
    return nullptr;
  }
  for (int r = 1; r <= stages_; ++r) {
    transport::Transport& t = stage_transport ? stage_transport(r) : hub_.at(r);
    threads_.emplace_back(
        [this, t = &t, r] { codes_[static_cast<size_t>(r)] = pipeline::RunPipelineStage(*t, *models_[r - 1]); });
  }
  auto e = pipeline::PipelineExecutor::Start(hub_.at(0), model, plan, config);
  if (!e.ok()) {
    ADD_FAILURE() << "the pipeline executor: " << e.status();
    return nullptr;
  }
  executor_ = std::move(*e);
  return executor_.get();
}

const std::vector<int>& InProcessPipeline::Finish() {
  if (finished_) return codes_;
  finished_ = true;
  if (executor_ != nullptr) {
    executor_->Shutdown();
  } else if (!threads_.empty()) {
    // No executor to say it: each stage, waiting for its hello or its first batch, exits on this.
    for (int r = 1; r <= stages_; ++r)
      (void)hub_.at(0).Send(r, pipeline::Encode(pipeline::Message{0, pipeline::Shutdown{}}));
  }
  for (auto& t : threads_) t.join();
  return codes_;
}

}  // namespace accullm::test_support
