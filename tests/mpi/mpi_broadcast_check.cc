// Run under mpirun -np 3 by tests/integration/mpi_broadcast_test.sh: MpiTransport::Broadcast
// (the NCCL bootstrap's collective) while point-to-point traffic flows, a broadcast a rank
// root starts too late (DeadlineExceeded on the others, no hang; the transport keeps working), and
// rank 0's JoinNcclBootstrap beside a 128-byte broadcast from rank 1. Prints "rank R: ok".
#include <cstdio>
#include <cstring>
#include <thread>

#include "transport/mpi_transport.h"
#include "transport/nccl_channel.h"

using namespace accullm::transport;
using namespace std::chrono_literals;

#define CHECK(cond, ...)                             \
  do {                                               \
    if (!(cond)) {                                   \
      std::fprintf(stderr, "rank %d: FAIL: ", rank); \
      std::fprintf(stderr, __VA_ARGS__);             \
      std::fprintf(stderr, "\n");                    \
      return 1;                                      \
    }                                                \
  } while (0)

int main() {
  auto t = MpiTransport::Create();
  if (!t.ok()) return std::fprintf(stderr, "%s\n", std::string(t.status().message()).c_str()), 1;
  MpiTransport& mpi = **t;
  const int rank = mpi.rank();
  CHECK(mpi.size() == 3, "needs -np 3, got %d", mpi.size());
  // 1. Messages in flight around a broadcast from rank 1.
  for (int r = 0; r < 3; ++r)
    if (r != rank) CHECK(mpi.Send(r, std::vector<uint8_t>(1000, static_cast<uint8_t>(rank))).ok(), "send");
  char data[64] = {};
  if (rank == 1) std::snprintf(data, sizeof(data), "unique id from rank 1");
  absl::Status st = mpi.Broadcast(data, sizeof(data), 1, 10s);
  CHECK(st.ok(), "broadcast: %s", std::string(st.message()).c_str());
  CHECK(std::strcmp(data, "unique id from rank 1") == 0, "broadcast data '%s'", data);
  int got = 0;
  while (got < 2) {
    auto e = mpi.Receive(5s);
    CHECK(e.ok() && e->has_value(), "receive");
    CHECK((*e)->bytes.size() == 1000 && (*e)->bytes[0] == (*e)->source, "message from %d", (*e)->source);
    ++got;
  }
  // 2. The root (rank 2) joins 1.5 s late: the others' 300 ms wait for its bytes ends with
  // DeadlineExceeded. (A root or a rank that needs nothing from the late one may complete
  // early: MPI broadcasts are not barriers.)
  int v = rank == 2 ? 42 : 0;
  if (rank == 2) {
    std::this_thread::sleep_for(1500ms);
    st = mpi.Broadcast(&v, sizeof(v), 2, 10s);
    CHECK(st.ok() && v == 42, "late broadcast: %s v=%d", std::string(st.message()).c_str(), v);
  } else {
    st = mpi.Broadcast(&v, sizeof(v), 2, 300ms);
    CHECK(absl::IsDeadlineExceeded(st), "expected a deadline, got %s", st.ToString().c_str());
    std::this_thread::sleep_for(1500ms);  // rank 2 completes the abandoned broadcast meanwhile
  }
  // 3. The transport still works: the NCCL bootstrap's shape (rank 0 joins without NCCL).
  unsigned char id[kNcclUniqueIdBytes] = {};
  if (rank == 0) {
    st = JoinNcclBootstrap(mpi, 10s);
  } else {
    if (rank == 1) std::memset(id, 0xA5, sizeof(id));
    st = mpi.Broadcast(id, sizeof(id), 1, 10s);
    CHECK(id[0] == 0xA5 && id[kNcclUniqueIdBytes - 1] == 0xA5, "id bytes");
  }
  CHECK(st.ok(), "bootstrap broadcast: %s", std::string(st.message()).c_str());
  std::printf("rank %d: ok\n", rank);
  std::fflush(stdout);
  return 0;
}
