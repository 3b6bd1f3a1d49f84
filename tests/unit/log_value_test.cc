// Client-controlled values on log lines: the escaping itself (coordinator/log_value.h), and
// the request lines the service writes, captured from spdlog, for a client that puts CR, LF,
// ESC and U+2028 into `user`, the path and the method: still one line, no control bytes.
#include "coordinator/log_value.h"

#include <gtest/gtest.h>

#include <memory>
#include <sstream>

#include "common/thread_pool.h"
#include "coordinator/api_service.h"
#include "coordinator/openai_request.h"
#include "spdlog/sinks/ostream_sink.h"
#include "spdlog/spdlog.h"
#include "text/unicode_tables.h"

namespace accullm::coordinator {
namespace {

TEST(LogValue, PlainValuesStayBare) {
  EXPECT_EQ(LogValue("alice"), "alice");
  EXPECT_EQ(LogValue("/v1/completions"), "/v1/completions");
  EXPECT_EQ(LogValue("127.0.0.1:50338"), "127.0.0.1:50338");
}

TEST(LogValue, QuotesWhatLogfmtNeedsQuoted) {
  EXPECT_EQ(LogValue(""), "\"\"");
  EXPECT_EQ(LogValue("a b"), "\"a b\"");
  EXPECT_EQ(LogValue("k=v"), "\"k=v\"");
  EXPECT_EQ(LogValue("say \"hi\""), R"("say \"hi\"")");
  EXPECT_EQ(LogValue("C:\\x"), R"("C:\\x")");
}

TEST(LogValue, EscapesLineBreaksAndControls) {
  EXPECT_EQ(LogValue("a\nb"), R"("a\nb")");
  EXPECT_EQ(LogValue("a\rb"), R"("a\rb")");
  EXPECT_EQ(LogValue("a\tb"), R"("a\tb")");
  EXPECT_EQ(LogValue(std::string("a\0b", 3)), R"("a\x00b")");
  EXPECT_EQ(LogValue("\x1b[2J"), R"("\x1b[2J")");  // ESC: terminal escape sequences
  EXPECT_EQ(LogValue("\x08\x07\x1f"), R"("\x08\x07\x1f")");
  EXPECT_EQ(LogValue("del\x7f"), R"("del\x7f")");
}

TEST(LogValue, EscapesUnicodeLineBreaksC1AndBidiControls) {
  EXPECT_EQ(LogValue("a\xE2\x80\xA8"
                     "b"),
            R"("a\u2028b")");  // LINE SEPARATOR
  EXPECT_EQ(LogValue("a\xE2\x80\xA9"
                     "b"),
            R"("a\u2029b")");                      // PARAGRAPH SEPARATOR
  EXPECT_EQ(LogValue("\xC2\x85"), R"("\u0085")");  // NEL (C1)
  EXPECT_EQ(LogValue("\xC2\x9B"
                     "2J"),
            R"("\u009b2J")");  // CSI (C1)
  EXPECT_EQ(LogValue("\xE2\x80\xAE"
                     "txt"),
            R"("\u202etxt")");                         // RIGHT-TO-LEFT OVERRIDE
  EXPECT_EQ(LogValue("\xE2\x81\xA6"), R"("\u2066")");  // LEFT-TO-RIGHT ISOLATE
}

TEST(LogValue, KeepsPrintableUtf8AndSpellsOutInvalidBytes) {
  EXPECT_EQ(LogValue("Jos\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80"), "\"Jos\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80\"");
  EXPECT_EQ(LogValue("\xFF"), R"("\xff")");
  EXPECT_EQ(LogValue("\xC0\xAF"), R"("\xc0\xaf")");          // overlong '/'
  EXPECT_EQ(LogValue("\xED\xA0\x80"), R"("\xed\xa0\x80")");  // surrogate
  EXPECT_EQ(LogValue("a\xE2\x80"), R"("a\xe2\x80")");        // truncated
  EXPECT_EQ(LogValue("\xE2\x80\n"), R"("\xe2\x80\n")");      // a truncated sequence does not swallow LF
}

TEST(LogValue, OutputIsAlwaysOneSafeLine) {
  // Every single byte and every pair: no control byte and valid UTF-8 out.
  for (int a = 0; a < 256; ++a) {
    for (int b = 0; b < 256; b += 7) {
      const std::string in{static_cast<char>(a), static_cast<char>(b)};
      const std::string out = LogValue(in);
      ASSERT_TRUE(text::IsValidUtf8(out)) << a << " " << b;
      for (char ch : out) {
        const auto c = static_cast<unsigned char>(ch);
        ASSERT_TRUE(c >= 0x20 && c != 0x7F) << a << " " << b << " -> " << out;
      }
    }
  }
}

// The service's request lines, captured.
class RequestLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string dir = std::string(ACCULLM_SOURCE_DIR) + "/models/tinystories-llama";
    threads_ = std::make_unique<ThreadPool>(1);
    auto m = model::Transformer::Load(dir, threads_.get());
    ASSERT_TRUE(m.ok()) << m.status();
    model_ = std::move(*m);
    auto t = text::Tokenizer::Load(dir);
    ASSERT_TRUE(t.ok()) << t.status();
    tokenizer_ = std::move(*t);
    auto c = text::ChatTemplate::Load(dir, "");
    ASSERT_TRUE(c.ok()) << c.status();
    chat_ = std::make_unique<text::ChatTemplate>(std::move(*c));
    metrics_ = std::make_unique<monitoring::ServingMetrics>("m");
    pool_ = std::make_unique<model::KvBlockPool>(0, model_->kv_format(), 16, 64);
    SchedulerConfig sc;
    sc.context = 512;
    // Never started: a submitted request just waits, which is all the log line needs (and no
    // stage thread logs into the capture).
    scheduler_ = std::make_unique<Scheduler>(idle_, model_->config(), tokenizer_.get(), *pool_, sc, metrics_.get());
    ServiceConfig svc;
    svc.model_name = "m";
    service_ = std::make_unique<ApiService>(svc, *scheduler_, *tokenizer_, *chat_, *metrics_);
    previous_ = spdlog::default_logger();
    auto logger = std::make_shared<spdlog::logger>("capture", std::make_shared<spdlog::sinks::ostream_sink_mt>(log_));
    logger->set_pattern("%v");
    spdlog::set_default_logger(logger);
  }
  void TearDown() override {
    if (previous_) spdlog::set_default_logger(previous_);
  }

  // The captured text holds exactly one line, free of control bytes.
  void ExpectOneCleanLine() {
    const std::string s = log_.str();
    ASSERT_FALSE(s.empty());
    EXPECT_EQ(s.find('\n'), s.size() - 1) << s;  // the logger's own newline only
    for (size_t i = 0; i + 1 < s.size(); ++i) {
      const auto c = static_cast<unsigned char>(s[i]);
      EXPECT_TRUE(c >= 0x20 && c != 0x7F) << "byte " << static_cast<int>(c) << " at " << i << " in " << s;
    }
    EXPECT_EQ(s.find("\xE2\x80\xA8"), std::string::npos) << s;
  }

  // The scheduler is never started, so nothing ever reaches its executor.
  class IdleExecutor final : public pipeline::BatchExecutor {
   public:
    void Open(pipeline::SequenceSetup) override {}
    void Release(uint64_t) override {}
    void Truncate(uint64_t, int64_t) override {}
    absl::StatusOr<uint64_t> Launch(std::vector<int32_t>, std::vector<pipeline::ExecItem>) override {
      return absl::InternalError("never launched");
    }
    absl::StatusOr<std::vector<pipeline::SampledToken>> Wait(uint64_t) override {
      return absl::InternalError("never launched");
    }
  };

  std::ostringstream log_;
  IdleExecutor idle_;
  std::shared_ptr<spdlog::logger> previous_;
  std::unique_ptr<ThreadPool> threads_;
  std::unique_ptr<model::Transformer> model_;
  std::unique_ptr<text::Tokenizer> tokenizer_;
  std::unique_ptr<text::ChatTemplate> chat_;
  std::unique_ptr<monitoring::ServingMetrics> metrics_;
  std::unique_ptr<model::KvBlockPool> pool_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<ApiService> service_;
};

TEST_F(RequestLogTest, UserFieldCannotForgeALine) {
  HttpRequestView r;
  r.method = "POST";
  r.target = "/v1/completions";
  r.remote = "127.0.0.1:1234";
  // A JSON string may carry any control character (\r, \n, \u001b, \u2028).
  r.body = R"({"model":"m","prompt":"hi","max_tokens":1,)"
           R"("user":"eve\r\n2026-01-01T00:00:00.000 info request id=forged user=admin\u001b[2K\u2028\u0085"})";
  RouteResult routed = service_->Route(r);
  ASSERT_NE(routed.job, nullptr) << routed.reply.body;
  routed.job.reset();  // writes the request's line
  ExpectOneCleanLine();
  EXPECT_NE(
      log_.str().find(R"(user="eve\r\n2026-01-01T00:00:00.000 info request id=forged user=admin\x1b[2K\u2028\u0085")"),
      std::string::npos)
      << log_.str();
}

TEST_F(RequestLogTest, PathAndMethodCannotForgeALine) {
  HttpRequestView r;
  r.method = "GE\rT";
  r.target = "/x\r\nforged=1\x1b[1m\xFF?q";
  r.remote = "127.0.0.1:1234";
  service_->LogRequest(r, 404, 0.001);
  ExpectOneCleanLine();
  EXPECT_NE(log_.str().find(R"(method="GE\rT" path="/x\r\nforged=1\x1b[1m\xff")"), std::string::npos) << log_.str();
}

}  // namespace
}  // namespace accullm::coordinator
