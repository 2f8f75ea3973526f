#include "edge/clients/health_check.h"

#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "grpcpp/client_context.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/support/byte_buffer.h"

namespace parley::edge {
namespace {

// grpc.health.v1 is tiny and stable, so it is spoken in raw protobuf here
// rather than generated: the request for the overall status is the empty
// message, and the response is field 1 (varint) = 1 for SERVING.
constexpr char kCheckMethod[] = "/grpc.health.v1.Health/Check";

bool IsServing(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  if (!buffer.Dump(&slices).ok()) {
    return false;
  }
  std::string bytes;
  for (const grpc::Slice& slice : slices) {
    bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
  }
  return bytes == std::string("\x08\x01", 2);
}

struct Call {
  explicit Call(std::shared_ptr<grpc::Channel> channel) : stub(std::move(channel)) {
    grpc::Slice empty;
    request = grpc::ByteBuffer(&empty, 1);
  }
  grpc::GenericStub stub;
  grpc::ClientContext context;
  grpc::ByteBuffer request;
  grpc::ByteBuffer response;
};

}  // namespace

void CheckServing(const std::shared_ptr<grpc::Channel>& channel, absl::Duration timeout,
                  std::function<void(bool serving)> done) {
  auto call = std::make_shared<Call>(channel);
  call->context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  call->stub.UnaryCall(&call->context, kCheckMethod, grpc::StubOptions(), &call->request,
                       &call->response, [call, done = std::move(done)](grpc::Status status) {
                         done(status.ok() && IsServing(call->response));
                       });
}

}  // namespace parley::edge
