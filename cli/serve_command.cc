#include "cli/serve_command.h"

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>

#include "cli/cli_common.h"
#include "cli/golden_pack.h"
#include "cli/model_loading.h"
#include "cli/serve_metrics_setup.h"
#include "coordinator/api_service.h"
#include "coordinator/canary_monitor.h"
#include "coordinator/http_server.h"
#include "coordinator/log_value.h"
#include "coordinator/scheduler.h"
#include "model/kv_cache.h"
#include "monitoring/metrics_http_server.h"
#include "monitoring/serving_metrics.h"
#include "monitoring/stage_metrics.h"
#include "pipeline/pipeline_executor.h"
#include "pipeline/pipeline_stage.h"
#include "pipeline/stage_activity.h"
#include "quant/layer_drift_sampler.h"
#include "sharding/stage_plan.h"
#include "spdlog/spdlog.h"
#include "speculative/draft_source_check.h"
#include "transport/mpi_transport.h"
#include "transport/nccl_channel.h"

namespace accullm::cli {

namespace {

struct ServeFlags {
  std::string model;
  std::string served_model_name;
  std::string host = "127.0.0.1";
  int port = 8000;
  std::string api_key;
  bool metrics_no_auth = false;
  std::string chat_template;
  int threads = 0;
  int http_threads = 2;
  int max_num_seqs = 64;
  int64_t max_batch_tokens = 512;
  int64_t prefill_chunk = 256;
  int max_queue = 256;
  int64_t max_model_len = 0;
  double kv_cache_mb = 256;
  bool enable_prefix_caching = true;
  int64_t kv_block_size = 16;
  size_t max_body_bytes = 1 << 20;
  int max_connections = 1024;
  int max_n = 16;
  double drain_timeout = 30;
  double keepalive_timeout = 30;
  std::string log_level = "info";
  // Pipeline (under mpirun -np N+1): see docs/cluster.md.
  std::string plan_file;
  std::string memory;
  std::string activations = "f32";
  std::string activation_transport = "mpi";
  int micro_batches = 0;  // 0: one per stage
  int heartbeat_ms = 200;
  int stage_timeout_ms = 3000;
  bool exact = false;
  ActQuantFlags act_quant;
  std::string sparsity = "on";
  std::string kv_cache_dtype = kDefaultKvCacheDType;
  double canary_kl_threshold = 0.05;
  double canary_interval = 300;
  std::string reference;  // full-precision checkpoint for sampled layer error
  double drift_sample_rate = 0.01;
  double sparsity_recall_sample_rate = 0.01;
  int metrics_port = 0;   // 0: /metrics only on the API port (rank 0)
  std::string draft;      // golden mode: a pack of --model drafts on rank 0, --model verifies
  std::string speculate;  // draft | ngram | off; default: draft with --draft, else off
  int64_t draft_tokens = 4;
  std::optional<double> draft_min_acceptance;  // unset: the mode's default
  bool golden = false;  // --model is a pack: serve its source model's answers, the pack drafting
};

// The model_name label and the API's model id: --served-model-name, else the model directory's
// name. Every rank computes the same from the same flags.
std::string ServedModelName(const ServeFlags& f, const std::string& dir) {
  const std::string name = f.served_model_name.empty()
                               ? std::filesystem::path(dir).lexically_normal().filename().string()
                               : f.served_model_name;
  return name.empty() ? "model" : name;
}

// A stage rank's /metrics on --metrics-port + its local rank (its index among the ranks on its
// host: ranks sharing a host never collide, and a rank alone in its pod listens on the port
// itself). Started before the model loads, so a scrape during loading already answers.
std::unique_ptr<monitoring::MetricsHttpServer> StartStageMetrics(
    const ServeFlags& f, int rank, monitoring::StageMetrics& metrics, const pipeline::StageActivity& act,
    const std::atomic<const quant::LayerDriftSampler*>& drift, const std::atomic<const model::Transformer*>& sparse) {
  if (f.metrics_port <= 0) return nullptr;
  const int port = f.metrics_port + transport::LocalRank(rank);
  auto server = std::make_unique<monitoring::MetricsHttpServer>(f.host, port, [&metrics, &act, &drift, &sparse] {
    monitoring::StageSnapshot s;
    s.stage = act.stage.load();
    s.batches = act.batches.load();
    s.rows = act.rows.load();
    s.compute_seconds = static_cast<double>(act.compute_us.load()) / 1e6;
    s.send_seconds = static_cast<double>(act.send_us.load()) / 1e6;
    s.idle_seconds = static_cast<double>(act.wait_us.load()) / 1e6;
    s.bytes_sent = act.bytes_sent.load();
    s.bytes_received = act.bytes_received.load();
    s.kv_blocks_used = act.kv_blocks_used.load();
    s.kv_blocks_total = act.kv_blocks_total.load();
    s.sequences = act.sequences.load();
    const int64_t last = act.last_coordinator_us.load();
    s.coordinator_silence_seconds = last > 0 ? static_cast<double>(pipeline::StageActivity::NowUs() - last) / 1e6 : 0;
    if (const quant::LayerDriftSampler* d = drift.load(); d != nullptr) {
      s.drift = true;
      s.layer_errors = LayerErrorSamples(*d);
      s.drift_samples = d->sampled_passes();
    }
    if (const model::Transformer* m = sparse.load(); m != nullptr) s.ffn = FfnCounts(*m);
    return metrics.Render(s);
  });
  if (absl::Status st = server->Start(); !st.ok()) {
    spdlog::error("worker rank {}: {}", rank, std::string(st.message()));
    return nullptr;
  }
  spdlog::info("worker rank {}: metrics on http://{}:{}/metrics", rank, f.host, server->port());
  return server;
}

// Ranks 1..N: a pipeline stage until the coordinator says stop (or goes silent).
int RunWorkerRank(const ServeFlags& f, transport::MpiTransport& mpi) {
  // mpirun forwards SIGTERM/SIGINT to every rank: stages wait for the coordinator's
  // shutdown instead, so requests in flight can drain.
  std::signal(SIGTERM, SIG_IGN);
  std::signal(SIGINT, SIG_IGN);
  auto activations_or = ActQuantFromFlags(f.act_quant, f.exact);
  if (!activations_or.ok()) {
    spdlog::error("worker rank {}: {}", mpi.rank(), std::string(activations_or.status().message()));
    return 1;
  }
  const kernels::ActQuantConfig activations = *activations_or;
  const std::string dir = f.model.empty() ? DefaultModelDir() : f.model;
  monitoring::StageMetrics metrics(ServedModelName(f, dir), mpi.rank());
  pipeline::StageActivity activity;
  std::atomic<const quant::LayerDriftSampler*> drift_view{nullptr};
  std::atomic<const model::Transformer*> sparse_view{nullptr};
  std::unique_ptr<monitoring::MetricsHttpServer> metrics_server;
  if (f.metrics_port > 0) {
    metrics_server = StartStageMetrics(f, mpi.rank(), metrics, activity, drift_view, sparse_view);
    if (metrics_server == nullptr) return 1;
  }
  // The NaN/Inf check and the kernels' layout wait for the hello: they cover this stage's
  // layers only (mmap: a stage pages in nothing else).
  auto loaded = LoadModel(dir, f.threads, /*need_tokenizer=*/false,
                          {.check_finite = false,
                           .exact = f.exact,
                           .activations = activations,
                           .prepare_kernels = false,
                           .sparsity = f.sparsity != "off"});
  if (!loaded.ok()) {
    spdlog::error("worker rank {} on {}: {}", mpi.rank(), mpi.host(), std::string(loaded.status().message()));
    return 1;
  }
  // Sampled layer error: the stage runs only its own layers, so only those are compared.
  std::unique_ptr<quant::LayerDriftSampler> drift;
  if (!f.reference.empty()) {
    auto d =
        quant::LayerDriftSampler::Create(*loaded->transformer, f.reference, f.drift_sample_rate, loaded->pool.get());
    if (!d.ok()) {
      spdlog::error("worker rank {}: {}", mpi.rank(), std::string(d.status().message()));
      return 1;
    }
    drift = std::move(*d);
    loaded->transformer->set_observer(drift.get());
    drift_view = drift.get();
  }
  loaded->transformer->set_ffn_recall_sample_rate(f.sparsity_recall_sample_rate);
  if (loaded->transformer->ffn_sparsity_enabled()) sparse_view = loaded->transformer.get();
  const int rc = pipeline::RunPipelineStage(mpi, *loaded->transformer, &mpi, &activity);
  drift_view = nullptr;
  sparse_view = nullptr;
  if (metrics_server) metrics_server->Stop();
  return rc;
}

// --golden (cli/golden_pack.h): every rank rewrites the same flags the same way (under mpirun
// the stages then load the source).
absl::Status ResolveGolden(ServeFlags& f) {
  if (!f.golden) return absl::OkStatus();
  auto golden = ResolveGoldenPack(f.model, f.draft, f.reference);
  if (!golden.ok()) return golden.status();
  if (f.served_model_name.empty())
    f.served_model_name = std::filesystem::path(golden->draft).lexically_normal().filename().string();
  f.draft = golden->draft;
  f.model = golden->target;
  // The served model is now the full-precision one: sampled layer error against itself would
  // read 0, so --reference names only the target here.
  f.reference.clear();
  return absl::OkStatus();
}

int RunServe(ServeFlags f) {
  spdlog::set_level(spdlog::level::from_str(f.log_level));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %l %v");
  if (f.api_key.empty()) {
    if (const char* k = std::getenv("ACCULLM_API_KEY"); k != nullptr) f.api_key = k;
  }
  if (absl::Status st = ResolveGolden(f); !st.ok()) return ReportError(st);
  // Under mpirun: rank 0 is the coordinator, ranks 1..N the pipeline stages. A single rank
  // (or no mpirun) serves in-process, as before.
  std::unique_ptr<transport::MpiTransport> mpi;
  if (transport::LaunchedByMpi()) {
    auto t = transport::MpiTransport::Create();
    if (!t.ok()) return ReportError(t.status());
    mpi = std::move(*t);
    if (mpi->rank() > 0) return RunWorkerRank(f, *mpi);
  }
  const bool pipeline = mpi != nullptr && mpi->size() > 1;
  // A coordinator that cannot start takes the whole job down (the stages would wait).
  auto fail = [&](const absl::Status& st) {
    ReportError(st);
    if (pipeline) mpi->Abort(1);
    return 1;
  };
  if (!pipeline && (!f.plan_file.empty() || !f.memory.empty()))
    return ReportError(absl::InvalidArgumentError("--plan and --memory need mpirun -np N+1 (N pipeline stages)"));
  auto act_transport = pipeline::ParseActivationTransport(f.activation_transport);
  if (!act_transport.ok()) return fail(act_transport.status());
  if (*act_transport == pipeline::ActivationTransport::kNccl) {
    if (!pipeline)
      return ReportError(
          absl::InvalidArgumentError("--activation-transport nccl needs mpirun -np N+1 (N pipeline stages)"));
    // Checked before loading anything: the stages check again (and their CUDA devices).
    if (!transport::NcclBuilt())
      return fail(absl::FailedPreconditionError(
          "--activation-transport nccl: this build has no NCCL (CUDA and NCCL were not found at configure time; "
          "see docs/cluster.md)"));
  }
  auto activations_or = ActQuantFromFlags(f.act_quant, f.exact);
  if (!activations_or.ok()) return fail(activations_or.status());
  const kernels::ActQuantConfig activations = *activations_or;
  const std::string speculate = !f.speculate.empty() ? f.speculate : f.draft.empty() ? "off" : "draft";
  if (speculate == "draft" && f.draft.empty())
    return fail(absl::InvalidArgumentError("--speculate draft needs --draft PACK"));
  if (speculate != "draft" && !f.draft.empty())
    return fail(absl::InvalidArgumentError(absl::StrCat("--draft is not used with --speculate ", speculate)));
  const std::string dir = f.model.empty() ? DefaultModelDir() : f.model;
  // A pipeline coordinator computes nothing: the stages check and lay out the weights they read.
  auto loaded = LoadModel(dir, f.threads, /*need_tokenizer=*/true,
                          {.check_finite = !pipeline,
                           .exact = f.exact,
                           .activations = activations,
                           .prepare_kernels = !pipeline,
                           .sparsity = f.sparsity != "off"});
  if (!loaded.ok()) return fail(loaded.status());
  model::Transformer& model = *loaded->transformer;
  model.set_ffn_recall_sample_rate(f.sparsity_recall_sample_rate);
  const model::ModelConfig& mc = model.config();
  const int64_t context =
      f.max_model_len > 0 ? std::min(f.max_model_len, mc.max_position_embeddings) : mc.max_position_embeddings;
  auto chat = text::ChatTemplate::Load(dir, f.chat_template);
  if (!chat.ok()) return fail(chat.status());

  // The KV budget in blocks: every layer's K and V in the cache's dtype, block_size positions
  // per block (the rule the stages size their pools by).
  auto kv_dtype = KvCacheDType(f.kv_cache_dtype);
  if (!kv_dtype.ok()) return fail(kv_dtype.status());
  const kernels::KvRowFormat kv_format = model.kv_format(*kv_dtype);
  const double block_bytes = static_cast<double>(model::KvBytesPerPosition(mc.num_layers, kv_format)) * f.kv_block_size;
  const int64_t blocks = static_cast<int64_t>(f.kv_cache_mb * 1024 * 1024 / block_bytes);
  if (blocks < (context + f.kv_block_size - 1) / f.kv_block_size) {
    return fail(absl::InvalidArgumentError(
        absl::StrCat("--kv-cache-mb ", f.kv_cache_mb, " holds ", blocks * f.kv_block_size,
                     " positions: not even one sequence of the context (", context, ") fits")));
  }
  // The KV rows live in the stages (the embedded default is one in-process stage), each with
  // this many blocks; here a pool without layers (no memory) is the one allocator: the
  // scheduler admits by its free blocks and tells the stages which block ids each sequence uses.
  model::KvBlockPool pool(0, kv_format, f.kv_block_size, blocks);
  std::unique_ptr<pipeline::PipelineExecutor> executor;
  if (pipeline) {
    const int workers = mpi->size() - 1;
    sharding::StagePlan plan;
    if (!f.plan_file.empty()) {
      auto p = sharding::ReadStagePlanFile(f.plan_file);
      if (!p.ok()) return fail(p.status());
      plan = *p;
    } else {
      sharding::PlannerOptions po;
      if (!f.memory.empty()) {
        auto budgets = sharding::ParseMemoryBudgets(f.memory, workers);
        if (!budgets.ok()) return fail(budgets.status());
        po.memory_bytes = *budgets;
      }
      po.kv_positions = blocks * f.kv_block_size;
      auto p = sharding::PlanStages(sharding::CostFromModel(model, *kv_dtype), workers, po);
      if (!p.ok()) return fail(p.status());
      plan = *p;
    }
    pipeline::PipelineConfig pc;
    auto act = pipeline::ParseActivationDType(f.activations);
    if (!act.ok()) return fail(act.status());
    pc.activations = *act;
    pc.activation_transport = *act_transport;
    if (pc.activation_transport == pipeline::ActivationTransport::kNccl)
      pc.join_activation_channel = [&mpi] { return transport::JoinNcclBootstrap(*mpi, std::chrono::seconds(60)); };
    pc.kv_block_size = f.kv_block_size;
    pc.kv_blocks = blocks;
    pc.kv_dtype = *kv_dtype;  // every stage stores this dtype: the hello carries it
    pc.context = context;
    pc.micro_batches = f.micro_batches > 0 ? f.micro_batches : workers;
    pc.heartbeat_ms = static_cast<uint32_t>(f.heartbeat_ms);
    pc.timeout_ms = static_cast<uint32_t>(f.stage_timeout_ms);
    auto e = pipeline::PipelineExecutor::Start(*mpi, mc, plan, pc);
    if (!e.ok()) return fail(e.status());
    executor = std::move(*e);
    for (size_t s = 0; s < plan.stages.size(); ++s)
      spdlog::info("pipeline stage {} = rank {}: layers [{}, {})", s, s + 1, plan.stages[s].layer_begin,
                   plan.stages[s].layer_end);
    spdlog::info(
        "pipeline: {} stages, {} micro-batches in flight, activations {} over {}, heartbeat {} ms, stage timeout {} ms",
        workers, pc.micro_batches, f.activations, f.activation_transport, pc.heartbeat_ms, pc.timeout_ms);
  }

  const std::string name = ServedModelName(f, dir);
  monitoring::ServingMetrics metrics(name);
  SetStartupMetrics(model, metrics);
  if (executor) ExportPipelineOnScrape(*executor, metrics);
  // Sampled layer error against the full-precision weights: here without mpirun; under mpirun
  // each stage samples its own layers and exports them on its own port.
  std::unique_ptr<quant::LayerDriftSampler> drift;
  if (!f.reference.empty() && !executor) {
    auto d = quant::LayerDriftSampler::Create(model, f.reference, f.drift_sample_rate, loaded->pool.get());
    if (!d.ok()) return fail(d.status());
    drift = std::move(*d);
    model.set_observer(drift.get());
  }
  if (!executor && (drift != nullptr || model.ffn_sparsity_enabled())) {
    metrics.set_before_scrape([&drift, &metrics, &model] {
      if (drift != nullptr) metrics.layer_errors().Set(LayerErrorSamples(*drift), drift->sampled_passes());
      if (model.ffn_sparsity_enabled()) metrics.ffn_sparsity().Set(FfnCounts(model));
    });
  }
  // The pack's full-precision canaries, replayed through the scheduler and pipeline like any
  // request (embedded or under mpirun): a wrong or corrupted pack, or a kernel bug, shows on
  // /metrics before the first request, and later drift every --canary-interval seconds.
  auto canaries = coordinator::LoadCanaries(model);
  if (!canaries.ok()) return fail(canaries.status());
  // Golden mode: the draft runs here (rank 0, also under mpirun), sharing the target's thread
  // pool (they take turns); it must be a pack quantized from --model.
  std::unique_ptr<model::Transformer> draft_model;
  if (speculate == "draft") {
    auto d = model::Transformer::Load(f.draft, loaded->pool.get(),
                                      {.exact = f.exact, .activations = activations, .sparsity = f.sparsity != "off"});
    if (!d.ok()) return fail(d.status());
    draft_model = std::move(*d);
    if (absl::Status st = speculative::CheckDraftMatchesTarget(*draft_model, f.draft, model, dir); !st.ok())
      return fail(st);
  }
  coordinator::SchedulerConfig sc;
  if (speculate != "off") {
    sc.speculation.mode = speculate == "draft" ? coordinator::SpeculationOptions::Mode::kDraft
                                               : coordinator::SpeculationOptions::Mode::kNgram;
    sc.speculation.draft = draft_model.get();
    sc.speculation.max_draft_tokens = f.draft_tokens;
    sc.speculation.pause_below = DraftPauseBelow(speculate, f.draft_min_acceptance);
    metrics.spec_decode(f.draft_tokens);  // the series from the start, at zero
    spdlog::info("speculative decoding: {}{}, up to {} draft tokens per step", speculate,
                 speculate == "draft" ? " (" + f.draft + ")" : std::string(), f.draft_tokens);
  }
  sc.max_num_seqs = f.max_num_seqs;
  sc.max_batch_tokens = f.max_batch_tokens;
  sc.prefill_chunk = f.prefill_chunk;
  sc.max_waiting = f.max_queue;
  sc.context = context;
  sc.enable_prefix_caching = f.enable_prefix_caching;
  std::unique_ptr<coordinator::Scheduler> scheduler_owner;
  if (executor) {
    scheduler_owner =
        std::make_unique<coordinator::Scheduler>(*executor, mc, loaded->tokenizer.get(), pool, sc, &metrics);
  } else {
    auto embedded = coordinator::Scheduler::CreateEmbedded(model, loaded->tokenizer.get(), pool, sc, &metrics);
    if (!embedded.ok()) return fail(embedded.status());
    scheduler_owner = std::move(*embedded);
  }
  coordinator::Scheduler& scheduler = *scheduler_owner;

  coordinator::ServiceConfig svc;
  svc.model_name = name;
  svc.api_key = f.api_key;
  svc.metrics_need_key = !f.metrics_no_auth;
  svc.limits.max_n = f.max_n;
  coordinator::ApiService service(svc, scheduler, *loaded->tokenizer, *chat, metrics);

  coordinator::HttpServerConfig hc;
  hc.host = f.host;
  hc.port = f.port;
  hc.threads = f.http_threads;
  hc.max_body_bytes = f.max_body_bytes;
  hc.max_connections = f.max_connections;
  hc.drain_timeout_s = f.drain_timeout;
  hc.keepalive_timeout_s = f.keepalive_timeout;
  coordinator::HttpServer server(hc, service);
  if (absl::Status st = server.Listen(); !st.ok()) return fail(st);
  // --metrics-port: rank 0's series on a port of their own too (no API key), so one scrape
  // rule covers every rank (P + local rank).
  std::unique_ptr<monitoring::MetricsHttpServer> metrics_server;
  if (f.metrics_port > 0) {
    metrics_server = std::make_unique<monitoring::MetricsHttpServer>(f.host, f.metrics_port,
                                                                     [&metrics] { return metrics.Serialize(); });
    if (absl::Status st = metrics_server->Start(); !st.ok()) return fail(st);
    spdlog::info("metrics on http://{}:{}/metrics", f.host, metrics_server->port());
  }
  if (executor) {
    // A dead or silent stage: readiness fails, requests in flight end with 503, and we exit
    // non-zero (below), taking the job down so the group can be restarted.
    executor->set_on_failure([&service, &server](const std::string& why) {
      spdlog::error("{}; failing requests in flight and exiting", why);
      service.BeginDrain();
      service.AbortAll();
      server.Shutdown();
    });
  }
  scheduler.Start();
  const bool have_canaries = !canaries->empty();
  coordinator::CanaryMonitor canary_monitor(scheduler, std::move(*canaries), mc.vocab_size, f.canary_kl_threshold,
                                            metrics);
  if (have_canaries) {
    // Before the server answers /readyz: the first scrape already sees the canaries.
    auto passed = canary_monitor.CheckOnce();
    if (!passed.ok()) return fail(passed.status());
    if (!*passed)
      spdlog::error("canary drift check FAILED: a canary is not finite or its KL is over --canary-kl-threshold {}",
                    f.canary_kl_threshold);
    canary_monitor.StartPeriodic(f.canary_interval);
  }
  spdlog::info("serving model={} context={} kv_blocks={}x{} kv_cache_dtype={} chat_template={} auth={} listening on "
               "http://{}:{}",
               coordinator::LogValue(svc.model_name), context, blocks, f.kv_block_size, f.kv_cache_dtype,
               chat->is_default() ? "default" : "template", f.api_key.empty() ? "off" : "on", f.host, server.port());
  // One plain line for scripts that started us with --port 0.
  std::fprintf(stderr, "accullm serve: listening on %s:%d\n", f.host.c_str(), server.port());
  std::fflush(stderr);
  server.Run();
  canary_monitor.Stop();
  if (metrics_server) metrics_server->Stop();
  scheduler.Stop();
  if (executor) {
    if (executor->failed()) {
      spdlog::error("exiting with status 3: the pipeline failed (see above for the rank)");
      std::fflush(nullptr);
      mpi->Abort(3);  // ends every rank: MPI_Finalize would wait for the dead one
    }
    metrics.set_before_scrape({});
    executor->Shutdown();
    executor.reset();
  }
  spdlog::info("stopped");
  return 0;
}

}  // namespace

void AddServeCommand(CLI::App& app, std::function<int()>& run) {
  auto f = std::make_shared<ServeFlags>();
  CLI::App* cmd = app.add_subcommand("serve", "Serve the model over an OpenAI-compatible REST API");
  cmd->set_config("--config", "", "Read options from a TOML/INI file (keys: the long flag names, e.g. port = 8080)");
  cmd->footer(
      "Endpoints: POST /v1/completions, POST /v1/chat/completions, GET /v1/models, GET /healthz,\n"
      "GET /readyz (503 while draining), GET /metrics (Prometheus). Ready when /readyz answers 200.\n"
      "SIGTERM/SIGINT drain: new requests get 503, requests in flight finish (or are aborted after\n"
      "--drain-timeout), then exit 0. See docs/serving.md.\n"
      "Example: accullm serve --port 8080 --api-key secret\n"
      "Pipeline: mpirun -np N+1 accullm serve ... (rank 0 serves HTTP, ranks 1..N run layers; docs/cluster.md).\n"
      "Golden: accullm serve --model FP_DIR --draft PACK: the pack drafts (on rank 0), the full-precision model\n"
      "verifies every draft in the batched pass, so every answer is FP_DIR's own, token for token, for the same\n"
      "seed (greedy or sampled, n, stop, logprobs). Faster than FP_DIR alone only where verifying k+1 rows\n"
      "costs about one decode step (bandwidth-bound models; not the tiny fixture: docs/serving.md).");
  cmd->add_option("--model", f->model, "Model directory (default: the embedded model, or $ACCULLM_MODEL)");
  cmd->add_option("--served-model-name", f->served_model_name,
                  "Model id clients must send (default: the directory name)");
  cmd->add_option("--host", f->host, "Address to bind")->capture_default_str();
  cmd->add_option("--port", f->port, "Port to bind; 0 picks a free one (printed on stderr)")->capture_default_str();
  cmd->add_option("--api-key", f->api_key,
                  "Require 'Authorization: Bearer KEY' (default: $ACCULLM_API_KEY; unset = open)");
  cmd->add_flag("--metrics-no-auth", f->metrics_no_auth, "Serve /metrics without the API key");
  cmd->add_option("--metrics-port", f->metrics_port,
                  "Also serve /metrics (no API key) on this port + the rank's index among the MPI ranks on its host "
                  "(OMPI_COMM_WORLD_LOCAL_RANK; 0 without mpirun): rank 0's series, and each pipeline stage's own; "
                  "one host running ranks 0..N uses P..P+N, a rank alone in its pod uses P (0: only rank 0's "
                  "series, on the API port)")
      ->check(CLI::Range(0, 65000));
  cmd->add_option("--reference", f->reference,
                  "The full-precision checkpoint the pack was made from: for a sampled share of tokens each "
                  "linear is recomputed with its weights (mmap'd) and the relative error exported per layer "
                  "(accullm_layer_relative_error; under mpirun on each stage's --metrics-port)");
  cmd->add_option("--drift-sample-rate", f->drift_sample_rate,
                  "With --reference: the share of forward passes whose last token is compared (0, 1]")
      ->check(CLI::Range(1e-9, 1.0))
      ->capture_default_str();
  cmd->add_option("--canary-interval", f->canary_interval,
                  "Seconds between drift checks of a pack's canaries through the live pipeline (also run once at "
                  "startup; 0: startup only)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--canary-kl-threshold", f->canary_kl_threshold,
                  "A pack's canary fails when its KL against the stored full-precision logits exceeds this "
                  "(accullm_canary_passing; NaN/Inf always fails)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--chat-template", f->chat_template, "Jinja chat template file replacing the model's");
  cmd->add_option("--threads,-t", f->threads, "Compute threads (default: all cores)");
  AddActQuantFlags(*cmd, f->act_quant);
  AddExactFlag(*cmd, f->exact);
  AddSparsityFlag(*cmd, f->sparsity);
  cmd->add_option("--sparsity-recall-sample-rate", f->sparsity_recall_sample_rate,
                  "Sparse packs: the share of decode tokens whose FFN also runs densely to count the truly active "
                  "neurons and how many were kept (accullm_ffn_recall_*_total per layer; under mpirun on each "
                  "stage's --metrics-port). A keyed hash of position and hidden state picks them; a sampled token "
                  "gets the same bits. 0: off, 1: every decode token")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  cmd->add_option("--http-threads", f->http_threads, "Network threads (never run model compute)")
      ->capture_default_str()
      ->check(CLI::Range(1, 256));
  cmd->add_option("--max-num-seqs", f->max_num_seqs, "Sequences in the running batch")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  cmd->add_option("--max-batch-tokens", f->max_batch_tokens, "Tokens per iteration (decode + prefill chunks)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  cmd->add_option("--prefill-chunk", f->prefill_chunk, "Most prompt tokens of one sequence per iteration")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  cmd->add_option("--max-queue", f->max_queue, "Sequences waiting for admission before 429")
      ->capture_default_str()
      ->check(CLI::Range(0, 1 << 20));
  cmd->add_option("--max-model-len", f->max_model_len, "Context per sequence (default: the model's maximum)");
  cmd->add_option("--kv-cache-mb", f->kv_cache_mb, "KV cache budget in MiB (in --kv-cache-dtype's bytes)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  AddKvCacheDTypeFlag(*cmd, f->kv_cache_dtype);
  cmd->add_flag("--enable-prefix-caching,!--no-enable-prefix-caching", f->enable_prefix_caching,
                "Reuse the KV blocks of a cached prompt prefix (full blocks, shared read-only; default on)");
  cmd->add_option("--kv-block-size", f->kv_block_size, "Positions per KV block")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{4096}));
  cmd->add_option("--max-body-bytes", f->max_body_bytes, "Largest request body; larger gets 413")
      ->capture_default_str();
  cmd->add_option("--max-connections", f->max_connections, "Open connections beyond which new ones get 503")
      ->capture_default_str();
  cmd->add_option("--max-n", f->max_n, "Largest n (choices per request)")
      ->capture_default_str()
      ->check(CLI::Range(1, 128));
  cmd->add_option("--drain-timeout", f->drain_timeout, "Seconds to let requests finish after SIGTERM")
      ->capture_default_str();
  cmd->add_option("--keepalive-timeout", f->keepalive_timeout, "Seconds an idle connection is kept")
      ->capture_default_str();
  cmd->add_option("--log-level", f->log_level, "trace, debug, info, warn, error")->capture_default_str();
  cmd->add_option("--draft", f->draft,
                  "Golden mode: a pack quantized from --model drafts tokens (on rank 0) and --model verifies them, "
                  "so every answer is --model's own, token for token, for the same seed (refused unless the pack "
                  "records --model as its source)");
  AddGoldenFlag(*cmd, f->golden);
  cmd->add_option("--speculate", f->speculate,
                  "Speculative decoding: draft (with --draft; the default when --draft is given), ngram (prompt "
                  "lookup: continue the longest recent n-gram seen earlier in prompt + output; no draft model) or "
                  "off (the default otherwise)")
      ->check(CLI::IsMember({"draft", "ngram", "off"}));
  cmd->add_option("--draft-tokens", f->draft_tokens,
                  "The most tokens one step drafts per sequence; the draft length adapts to each sequence's "
                  "acceptance rate within it")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  AddDraftMinAcceptanceFlag(*cmd, f->draft_min_acceptance);
  cmd->add_option("--plan", f->plan_file,
                  "Pipeline: stage plan file (accullm plan --workers N --out FILE); default: planned here");
  cmd->add_option("--memory", f->memory, "Pipeline: per-worker memory budgets for the planner, e.g. 8GiB or 8GiB,4GiB");
  cmd->add_option("--activations", f->activations,
                  "Pipeline: activation precision between stages: f32 (bit-identical), f16, bf16")
      ->capture_default_str();
  cmd->add_option("--activation-transport", f->activation_transport,
                  "Pipeline: how activations move between stages: mpi (host memory) or nccl (GPU buffers; needs an "
                  "NCCL build and a CUDA device per stage)")
      ->capture_default_str()
      ->check(CLI::IsMember({"mpi", "nccl"}));
  cmd->add_option("--micro-batches", f->micro_batches,
                  "Pipeline: micro-batches kept in flight; each goes out again as soon as its tokens return (default: "
                  "one per stage)")
      ->check(CLI::Range(0, 64));
  cmd->add_option("--heartbeat-ms", f->heartbeat_ms, "Pipeline: heartbeat interval")
      ->capture_default_str()
      ->check(CLI::Range(10, 60000));
  cmd->add_option("--stage-timeout-ms", f->stage_timeout_ms,
                  "Pipeline: a stage silent this long is declared dead (time the coordinator itself got no CPU does "
                  "not count); stages give up on a coordinator silent twice this long")
      ->capture_default_str()
      ->check(CLI::Range(50, 600000));
  cmd->callback([&run, f] { run = [f] { return RunServe(*f); }; });
}

}  // namespace accullm::cli
