#include "transport/mpi_transport.h"

#include <mpi.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <list>

#include "absl/strings/str_cat.h"

namespace accullm::transport {

namespace {

constexpr int kTag = 0x4143;  // every AccuLLM message uses one tag: order per sender is kept

std::string MpiError(int rc) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS) return absl::StrCat("MPI error ", rc);
  return std::string(text, static_cast<size_t>(len));
}

}  // namespace

// A broadcast handed to the progress thread. The buffer belongs to it (not to the caller): a
// caller that timed out leaves, the request may still complete later.
struct MpiTransport::Collective {
  std::vector<uint8_t> buffer;
  int root = 0;
  bool started = false, done = false;      // guarded by mu_
  std::string error;                       // guarded by mu_
  MPI_Request request = MPI_REQUEST_NULL;  // progress thread only
};

bool LaunchedByMpi() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS"}) {
    if (std::getenv(v) != nullptr) return true;
  }
  return false;
}

absl::StatusOr<std::unique_ptr<MpiTransport>> MpiTransport::Create() {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (initialized) return absl::FailedPreconditionError("MPI is already initialized in this process");
  int provided = 0;
  if (MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided) != MPI_SUCCESS)
    return absl::UnavailableError("MPI_Init_thread failed");
  if (provided < MPI_THREAD_SERIALIZED) {
    MPI_Finalize();
    return absl::FailedPreconditionError("this MPI library does not provide MPI_THREAD_SERIALIZED");
  }
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  std::unique_ptr<MpiTransport> t(new MpiTransport());
  auto* comm = new MPI_Comm;
  if (int rc = MPI_Comm_dup(MPI_COMM_WORLD, comm); rc != MPI_SUCCESS) {
    delete comm;
    return absl::UnavailableError(absl::StrCat("MPI_Comm_dup: ", MpiError(rc)));
  }
  MPI_Comm_set_errhandler(*comm, MPI_ERRORS_RETURN);
  t->comm_handle_ = comm;
  MPI_Comm_rank(*comm, &t->rank_);
  MPI_Comm_size(*comm, &t->size_);
  char name[MPI_MAX_PROCESSOR_NAME];
  int len = 0;
  MPI_Get_processor_name(name, &len);
  t->host_.assign(name, static_cast<size_t>(len));
  t->thread_ = std::thread([p = t.get()] { p->Progress(); });
  return t;
}

MpiTransport::~MpiTransport() {
  stop_.store(true);
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  auto* comm = static_cast<MPI_Comm*>(comm_handle_);
  if (comm != nullptr) {
    MPI_Comm_free(comm);
    delete comm;
  }
  MPI_Finalize();
}

void MpiTransport::Abort(int code) {
  MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);  // MPI_Abort does not return; in case it does
}

absl::Status MpiTransport::Send(int dest, std::vector<uint8_t> bytes) {
  if (dest < 0 || dest >= size_) return absl::InvalidArgumentError(absl::StrCat("no rank ", dest));
  if (bytes.size() > kMaxMessageBytes) return absl::InvalidArgumentError("message too large for MPI");
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!error_.empty()) return absl::UnavailableError(error_);
    bytes_sent_ += bytes.size();
    outbox_.emplace_back(dest, std::move(bytes));
  }
  cv_.notify_all();
  return absl::OkStatus();
}

absl::StatusOr<std::optional<Envelope>> MpiTransport::Receive(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, timeout, [&] { return !inbox_.empty() || !error_.empty(); });
  if (!inbox_.empty()) {
    Envelope e = std::move(inbox_.front());
    inbox_.pop_front();
    return std::optional<Envelope>(std::move(e));
  }
  if (!error_.empty()) return absl::UnavailableError(error_);
  return std::optional<Envelope>();
}

absl::Status MpiTransport::Broadcast(void* data, size_t bytes, int root, std::chrono::milliseconds timeout) {
  if (root < 0 || root >= size_)
    return absl::InvalidArgumentError(absl::StrCat("broadcast root ", root, ": no such rank"));
  if (bytes > static_cast<size_t>(std::numeric_limits<int>::max()))
    return absl::InvalidArgumentError("broadcast too large");
  auto c = std::make_shared<Collective>();
  c->buffer.assign(static_cast<const uint8_t*>(data), static_cast<const uint8_t*>(data) + bytes);
  c->root = root;
  std::unique_lock<std::mutex> lock(mu_);
  if (!error_.empty()) return absl::UnavailableError(error_);
  if (collective_ != nullptr) return absl::FailedPreconditionError("a broadcast is already in progress");
  collective_ = c;
  cv_.notify_all();
  cv_.wait_for(lock, timeout, [&] { return c->done || !c->error.empty() || !error_.empty(); });
  if (c->done) {
    std::memcpy(data, c->buffer.data(), bytes);
    return absl::OkStatus();
  }
  if (collective_ == c) collective_.reset();  // not started: it never will be; started: the thread keeps it
  if (!c->error.empty()) return absl::UnavailableError(c->error);
  if (!error_.empty()) return absl::UnavailableError(error_);
  return absl::DeadlineExceededError(absl::StrCat("broadcast from rank ", root, ": not complete within ",
                                                  timeout.count(), " ms (a rank did not join)"));
}

void MpiTransport::Fail(const std::string& what) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (error_.empty()) error_ = absl::StrCat("MPI transport on rank ", rank_, ": ", what);
  }
  cv_.notify_all();
}

void MpiTransport::Progress() {
  MPI_Comm comm = *static_cast<MPI_Comm*>(comm_handle_);
  struct Pending {
    MPI_Request request;
    std::vector<uint8_t> bytes;  // must outlive the request
    int dest;
  };
  std::list<Pending> sends;
  std::shared_ptr<Collective> bcast;  // the broadcast in progress
  auto failed = [&] {
    std::lock_guard<std::mutex> lock(mu_);
    return !error_.empty();
  };
  // On stop: keep going until queued sends complete, for at most two seconds.
  std::chrono::steady_clock::time_point stop_deadline{};
  int idle = 0;
  while (true) {
    bool busy = false;
    std::deque<std::pair<int, std::vector<uint8_t>>> out;
    {
      std::lock_guard<std::mutex> lock(mu_);
      out.swap(outbox_);
    }
    for (auto& [dest, bytes] : out) {
      busy = true;
      sends.push_back(Pending{MPI_REQUEST_NULL, std::move(bytes), dest});
      Pending& p = sends.back();
      if (int rc = MPI_Isend(p.bytes.data(), static_cast<int>(p.bytes.size()), MPI_BYTE, dest, kTag, comm, &p.request);
          rc != MPI_SUCCESS) {
        sends.pop_back();
        Fail(absl::StrCat("MPI_Isend to rank ", dest, ": ", MpiError(rc)));
      }
    }
    for (auto it = sends.begin(); it != sends.end();) {
      int done = 0;
      if (int rc = MPI_Test(&it->request, &done, MPI_STATUS_IGNORE); rc != MPI_SUCCESS) {
        Fail(absl::StrCat("send to rank ", it->dest, ": ", MpiError(rc)));
        it = sends.erase(it);
        continue;
      }
      if (done) {
        busy = true;
        it = sends.erase(it);
      } else {
        ++it;
      }
    }
    if (bcast == nullptr) {
      std::lock_guard<std::mutex> lock(mu_);
      if (collective_ != nullptr && !collective_->started) {
        bcast = collective_;
        bcast->started = true;
      }
      if (bcast != nullptr) {
        busy = true;
        if (int rc = MPI_Ibcast(bcast->buffer.data(), static_cast<int>(bcast->buffer.size()), MPI_BYTE, bcast->root,
                                comm, &bcast->request);
            rc != MPI_SUCCESS) {
          bcast->error = absl::StrCat("MPI_Ibcast from rank ", bcast->root, ": ", MpiError(rc));
          if (collective_ == bcast) collective_.reset();
          bcast.reset();
          cv_.notify_all();
        }
      }
    } else {
      int done = 0;
      const int rc = MPI_Test(&bcast->request, &done, MPI_STATUS_IGNORE);
      if (rc != MPI_SUCCESS || done) {
        busy = true;
        std::lock_guard<std::mutex> lock(mu_);
        if (rc != MPI_SUCCESS) bcast->error = absl::StrCat("broadcast from rank ", bcast->root, ": ", MpiError(rc));
        bcast->done = rc == MPI_SUCCESS;
        if (collective_ == bcast) collective_.reset();
        bcast.reset();
        cv_.notify_all();
      }
    }
    int flag = 0;
    MPI_Message msg;
    MPI_Status status;
    if (int rc = MPI_Improbe(MPI_ANY_SOURCE, kTag, comm, &flag, &msg, &status); rc != MPI_SUCCESS) {
      Fail(absl::StrCat("MPI_Improbe: ", MpiError(rc)));
    } else if (flag) {
      busy = true;
      int count = 0;
      MPI_Get_count(&status, MPI_BYTE, &count);
      Envelope e;
      e.source = status.MPI_SOURCE;
      e.bytes.resize(count > 0 ? static_cast<size_t>(count) : 0);
      if (int rc2 = MPI_Mrecv(e.bytes.data(), count, MPI_BYTE, &msg, MPI_STATUS_IGNORE); rc2 != MPI_SUCCESS) {
        Fail(absl::StrCat("receive from rank ", e.source, ": ", MpiError(rc2)));
      } else {
        {
          std::lock_guard<std::mutex> lock(mu_);
          inbox_.push_back(std::move(e));
        }
        cv_.notify_all();
      }
    }
    if (stop_.load()) {
      const auto now = std::chrono::steady_clock::now();
      if (stop_deadline == std::chrono::steady_clock::time_point{}) stop_deadline = now + std::chrono::seconds(2);
      bool pending_out;
      {
        std::lock_guard<std::mutex> lock(mu_);
        pending_out = !outbox_.empty();
      }
      if ((sends.empty() && !pending_out) || now > stop_deadline || failed()) break;
    }
    if (busy) {
      idle = 0;
    } else {
      // Idle: poll MPI less often the longer nothing happens (20 µs .. 1 ms); a Send wakes
      // us at once. Receives are found by polling: MPI has no blocking wait on "any of".
      idle = std::min(idle + 1, 50);
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, std::chrono::microseconds(20 * idle), [&] {
        return !outbox_.empty() || stop_.load() || (collective_ != nullptr && !collective_->started);
      });
    }
  }
  // Requests still pending after the deadline are abandoned (the peer is gone).
  for (auto& p : sends) MPI_Request_free(&p.request);
  // A broadcast still pending cannot be freed (MPI forbids it for collectives): its buffer
  // must outlive MPI, so it is left allocated on purpose (the job is ending anyway).
  if (bcast != nullptr) new std::shared_ptr<Collective>(std::move(bcast));
}

}  // namespace accullm::transport
