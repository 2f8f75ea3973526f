// What the edge does with a raw HTTP/1.1 request before any handler runs: Beast's parser with the
// edge's body limit, then routing (dialect paths, the OpenAI, AI SDK and conversations APIs),
// the query parameters the handlers read, where a token is taken from, and a rename's body.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "boost/asio/buffer.hpp"
#include "boost/beast/http/parser.hpp"
#include "boost/beast/http/string_body.hpp"
#include "edge/auth/token_source.h"
#include "edge/server/ai_sdk_api.h"
#include "edge/server/conversations_api.h"
#include "edge/server/dialects.h"
#include "edge/server/engine_io_session.h"
#include "edge/server/http_session.h"
#include "edge/server/openai_api.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace edge = parley::edge;
  namespace http = boost::beast::http;
  http::request_parser<http::string_body> parser;
  parser.body_limit(64 * 1024);
  parser.eager(true);
  boost::beast::error_code ec;
  parser.put(boost::asio::buffer(data, size), ec);
  if (!ec && !parser.is_done()) {
    parser.put_eof(ec);
  }
  if (ec || !parser.is_header_done()) {
    return 0;
  }
  const http::request<http::string_body>& request = parser.get();
  const absl::string_view target(request.target().data(), request.target().size());
  const size_t question = target.find('?');
  const absl::string_view path = target.substr(0, question);
  const absl::string_view query =
      question == absl::string_view::npos ? absl::string_view() : target.substr(question + 1);

  edge::PathLabel(path);
  edge::IsOpenAiApiPath(path);
  edge::IsAiSdkApiPath(path);
  if (edge::IsConversationsApiPath(path)) {
    if (auto route = edge::RouteConversationsApi(path)) {
      route->label();
      route->allowed_methods();
    }
    if (absl::StatusOr<int32_t> page_size =
            edge::ParsePageSize(edge::QueryParameter(query, "pageSize"));
        page_size.ok() && *page_size < 0) {
      __builtin_trap();
    }
    edge::QueryParameter(query, "pageToken");
    edge::QueryParameter(query, "leafMessageId");
    if (absl::StatusOr<std::string> title = edge::ParseRenameBody(request.body());
        title.ok() && (title->empty() || title->size() > edge::kMaxTitleBytes)) {
      __builtin_trap();
    }
  }
  edge::DevelopmentUserId(query);
  edge::TakesEngineIoUpgrade(query);
  if (const edge::Dialect* dialect = edge::FindDialect(path)) {
    edge::ExtractToken(request, dialect->tokens);
    const auto protocol = request.find(http::field::sec_websocket_protocol);
    if (protocol != request.end() && !dialect->subprotocol.empty()) {
      edge::OffersSubprotocol(
          std::string_view(protocol->value().data(), protocol->value().size()),
          std::string_view(dialect->subprotocol.data(), dialect->subprotocol.size()));
    }
  } else {
    edge::ExtractToken(request);
  }
  return 0;
}
