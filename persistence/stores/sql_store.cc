#include "persistence/stores/sql_store.h"

#include <algorithm>
#include <cstdint>
#include <functional>
#include <iterator>
#include <limits>
#include <optional>
#include <unordered_map>
#include <utility>

#include "absl/random/random.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "boost/json/parse.hpp"
#include "boost/json/serialize.hpp"
#include "boost/json/value.hpp"
#include "common/sha256.h"
#include "persistence/stores/page_token.h"

namespace parley::persistence {

std::vector<std::vector<std::string>> SchemaMigrations(const SqlDialect& dialect) {
  const std::vector<std::pair<absl::string_view, absl::string_view>> spelling = {
      {"$SERIAL_KEY", dialect.serial_key},
      {"$INT64", dialect.int64},
      {"$KEYED_TABLE", dialect.keyed_table}};
  std::vector<std::vector<std::string>> migrations = {
      // 1: conversations, the message tree and the delta log.
      {
          R"sql(CREATE TABLE conversations (
                pos $SERIAL_KEY,
                id TEXT NOT NULL UNIQUE,
                owner TEXT NOT NULL,
                title TEXT NOT NULL,
                metadata TEXT NOT NULL,
                origin_client_message_id TEXT,
                create_time $INT64 NOT NULL,
                update_time $INT64 NOT NULL,
                delete_time $INT64))sql",
          "CREATE INDEX conversations_by_owner ON conversations (owner, update_time, pos)",
          "CREATE UNIQUE INDEX conversations_by_origin ON conversations "
          "(owner, origin_client_message_id)",
          R"sql(CREATE TABLE messages (
                pos $SERIAL_KEY,
                id TEXT NOT NULL UNIQUE,
                conversation_id TEXT NOT NULL REFERENCES conversations (id),
                parent_id TEXT,
                role INTEGER NOT NULL,
                content TEXT NOT NULL,
                status INTEGER NOT NULL,
                finish_reason TEXT NOT NULL,
                prompt_tokens $INT64 NOT NULL,
                completion_tokens $INT64 NOT NULL,
                usage_estimated INTEGER NOT NULL,
                model TEXT NOT NULL,
                client_message_id TEXT,
                last_seq $INT64 NOT NULL,
                create_time $INT64 NOT NULL,
                update_time $INT64 NOT NULL))sql",
          "CREATE INDEX messages_by_conversation ON messages (conversation_id, pos)",
          "CREATE UNIQUE INDEX messages_by_client_id ON messages "
          "(conversation_id, client_message_id)",
          R"sql(CREATE TABLE message_deltas (
                message_id TEXT NOT NULL,
                seq $INT64 NOT NULL,
                text TEXT NOT NULL,
                PRIMARY KEY (message_id, seq))$KEYED_TABLE)sql",
      },
      // 2: conversations a client names. A name is unique per owner among live
      // conversations only, so deleting a conversation frees its name; the index
      // is also what makes two concurrent first uses end in one conversation.
      {
          "ALTER TABLE conversations ADD COLUMN client_conversation_id TEXT",
          "CREATE UNIQUE INDEX conversations_by_client_name ON conversations"
          " (owner, client_conversation_id)"
          " WHERE client_conversation_id IS NOT NULL AND delete_time IS NULL",
      },
      // 3: the checksum of an ended message's text, computed once when it ends. Messages that ended
      // before this column existed get theirs when read.
      {
          "ALTER TABLE messages ADD COLUMN sha256 TEXT",
      },
      // 4: the lease a streaming reply's writer holds (microseconds since the
      // epoch); NULL for replies that began before leases existed, which never lapse.
      {
          "ALTER TABLE messages ADD COLUMN lease_expire_time $INT64",
          "CREATE INDEX messages_by_lease ON messages (lease_expire_time) WHERE status = 1",
      },
      // 5: a streamed reply's text is stored once, append-only: while it streams its deltas are
      // the only copy (the row keeps what it was appended with, usually nothing); when it ends
      // they become the row's content, `seq_ends` records where each seq's text ends in it (byte
      // offsets, "3,5,12"), and they leave the delta log. Rows written before are moved over by
      // MigrateToAppendOnlyText.
      {
          "ALTER TABLE messages ADD COLUMN seq_ends TEXT",
      },
  };
  for (std::vector<std::string>& version : migrations) {
    for (std::string& statement : version) {
      statement = absl::StrReplaceAll(statement, spelling);
    }
  }
  return migrations;
}

namespace {

constexpr int kMaxIdRetries = 3;
// The schema version from which streamed text is stored append-only (MigrateToAppendOnlyText).
constexpr size_t kAppendOnlyTextVersion = 5;

// Columns read into a Conversation, in ReadConversation's order.
constexpr char kConversationColumns[] =
    "c.id, c.owner, c.title, c.metadata, c.create_time, c.update_time, c.pos,"
    " c.client_conversation_id";
// Columns read into a Message, in ReadMessage's order.
constexpr char kMessageColumns[] =
    "m.id, m.conversation_id, m.parent_id, m.role, m.content, m.status, m.finish_reason, "
    "m.prompt_tokens, m.completion_tokens, m.usage_estimated, m.model, m.client_message_id, "
    "m.last_seq, m.create_time, m.update_time, m.pos, m.sha256";

// 128 random bits, hex: URL-safe and unguessable enough that ids reveal nothing.
std::string NewId() {
  thread_local absl::BitGen bits;
  const uint64_t high = absl::Uniform<uint64_t>(bits);
  const uint64_t low = absl::Uniform<uint64_t>(bits);
  return absl::StrCat(absl::Hex(high, absl::kZeroPad16), absl::Hex(low, absl::kZeroPad16));
}

int64_t NowMicros() { return absl::ToUnixMicros(absl::Now()); }

void SetTime(int64_t micros, google::protobuf::Timestamp* timestamp) {
  timestamp->set_seconds(micros / 1000000);
  timestamp->set_nanos(static_cast<int32_t>(micros % 1000000) * 1000);
}

SqlParam NullIfEmpty(const std::string& text) {
  if (text.empty()) {
    return nullptr;
  }
  return text;
}

std::string MetadataToJson(const google::protobuf::Map<std::string, std::string>& metadata) {
  boost::json::object object;
  for (const auto& [key, value] : metadata) {
    object[key] = value;
  }
  return boost::json::serialize(object);
}

// A row that does not parse reads as no metadata rather than failing the call.
void MetadataFromJson(const std::string& json,
                      google::protobuf::Map<std::string, std::string>* metadata) {
  boost::system::error_code error;
  boost::json::value value = boost::json::parse(json, error);
  if (error || !value.is_object()) {
    return;
  }
  for (const auto& [key, item] : value.get_object()) {
    if (item.is_string()) {
      (*metadata)[std::string(key)] = std::string(item.get_string());
    }
  }
}

v1::Conversation ReadConversation(const SqlRows& rows, int r) {
  v1::Conversation conversation;
  conversation.set_id(rows.Text(r, 0));
  conversation.set_user_id(rows.Text(r, 1));
  conversation.set_title(rows.Text(r, 2));
  MetadataFromJson(rows.Text(r, 3), conversation.mutable_metadata());
  SetTime(rows.Int(r, 4), conversation.mutable_create_time());
  SetTime(rows.Int(r, 5), conversation.mutable_update_time());
  conversation.set_client_conversation_id(rows.Text(r, 7));
  return conversation;
}

v1::Message ReadMessage(const SqlRows& rows, int r) {
  v1::Message message;
  message.set_id(rows.Text(r, 0));
  message.set_conversation_id(rows.Text(r, 1));
  message.set_parent_id(rows.Text(r, 2));
  message.set_role(static_cast<v1::Role>(rows.Int(r, 3)));
  message.set_content(rows.Text(r, 4));
  message.set_status(static_cast<v1::MessageStatus>(rows.Int(r, 5)));
  message.set_finish_reason(rows.Text(r, 6));
  message.mutable_usage()->set_prompt_tokens(static_cast<int32_t>(rows.Int(r, 7)));
  message.mutable_usage()->set_completion_tokens(static_cast<int32_t>(rows.Int(r, 8)));
  message.mutable_usage()->set_estimated(rows.Int(r, 9) != 0);
  message.set_model(rows.Text(r, 10));
  message.set_client_message_id(rows.Text(r, 11));
  message.set_last_seq(rows.Int(r, 12));
  SetTime(rows.Int(r, 13), message.mutable_create_time());
  SetTime(rows.Int(r, 14), message.mutable_update_time());
  if (message.status() != v1::MESSAGE_STATUS_STREAMING) {
    message.set_sha256(rows.IsNull(r, 16) ? common::Sha256Hex(message.content())
                                          : rows.Text(r, 16));
  }
  return message;
}

// Splits `total` rows into statements of 64, 16, 4 or 1 rows, so a few
// prepared statements serve every batch size.
absl::Status ForChunks(size_t total,
                       const std::function<absl::Status(size_t begin, size_t count)>& run) {
  size_t begin = 0;
  while (begin < total) {
    size_t count = 1;
    for (size_t size : {64, 16, 4}) {
      if (total - begin >= size) {
        count = size;
        break;
      }
    }
    if (absl::Status status = run(begin, count); !status.ok()) {
      return status;
    }
    begin += count;
  }
  return absl::OkStatus();
}

// "$1, $2, …" for `count` values.
std::string Placeholders(size_t count) {
  std::string out;
  for (size_t i = 1; i <= count; ++i) {
    absl::StrAppend(&out, i == 1 ? "" : ", ", "$", i);
  }
  return out;
}

// "($1, $2, $3), ($4, $5, $6)…" for `rows` rows of `width` values; the last
// value of each row is wrapped in `last_prefix` … `last_suffix` (a cast).
std::string RowPlaceholders(size_t rows, size_t width, absl::string_view last_prefix = "",
                            absl::string_view last_suffix = "") {
  std::string out;
  size_t n = 1;
  for (size_t r = 0; r < rows; ++r) {
    absl::StrAppend(&out, r == 0 ? "(" : ", (");
    for (size_t c = 0; c < width; ++c, ++n) {
      const bool last = c + 1 == width;
      absl::StrAppend(&out, c == 0 ? "" : ", ", last ? last_prefix : "", "$", n,
                      last ? last_suffix : "");
    }
    out += ")";
  }
  return out;
}

absl::StatusOr<v1::Conversation> LoadConversation(SqlTransaction& tx, const std::string& user_id,
                                                  const std::string& conversation_id,
                                                  const char* for_update) {
  absl::StatusOr<SqlRows> rows =
      tx.Query(absl::StrCat("SELECT ", kConversationColumns,
                            " FROM conversations c WHERE c.id = $1 AND c.owner = $2"
                            " AND c.delete_time IS NULL",
                            for_update),
               {conversation_id, user_id});
  if (!rows.ok()) {
    return rows.status();
  }
  if (rows->empty()) {
    return absl::NotFoundError("conversation not found");
  }
  return ReadConversation(*rows, 0);
}

// A streaming message's row holds only what it was appended with; its deltas, the only copy of
// the rest until it ends, are appended to each one's content here.
absl::Status FillStreamingText(SqlTransaction& tx, const std::vector<v1::Message*>& messages) {
  std::unordered_map<std::string, v1::Message*> streaming;
  std::vector<SqlParam> ids;
  for (v1::Message* message : messages) {
    if (message->status() == v1::MESSAGE_STATUS_STREAMING && message->last_seq() > 0 &&
        streaming.emplace(message->id(), message).second) {
      ids.push_back(message->id());
    }
  }
  if (ids.empty()) {
    return absl::OkStatus();
  }
  absl::StatusOr<SqlRows> rows =
      tx.Query(absl::StrCat("SELECT message_id, text FROM message_deltas WHERE message_id IN (",
                            Placeholders(ids.size()), ") ORDER BY message_id, seq"),
               ids);
  if (!rows.ok()) {
    return rows.status();
  }
  for (int r = 0; r < rows->size(); ++r) {
    streaming[rows->Text(r, 0)]->mutable_content()->append(rows->Text(r, 1));
  }
  return absl::OkStatus();
}

absl::Status FillStreamingText(SqlTransaction& tx, std::vector<v1::Message>& messages) {
  std::vector<v1::Message*> pointers;
  for (v1::Message& message : messages) {
    pointers.push_back(&message);
  }
  return FillStreamingText(tx, pointers);
}

// Where each seq's text ends in an ended message's content, as `seq_ends` stores it.
std::string EncodeSeqEnds(const std::vector<size_t>& ends) {
  std::string out;
  for (size_t end : ends) {
    absl::StrAppend(&out, out.empty() ? "" : ",", end);
  }
  return out;
}

// The byte offset in the content where `seq` (1-based) ends; false if `seq_ends` does not say.
bool SeqEnd(absl::string_view seq_ends, int64_t seq, size_t* end) {
  int64_t current = 1;
  for (absl::string_view field : absl::StrSplit(seq_ends, ',')) {
    if (current == seq) {
      return absl::SimpleAtoi(field, end);
    }
    ++current;
  }
  return false;
}

// Ends the text of streaming `message`, read with its row's content only: its deltas are appended
// to that content and leave the delta log, and the row gets the whole text with where each seq
// ends. The caller's UPDATE of the row's status is part of the same transaction.
absl::Status SealText(SqlTransaction& tx, v1::Message& message) {
  absl::StatusOr<SqlRows> rows = tx.Query(
      "SELECT text FROM message_deltas WHERE message_id = $1 ORDER BY seq", {message.id()});
  if (!rows.ok()) {
    return rows.status();
  }
  std::string& content = *message.mutable_content();
  std::vector<size_t> ends;
  ends.reserve(rows->size());
  for (int r = 0; r < rows->size(); ++r) {
    content += rows->Text(r, 0);
    ends.push_back(content.size());
  }
  SqlParam seq_ends = nullptr;
  if (!ends.empty()) {
    seq_ends = EncodeSeqEnds(ends);
  }
  if (absl::Status updated =
          tx.Query("UPDATE messages SET content = $1, seq_ends = $2 WHERE id = $3",
                   {content, seq_ends, message.id()})
              .status();
      !updated.ok()) {
    return updated;
  }
  if (ends.empty()) {
    return absl::OkStatus();
  }
  return tx.Query("DELETE FROM message_deltas WHERE message_id = $1", {message.id()}).status();
}

// `fill_text`: a streaming message's content is its whole durable text (see FillStreamingText);
// without, only what its row holds.
absl::StatusOr<v1::Message> LoadMessage(SqlTransaction& tx, const std::string& user_id,
                                        const std::string& message_id, bool fill_text = true) {
  absl::StatusOr<SqlRows> rows =
      tx.Query(absl::StrCat("SELECT ", kMessageColumns,
                            " FROM messages m JOIN conversations c ON c.id = m.conversation_id"
                            " WHERE m.id = $1 AND c.owner = $2 AND c.delete_time IS NULL"),
               {message_id, user_id});
  if (!rows.ok()) {
    return rows.status();
  }
  if (rows->empty()) {
    return absl::NotFoundError("message not found");
  }
  v1::Message message = ReadMessage(*rows, 0);
  if (fill_text) {
    if (absl::Status filled = FillStreamingText(tx, {&message}); !filled.ok()) {
      return filled;
    }
  }
  return message;
}

// Root first. Empty when `leaf_id` is not in the conversation. With `newest`, only the last
// that many messages of the path (the walk from the leaf stops there): a long conversation's
// history costs what is returned, not the whole branch.
absl::StatusOr<std::vector<v1::Message>> LoadPath(SqlTransaction& tx,
                                                  const std::string& conversation_id,
                                                  const std::string& leaf_id,
                                                  std::optional<int64_t> newest = std::nullopt) {
  absl::StatusOr<SqlRows> rows = tx.Query(
      absl::StrCat("WITH RECURSIVE path (id, depth) AS ("
                   " SELECT id, 0 FROM messages WHERE id = $1 AND conversation_id = $2"
                   " UNION ALL"
                   " SELECT m.parent_id, path.depth + 1 FROM messages m JOIN path ON m.id = path.id"
                   " WHERE m.parent_id IS NOT NULL AND path.depth + 1 < CAST($3 AS BIGINT))"
                   " SELECT ",
                   kMessageColumns, " FROM path JOIN messages m ON m.id = path.id",
                   " ORDER BY path.depth DESC"),
      {leaf_id, conversation_id, newest.value_or(std::numeric_limits<int64_t>::max())});
  if (!rows.ok()) {
    return rows.status();
  }
  std::vector<v1::Message> path;
  for (int r = 0; r < rows->size(); ++r) {
    path.push_back(ReadMessage(*rows, r));
  }
  if (absl::Status filled = FillStreamingText(tx, path); !filled.ok()) {
    return filled;
  }
  return path;
}

absl::Status InsertConversation(SqlTransaction& tx, const v1::Conversation& conversation,
                                const std::string& origin_client_message_id, int64_t now) {
  return tx
      .Query(
          "INSERT INTO conversations (id, owner, title, metadata, origin_client_message_id,"
          " client_conversation_id, create_time, update_time)"
          " VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
          {conversation.id(), conversation.user_id(), conversation.title(),
           MetadataToJson(conversation.metadata()), NullIfEmpty(origin_client_message_id),
           NullIfEmpty(conversation.client_conversation_id()), now})
      .status();
}

// Sets `message`'s checksum when it is stored already ended.
// A streaming message gets a lease until `lease_expire` (0: none).
absl::Status InsertMessage(SqlTransaction& tx, v1::Message& message, int64_t now,
                           int64_t lease_expire = 0) {
  if (message.status() == v1::MESSAGE_STATUS_STREAMING) {
    message.clear_sha256();
  } else {
    message.set_sha256(common::Sha256Hex(message.content()));
  }
  return tx
      .Query(
          "INSERT INTO messages (id, conversation_id, parent_id, role, content, status,"
          " finish_reason, prompt_tokens, completion_tokens, usage_estimated, model,"
          " client_message_id, last_seq, create_time, update_time, sha256, lease_expire_time)"
          " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14, $15, $16)",
          {message.id(), message.conversation_id(), NullIfEmpty(message.parent_id()),
           int64_t{message.role()}, message.content(), int64_t{message.status()},
           message.finish_reason(), int64_t{message.usage().prompt_tokens()},
           int64_t{message.usage().completion_tokens()},
           int64_t{message.usage().estimated() ? 1 : 0}, message.model(),
           NullIfEmpty(message.client_message_id()), message.last_seq(), now,
           NullIfEmpty(message.sha256()),
           lease_expire > 0 && message.status() == v1::MESSAGE_STATUS_STREAMING
               ? SqlParam(lease_expire)
               : SqlParam(nullptr)})
      .status();
}

v1::ConversationEvent NewEvent(const std::string& conversation_id, int64_t now);

// Stores `message` (its conversation, parent, role, text, status, model and client id set by
// the caller) as a new message of its conversation: gives it an id and the times `now`, inserts
// it (a streaming one leased until `lease_expire`), touches the conversation, and returns its
// MessageAdded event carrying `origin`, for the caller to publish.
absl::StatusOr<v1::ConversationEvent> InsertNewMessage(SqlTransaction& tx, v1::Message& message,
                                                       int64_t now, int64_t lease_expire,
                                                       const std::string& origin) {
  message.set_id(NewId());
  message.mutable_usage();
  SetTime(now, message.mutable_create_time());
  SetTime(now, message.mutable_update_time());
  if (absl::Status inserted = InsertMessage(tx, message, now, lease_expire); !inserted.ok()) {
    return inserted;
  }
  if (absl::Status updated = tx.Query("UPDATE conversations SET update_time = $1 WHERE id = $2",
                                      {now, message.conversation_id()})
                                 .status();
      !updated.ok()) {
    return updated;
  }
  v1::ConversationEvent event = NewEvent(message.conversation_id(), now);
  v1::MessageAdded& added = *event.mutable_message_added();
  added.mutable_message()->CopyFrom(message);
  added.set_origin(origin);
  return event;
}

// NOTIFY payloads must stay under 8000 bytes; base64 grows by a third.
constexpr size_t kMaxEventBytes = 5000;

// The event as the database carries it: base64 of the serialized proto, since
// NOTIFY payloads are text. A message too large to carry goes without its content.
std::string EncodeEvent(v1::ConversationEvent event) {
  if (event.ByteSizeLong() > kMaxEventBytes && event.has_message_added()) {
    event.mutable_message_added()->mutable_message()->clear_content();
    event.mutable_message_added()->set_content_omitted(true);
  }
  return absl::Base64Escape(event.SerializeAsString());
}

v1::ConversationEvent NewEvent(const std::string& conversation_id, int64_t now) {
  v1::ConversationEvent event;
  event.set_conversation_id(conversation_id);
  SetTime(now, event.mutable_event_time());
  return event;
}

v1::ReplyFinished ReplyFinishedOf(const v1::Message& message) {
  v1::ReplyFinished finished;
  finished.set_message_id(message.id());
  finished.set_status(message.status());
  finished.set_finish_reason(message.finish_reason());
  *finished.mutable_usage() = message.usage();
  finished.set_last_seq(message.last_seq());
  finished.set_sha256(message.sha256());
  return finished;
}

// Schema 5 (see SchemaMigrations) for the rows written before it: a streaming message's row
// gives up the text its deltas hold, which are the only copy from now on; an ended message's
// deltas become its `seq_ends` and leave the delta log. A row whose content does not end with its
// deltas' text is left as it was (reads fall back to its deltas).
absl::Status MigrateToAppendOnlyText(SqlTransaction& tx) {
  absl::StatusOr<SqlRows> messages = tx.Query(
      "SELECT m.id, m.status, m.content FROM messages m WHERE EXISTS"
      " (SELECT 1 FROM message_deltas d WHERE d.message_id = m.id)");
  if (!messages.ok()) {
    return messages.status();
  }
  for (int m = 0; m < messages->size(); ++m) {
    const std::string& id = messages->Text(m, 0);
    const std::string& content = messages->Text(m, 2);
    absl::StatusOr<SqlRows> deltas =
        tx.Query("SELECT text FROM message_deltas WHERE message_id = $1 ORDER BY seq", {id});
    if (!deltas.ok()) {
      return deltas.status();
    }
    size_t streamed = 0;
    for (int d = 0; d < deltas->size(); ++d) {
      streamed += deltas->Text(d, 0).size();
    }
    if (streamed > content.size()) {
      continue;
    }
    const size_t prefix = content.size() - streamed;
    std::vector<size_t> ends;
    size_t end = prefix;
    bool matches = true;
    for (int d = 0; d < deltas->size() && matches; ++d) {
      const std::string& text = deltas->Text(d, 0);
      matches = content.compare(end, text.size(), text) == 0;
      end += text.size();
      ends.push_back(end);
    }
    if (!matches) {
      continue;
    }
    absl::Status status;
    if (messages->Int(m, 1) == v1::MESSAGE_STATUS_STREAMING) {
      status = tx.Query("UPDATE messages SET content = $1 WHERE id = $2",
                        {content.substr(0, prefix), id})
                   .status();
    } else {
      status =
          tx.Query("UPDATE messages SET seq_ends = $1 WHERE id = $2", {EncodeSeqEnds(ends), id})
              .status();
      if (status.ok()) {
        status = tx.Query("DELETE FROM message_deltas WHERE message_id = $1", {id}).status();
      }
    }
    if (!status.ok()) {
      return status;
    }
  }
  return absl::OkStatus();
}

// Ends streaming `message_id` in `tx` as `finish` says: seals its text, stores its status,
// finish reason, usage and checksum, and publishes its ReplyFinished event; `*ended` is the ended
// message and `*event` that event. NOT_FOUND or FAILED_PRECONDITION (not streaming, or with
// `last_seq` set, not at that seq) before anything is written. The caller notifies the change.
absl::Status EndStreaming(SqlTransaction& tx, SqlDatabase& database, const std::string& message_id,
                          const v1::StreamFinish& finish, v1::Message* ended,
                          v1::ConversationEvent* event,
                          std::optional<int64_t> last_seq = std::nullopt) {
  absl::StatusOr<SqlRows> rows =
      tx.Query(absl::StrCat("SELECT ", kMessageColumns, " FROM messages m WHERE m.id = $1",
                            database.ForUpdate()),
               {message_id});
  if (!rows.ok()) {
    return rows.status();
  }
  if (rows->empty()) {
    return absl::NotFoundError("message not found");
  }
  v1::Message message = ReadMessage(*rows, 0);
  if (message.status() != v1::MESSAGE_STATUS_STREAMING) {
    return absl::FailedPreconditionError("message is not streaming");
  }
  if (last_seq.has_value() && message.last_seq() != *last_seq) {
    return absl::FailedPreconditionError(absl::StrCat(
        "finish after seq ", *last_seq, " but the message holds seq 1..", message.last_seq()));
  }
  if (absl::Status sealed = SealText(tx, message); !sealed.ok()) {
    return sealed;
  }
  const int64_t now = NowMicros();
  message.set_status(finish.status());
  message.set_finish_reason(finish.finish_reason());
  *message.mutable_usage() = finish.usage();
  SetTime(now, message.mutable_update_time());
  // Once, here: every later read of the ended message returns this value.
  message.set_sha256(common::Sha256Hex(message.content()));
  if (absl::Status updated =
          tx.Query("UPDATE messages SET status = $1, finish_reason = $2, prompt_tokens = $3,"
                   " completion_tokens = $4, usage_estimated = $5, update_time = $6,"
                   " sha256 = $7 WHERE id = $8",
                   {int64_t{finish.status()}, finish.finish_reason(),
                    int64_t{finish.usage().prompt_tokens()},
                    int64_t{finish.usage().completion_tokens()},
                    int64_t{finish.usage().estimated() ? 1 : 0}, now, message.sha256(), message_id})
              .status();
      !updated.ok()) {
    return updated;
  }
  *event = NewEvent(message.conversation_id(), now);
  *event->mutable_reply_finished() = ReplyFinishedOf(message);
  *ended = std::move(message);
  return database.PublishEvent(tx, EncodeEvent(*event));
}

}  // namespace

const std::string& SqlRows::Text(int row, int column) const {
  static const std::string* const kEmpty = new std::string();
  const std::optional<std::string>& value = rows_[row][column];
  return value.has_value() ? *value : *kEmpty;
}

int64_t SqlRows::Int(int row, int column) const {
  int64_t number = 0;
  if (!absl::SimpleAtoi(Text(row, column), &number)) {
    return 0;
  }
  return number;
}

absl::StatusOr<std::unique_ptr<Store>> SqlStore::Create(
    std::unique_ptr<SqlDatabase> database, const std::vector<std::vector<std::string>>& migrations,
    const std::string& migration_lock_sql) {
  absl::Status status = database->Transact(true, [&](SqlTransaction& tx) -> absl::Status {
    if (!migration_lock_sql.empty()) {
      if (absl::Status locked = tx.Query(migration_lock_sql).status(); !locked.ok()) {
        return locked;
      }
    }
    if (absl::Status created =
            tx.Query("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
                .status();
        !created.ok()) {
      return created;
    }
    absl::StatusOr<SqlRows> rows = tx.Query("SELECT MAX(version) FROM schema_version");
    if (!rows.ok()) {
      return rows.status();
    }
    const int64_t current = rows->Int(0, 0);
    if (current > static_cast<int64_t>(migrations.size())) {
      return absl::FailedPreconditionError(absl::StrCat(
          "database schema version ", current, " is newer than this binary's ", migrations.size()));
    }
    for (size_t version = current; version < migrations.size(); ++version) {
      for (const std::string& statement : migrations[version]) {
        if (absl::Status applied = tx.Query(statement).status(); !applied.ok()) {
          return absl::Status(applied.code(), absl::StrCat("schema migration ", version + 1, ": ",
                                                           applied.message()));
        }
      }
      if (version + 1 == kAppendOnlyTextVersion) {
        if (absl::Status moved = MigrateToAppendOnlyText(tx); !moved.ok()) {
          return absl::Status(
              moved.code(), absl::StrCat("schema migration ", version + 1, ": ", moved.message()));
        }
      }
      if (absl::Status recorded = tx.Query("INSERT INTO schema_version (version) VALUES ($1)",
                                           {static_cast<int64_t>(version + 1)})
                                      .status();
          !recorded.ok()) {
        return recorded;
      }
    }
    return absl::OkStatus();
  });
  if (!status.ok()) {
    return status;
  }
  return std::unique_ptr<Store>(new SqlStore(std::move(database)));
}

void SqlStore::SetChangeListener(ChangeListener listener) {
  {
    absl::MutexLock lock(&listener_mu_);
    listener_ = std::move(listener);
  }
  ResetRemoteListeners();
}

void SqlStore::SetEventListener(EventListener listener) {
  {
    absl::MutexLock lock(&listener_mu_);
    event_listener_ = std::move(listener);
  }
  ResetRemoteListeners();
}

void SqlStore::ResetRemoteListeners() {
  std::function<void(const std::string&)> change;
  std::function<void(const std::string&)> event;
  {
    absl::MutexLock lock(&listener_mu_);
    change = listener_;
    if (event_listener_) {
      event = [listener = event_listener_](const std::string& payload) {
        std::string bytes;
        v1::ConversationEvent decoded;
        // Another binary version's event that this one cannot read is dropped.
        if (absl::Base64Unescape(payload, &bytes) && decoded.ParseFromString(bytes)) {
          listener(decoded);
        }
      };
    }
  }
  database_->SetRemoteListeners(std::move(change), std::move(event));
}

void SqlStore::Published(const std::vector<v1::ConversationEvent>& events) {
  if (database_->DeliversOwnEvents() || events.empty()) {
    return;
  }
  absl::MutexLock lock(&listener_mu_);
  if (!event_listener_) {
    return;
  }
  for (const v1::ConversationEvent& event : events) {
    event_listener_(event);
  }
}

absl::Status SqlStore::PublishSignal(const std::string& user_id,
                                     const v1::ConversationEvent& event) {
  v1::ConversationEvent stamped = event;
  // The sender's time when it is earlier (the signal's age counts from there), else now.
  const int64_t now = NowMicros();
  if (!stamped.has_event_time() ||
      stamped.event_time().seconds() * 1000000 + stamped.event_time().nanos() / 1000 > now) {
    SetTime(now, stamped.mutable_event_time());
  }
  const std::string payload = EncodeEvent(stamped);
  // Only a database that carries events needs a write transaction for them.
  absl::Status status =
      database_->Transact(database_->DeliversOwnEvents(), [&](SqlTransaction& tx) -> absl::Status {
        // A conversation not stored yet, named by the user: theirs by definition.
        if (event.conversation_id().empty()) {
          return database_->PublishEvent(tx, payload);
        }
        absl::StatusOr<SqlRows> rows = tx.Query(
            "SELECT 1 FROM conversations WHERE id = $1 AND owner = $2 AND delete_time IS NULL",
            {event.conversation_id(), user_id});
        if (!rows.ok()) {
          return rows.status();
        }
        if (rows->empty()) {
          return absl::NotFoundError("conversation not found");
        }
        return database_->PublishEvent(tx, payload);
      });
  if (status.ok()) {
    Published({stamped});
  }
  return status;
}

void SqlStore::SetStreamLease(absl::Duration lease) {
  absl::MutexLock lock(&listener_mu_);
  lease_ = lease;
}

absl::Status SqlStore::RenewLeases(const std::vector<std::string>& message_ids,
                                   absl::Time expire_time) {
  if (message_ids.empty()) {
    return absl::OkStatus();
  }
  const int64_t expire = absl::ToUnixMicros(expire_time);
  return database_->Transact(true, [&](SqlTransaction& tx) {
    return ForChunks(message_ids.size(), [&](size_t begin, size_t count) {
      std::vector<SqlParam> params = {expire};
      for (size_t k = 0; k < count; ++k) {
        params.push_back(message_ids[begin + k]);
      }
      std::string placeholders;
      for (size_t k = 0; k < count; ++k) {
        absl::StrAppend(&placeholders, k == 0 ? "" : ", ", "$", k + 2);
      }
      return tx
          .Query(absl::StrCat("UPDATE messages SET lease_expire_time = $1 WHERE status = 1"
                              " AND lease_expire_time IS NOT NULL AND id IN (",
                              placeholders, ")"),
                 params)
          .status();
    });
  });
}

absl::StatusOr<int> SqlStore::ExpireLeases(absl::Time now_time) {
  const int64_t now = absl::ToUnixMicros(now_time);
  std::vector<std::string> changed;
  std::vector<v1::ConversationEvent> events;
  absl::Status status = database_->Transact(true, [&](SqlTransaction& tx) -> absl::Status {
    changed.clear();
    events.clear();
    // Another replica sweeping at once waits on the row locks and then skips
    // what this one ended (the status no longer matches).
    absl::StatusOr<SqlRows> rows =
        tx.Query(absl::StrCat("SELECT ", kMessageColumns,
                              " FROM messages m WHERE m.status = 1 AND m.lease_expire_time < $1",
                              database_->ForUpdate()),
                 {now});
    if (!rows.ok()) {
      return rows.status();
    }
    for (int r = 0; r < rows->size(); ++r) {
      v1::Message message = ReadMessage(*rows, r);
      if (absl::Status sealed = SealText(tx, message); !sealed.ok()) {
        return sealed;
      }
      message.set_status(v1::MESSAGE_STATUS_INTERRUPTED);
      message.set_finish_reason(std::string(kLeaseExpiredReason));
      message.set_sha256(common::Sha256Hex(message.content()));
      SetTime(now, message.mutable_update_time());
      if (absl::Status updated =
              tx.Query("UPDATE messages SET status = $1, finish_reason = $2, update_time = $3,"
                       " sha256 = $4 WHERE id = $5",
                       {int64_t{v1::MESSAGE_STATUS_INTERRUPTED}, message.finish_reason(), now,
                        message.sha256(), message.id()})
                  .status();
          !updated.ok()) {
        return updated;
      }
      v1::ConversationEvent event = NewEvent(message.conversation_id(), now);
      *event.mutable_reply_finished() = ReplyFinishedOf(message);
      if (absl::Status published = database_->PublishEvent(tx, EncodeEvent(event));
          !published.ok()) {
        return published;
      }
      events.push_back(std::move(event));
      changed.push_back(message.id());
    }
    return database_->NotifyChanged(tx, changed);
  });
  if (!status.ok()) {
    return status;
  }
  Changed(changed);
  Published(events);
  return static_cast<int>(changed.size());
}

void SqlStore::Changed(const std::vector<std::string>& message_ids) {
  absl::MutexLock lock(&listener_mu_);
  if (!listener_) {
    return;
  }
  for (const std::string& id : message_ids) {
    listener_(id);
  }
}

absl::StatusOr<v1::Conversation> SqlStore::CreateConversation(
    const v1::CreateConversationRequest& request) {
  v1::Conversation conversation;
  conversation.set_id(NewId());
  conversation.set_user_id(request.user_id());
  conversation.set_title(request.title());
  *conversation.mutable_metadata() = request.metadata();
  const int64_t now = NowMicros();
  SetTime(now, conversation.mutable_create_time());
  SetTime(now, conversation.mutable_update_time());
  absl::Status status = database_->Transact(
      true, [&](SqlTransaction& tx) { return InsertConversation(tx, conversation, "", now); });
  if (!status.ok()) {
    return status;
  }
  return conversation;
}

absl::StatusOr<v1::Conversation> SqlStore::GetConversation(const std::string& user_id,
                                                           const std::string& conversation_id) {
  absl::StatusOr<v1::Conversation> result;
  absl::Status status = database_->Transact(false, [&](SqlTransaction& tx) {
    result = LoadConversation(tx, user_id, conversation_id, "");
    return result.status();
  });
  if (!status.ok()) {
    return status;
  }
  return result;
}

absl::StatusOr<v1::Conversation> SqlStore::GetClientNamedConversation(
    const std::string& user_id, const std::string& client_conversation_id) {
  absl::StatusOr<v1::Conversation> result;
  absl::Status status = database_->Transact(false, [&](SqlTransaction& tx) -> absl::Status {
    absl::StatusOr<SqlRows> rows =
        tx.Query(absl::StrCat("SELECT ", kConversationColumns,
                              " FROM conversations c WHERE c.owner = $1"
                              " AND c.client_conversation_id = $2 AND c.delete_time IS NULL"),
                 {user_id, client_conversation_id});
    if (!rows.ok()) {
      return rows.status();
    }
    if (rows->empty()) {
      return absl::NotFoundError("conversation not found");
    }
    result = ReadConversation(*rows, 0);
    return absl::OkStatus();
  });
  if (!status.ok()) {
    return status;
  }
  return result;
}

absl::StatusOr<ConversationPage> SqlStore::ListConversations(const std::string& user_id,
                                                             int page_size,
                                                             const std::string& page_token) {
  int64_t before_time = std::numeric_limits<int64_t>::max();
  int64_t before_pos = std::numeric_limits<int64_t>::max();
  if (!page_token.empty()) {
    if (absl::Status status = DecodePageToken(page_token, "c", &before_time, &before_pos);
        !status.ok()) {
      return status;
    }
  }
  ConversationPage page;
  absl::Status status = database_->Transact(false, [&](SqlTransaction& tx) -> absl::Status {
    // One extra row tells whether another page exists, so an exact multiple of
    // the page size ends without an empty trailing page.
    absl::StatusOr<SqlRows> rows =
        tx.Query(absl::StrCat("SELECT ", kConversationColumns,
                              " FROM conversations c WHERE c.owner = $1 AND c.delete_time IS NULL"
                              " AND (c.update_time < $2 OR (c.update_time = $2 AND c.pos < $3))"
                              " ORDER BY c.update_time DESC, c.pos DESC LIMIT $4"),
                 {user_id, before_time, before_pos, int64_t{page_size} + 1});
    if (!rows.ok()) {
      return rows.status();
    }
    const int count = std::min(rows->size(), page_size);
    for (int r = 0; r < count; ++r) {
      page.conversations.push_back(ReadConversation(*rows, r));
    }
    if (rows->size() > page_size) {
      page.next_page_token = EncodePageToken("c", rows->Int(count - 1, 5), rows->Int(count - 1, 6));
    }
    return absl::OkStatus();
  });
  if (!status.ok()) {
    return status;
  }
  return page;
}

absl::StatusOr<v1::Conversation> SqlStore::UpdateConversation(
    const v1::UpdateConversationRequest& request) {
  absl::StatusOr<v1::Conversation> result;
  absl::Status status = database_->Transact(true, [&](SqlTransaction& tx) -> absl::Status {
    result = LoadConversation(tx, request.user_id(), request.conversation().id(),
                              database_->ForUpdate());
    if (!result.ok()) {
      return result.status();
    }
    for (const std::string& path : request.update_mask().paths()) {
      if (path == "title") {
        result->set_title(request.conversation().title());
      } else if (path == "metadata") {
        *result->mutable_metadata() = request.conversation().metadata();
      }
    }
    const int64_t now = NowMicros();
    SetTime(now, result->mutable_update_time());
    return tx
        .Query("UPDATE conversations SET title = $1, metadata = $2, update_time = $3 WHERE id = $4",
               {result->title(), MetadataToJson(result->metadata()), now, result->id()})
        .status();
  });
  if (!status.ok()) {
    return status;
  }
  return result;
}

absl::Status SqlStore::DeleteConversation(const std::string& user_id,
                                          const std::string& conversation_id) {
  return database_->Transact(true, [&](SqlTransaction& tx) -> absl::Status {
    absl::StatusOr<v1::Conversation> conversation =
        LoadConversation(tx, user_id, conversation_id, database_->ForUpdate());
    if (!conversation.ok()) {
      return conversation.status();
    }
    return tx
        .Query("UPDATE conversations SET delete_time = $1 WHERE id = $2",
               {NowMicros(), conversation_id})
        .status();
  });
}

absl::StatusOr<v1::Conversation> SqlStore::ForkConversation(
    const v1::ForkConversationRequest& request) {
  v1::Conversation fork;
  absl::Status status = database_->Transact(true, [&](SqlTransaction& tx) -> absl::Status {
    absl::StatusOr<v1::Conversation> source =
        LoadConversation(tx, request.user_id(), request.conversation_id(), "");
    if (!source.ok()) {
      return source.status();
    }
    absl::StatusOr<std::vector<v1::Message>> path =
        LoadPath(tx, request.conversation_id(), request.message_id());
    if (!path.ok()) {
      return path.status();
    }
    if (path->empty()) {
      return absl::NotFoundError("message not found");
    }
    const int64_t now = NowMicros();
    fork = *source;
    fork.set_id(NewId());
    // The name stays with the source: it keeps naming the conversation the client
    // has been using.
    fork.clear_client_conversation_id();
    if (!request.title().empty()) {
      fork.set_title(request.title());
    }
    SetTime(now, fork.mutable_create_time());
    SetTime(now, fork.mutable_update_time());
    if (absl::Status inserted = InsertConversation(tx, fork, "", now); !inserted.ok()) {
      return inserted;
    }
    std::string parent_id;
    for (v1::Message& message : *path) {
      message.set_id(NewId());
      message.set_conversation_id(fork.id());
      message.set_parent_id(parent_id);
      // The copy gets no further deltas: its stream ends where the fork was taken.
      if (message.status() == v1::MESSAGE_STATUS_STREAMING) {
        message.set_status(v1::MESSAGE_STATUS_INTERRUPTED);
      }
      if (absl::Status inserted = InsertMessage(tx, message, now); !inserted.ok()) {
        return inserted;
      }
      parent_id = message.id();
    }
    return absl::OkStatus();
  });
  if (!status.ok()) {
    return status;
  }
  return fork;
}

absl::StatusOr<AppendResult> SqlStore::AppendMessage(const v1::AppendMessageRequest& request) {
  const std::string& user_id = request.user_id();
  const std::string& client_id = request.client_message_id();
  const std::string& client_name = request.client_conversation_id();
  AppendResult result;
  absl::Status status;
  v1::ConversationEvent event;
  v1::ConversationEvent reply_event;  // With `turn`: the reply's MessageAdded.
  // The conversation of `client_name` is made by this append (its watches by name follow it).
  bool created_named = false;
  absl::Duration lease;
  {
    absl::MutexLock lock(&listener_mu_);
    lease = lease_;
  }
  // A concurrent append with the same client message id or the same new client
  // conversation name (another thread or replica) makes our insert fail on a
  // unique index; the retry then finds what the other one stored.
  for (int attempt = 0; attempt < kMaxIdRetries; ++attempt) {
    status = database_->Transact(true, [&](SqlTransaction& tx) -> absl::Status {
      const int64_t now = NowMicros();
      created_named = false;
      result.history.clear();
      result.history_continues = false;
      result.reply.reset();
      std::string conversation_id = request.conversation_id();
      if (conversation_id.empty() && !client_name.empty()) {
        absl::StatusOr<SqlRows> rows = tx.Query(
            "SELECT id FROM conversations WHERE owner = $1 AND client_conversation_id = $2"
            " AND delete_time IS NULL",
            {user_id, client_name});
        if (!rows.ok()) {
          return rows.status();
        }
        if (!rows->empty()) {
          conversation_id = rows->Text(0, 0);
        }
      } else if (conversation_id.empty() && !client_id.empty()) {
        absl::StatusOr<SqlRows> rows = tx.Query(
            "SELECT id, delete_time FROM conversations"
            " WHERE owner = $1 AND origin_client_message_id = $2",
            {user_id, client_id});
        if (!rows.ok()) {
          return rows.status();
        }
        if (!rows->empty()) {
          if (!rows->IsNull(0, 1)) {
            return absl::NotFoundError("conversation not found");
          }
          conversation_id = rows->Text(0, 0);
        }
      }
      if (conversation_id.empty()) {
        v1::Conversation conversation;
        conversation.set_id(NewId());
        conversation.set_user_id(user_id);
        conversation.set_title(request.conversation_title());
        conversation.set_client_conversation_id(client_name);
        // A named conversation is found by its name, so its messages' client ids
        // need only be unique inside it, not across the user's conversations.
        if (absl::Status inserted =
                InsertConversation(tx, conversation, client_name.empty() ? client_id : "", now);
            !inserted.ok()) {
          return inserted;
        }
        conversation_id = conversation.id();
        created_named = !client_name.empty();
      } else {
        absl::StatusOr<v1::Conversation> conversation =
            LoadConversation(tx, user_id, conversation_id, database_->ForUpdate());
        if (!conversation.ok()) {
          return conversation.status();
        }
        if (!client_id.empty()) {
          absl::StatusOr<SqlRows> rows =
              tx.Query(absl::StrCat("SELECT ", kMessageColumns,
                                    " FROM messages m WHERE m.conversation_id = $1"
                                    " AND m.client_message_id = $2"),
                       {conversation_id, client_id});
          if (!rows.ok()) {
            return rows.status();
          }
          if (!rows->empty()) {
            result.message = ReadMessage(*rows, 0);
            result.created = false;
            return FillStreamingText(tx, {&result.message});
          }
        }
      }
      std::string parent_id = request.parent_id();
      if (!parent_id.empty()) {
        absl::StatusOr<SqlRows> rows =
            tx.Query("SELECT id FROM messages WHERE id = $1 AND conversation_id = $2",
                     {parent_id, conversation_id});
        if (!rows.ok()) {
          return rows.status();
        }
        if (rows->empty()) {
          return absl::NotFoundError("parent message not found");
        }
      } else if (!request.no_parent()) {
        absl::StatusOr<SqlRows> rows =
            tx.Query("SELECT id FROM messages WHERE conversation_id = $1 ORDER BY pos DESC LIMIT 1",
                     {conversation_id});
        if (!rows.ok()) {
          return rows.status();
        }
        if (!rows->empty()) {
          parent_id = rows->Text(0, 0);
        }
      }
      v1::Message& message = result.message;
      message.Clear();
      message.set_conversation_id(conversation_id);
      message.set_parent_id(parent_id);
      message.set_role(request.role());
      message.set_content(request.content());
      message.set_status(request.status());
      message.set_model(request.model());
      message.set_client_message_id(client_id);
      result.created = true;
      absl::StatusOr<v1::ConversationEvent> added = InsertNewMessage(
          tx, message, now, now + absl::ToInt64Microseconds(lease), request.origin());
      if (!added.ok()) {
        return added.status();
      }
      event = *std::move(added);
      if (created_named) {
        event.mutable_message_added()->set_created_for_user_id(user_id);
        event.mutable_message_added()->set_created_client_conversation_id(client_name);
      }
      if (absl::Status published = database_->PublishEvent(tx, EncodeEvent(event));
          !published.ok() || !request.has_turn()) {
        return published;
      }
      // The turn's start: the reply, then the branch it continues, as the edge's next two calls
      // would have stored and read them.
      const v1::TurnStart& turn = request.turn();
      v1::Message& reply = result.reply.emplace();
      reply.set_conversation_id(conversation_id);
      reply.set_parent_id(message.id());
      reply.set_role(v1::ROLE_ASSISTANT);
      reply.set_status(v1::MESSAGE_STATUS_STREAMING);
      reply.set_model(turn.reply_model());
      reply.set_client_message_id(
          absl::StrCat(turn.reply_client_message_id_prefix(), message.id()));
      absl::StatusOr<v1::ConversationEvent> reply_added = InsertNewMessage(
          tx, reply, now, now + absl::ToInt64Microseconds(lease), request.origin());
      if (!reply_added.ok()) {
        return reply_added.status();
      }
      reply_event = *std::move(reply_added);
      if (absl::Status published = database_->PublishEvent(tx, EncodeEvent(reply_event));
          !published.ok()) {
        return published;
      }
      if (!turn.known_branch_leaf_id().empty() && turn.known_branch_leaf_id() == parent_id) {
        // The caller holds the branch up to the parent: the new message is all it lacks.
        result.history.push_back(message);
        result.history_continues = true;
        return absl::OkStatus();
      }
      absl::StatusOr<std::vector<v1::Message>> path =
          LoadPath(tx, conversation_id, message.id(), turn.history_page_size());
      if (!path.ok()) {
        return path.status();
      }
      result.history.assign(std::make_move_iterator(path->begin()),
                            std::make_move_iterator(path->end()));
      return absl::OkStatus();
    });
    if (status.code() != absl::StatusCode::kAlreadyExists) {
      break;
    }
  }
  if (!status.ok()) {
    return status;
  }
  if (result.created) {
    if (result.reply.has_value()) {
      Published({event, reply_event});
    } else {
      Published({event});
    }
  }
  return result;
}

absl::StatusOr<v1::Message> SqlStore::GetMessage(const std::string& user_id,
                                                 const std::string& message_id) {
  absl::StatusOr<v1::Message> result;
  absl::Status status = database_->Transact(false, [&](SqlTransaction& tx) {
    result = LoadMessage(tx, user_id, message_id);
    return result.status();
  });
  if (!status.ok()) {
    return status;
  }
  return result;
}

absl::StatusOr<MessagePage> SqlStore::ListMessages(const v1::ListMessagesRequest& request) {
  const int page_size = request.page_size();
  int64_t after = 0;
  int64_t unused = 0;
  const char* token_kind = request.leaf_message_id().empty() ? "m" : "p";
  if (!request.page_token().empty()) {
    if (absl::Status status = DecodePageToken(request.page_token(), token_kind, &after, &unused);
        !status.ok()) {
      return status;
    }
  }
  const bool newest = request.newest() && request.page_token().empty();
  MessagePage page;
  absl::Status status = database_->Transact(false, [&](SqlTransaction& tx) -> absl::Status {
    absl::StatusOr<v1::Conversation> conversation =
        LoadConversation(tx, request.user_id(), request.conversation_id(), "");
    if (!conversation.ok()) {
      return conversation.status();
    }
    if (!request.leaf_message_id().empty()) {
      absl::StatusOr<std::vector<v1::Message>> path =
          LoadPath(tx, request.conversation_id(), request.leaf_message_id(),
                   newest ? std::optional<int64_t>(page_size) : std::nullopt);
      if (!path.ok()) {
        return path.status();
      }
      if (path->empty()) {
        return absl::NotFoundError("message not found");
      }
      const int64_t total = static_cast<int64_t>(path->size());
      // `after` is an offset into the path here.
      const int64_t begin = newest ? std::max<int64_t>(0, total - page_size) : after;
      const int64_t end = std::min<int64_t>(total, begin + page_size);
      for (int64_t i = begin; i < end; ++i) {
        page.messages.push_back(std::move((*path)[i]));
      }
      if (!newest && end < total) {
        page.next_page_token = EncodePageToken("p", end, 0);
      }
      return absl::OkStatus();
    }
    if (newest) {
      absl::StatusOr<SqlRows> rows =
          tx.Query(absl::StrCat("SELECT ", kMessageColumns,
                                " FROM messages m WHERE m.conversation_id = $1 ORDER BY m.pos DESC"
                                " LIMIT $2"),
                   {request.conversation_id(), int64_t{page_size}});
      if (!rows.ok()) {
        return rows.status();
      }
      for (int r = rows->size() - 1; r >= 0; --r) {
        page.messages.push_back(ReadMessage(*rows, r));
      }
      return FillStreamingText(tx, page.messages);
    }
    absl::StatusOr<SqlRows> rows =
        tx.Query(absl::StrCat("SELECT ", kMessageColumns,
                              " FROM messages m WHERE m.conversation_id = $1 AND m.pos > $2"
                              " ORDER BY m.pos LIMIT $3"),
                 {request.conversation_id(), after, int64_t{page_size} + 1});
    if (!rows.ok()) {
      return rows.status();
    }
    const int count = std::min(rows->size(), page_size);
    for (int r = 0; r < count; ++r) {
      page.messages.push_back(ReadMessage(*rows, r));
    }
    if (rows->size() > page_size) {
      page.next_page_token = EncodePageToken("m", rows->Int(count - 1, 15), 0);
    }
    return FillStreamingText(tx, page.messages);
  });
  if (!status.ok()) {
    return status;
  }
  return page;
}

std::vector<absl::StatusOr<int64_t>> SqlStore::AppendDeltas(const std::vector<DeltaRun>& runs) {
  return CommitBatch(runs, {}).runs;
}

BatchResult SqlStore::CommitBatch(const std::vector<DeltaRun>& runs,
                                  const std::vector<FinishRun>& finishes) {
  BatchResult batch;
  std::vector<absl::StatusOr<int64_t>>& results = batch.runs;
  results.resize(runs.size());
  batch.finishes.resize(finishes.size());
  std::vector<v1::ConversationEvent> events;
  std::vector<std::string> changed;
  // Runs for the same message (two writers racing) go in later rounds so
  // each round reads the state the previous one left.
  std::vector<std::vector<size_t>> rounds;
  {
    std::unordered_map<std::string, size_t> seen;
    for (size_t i = 0; i < runs.size(); ++i) {
      const size_t round = seen[runs[i].message_id]++;
      if (round == rounds.size()) {
        rounds.emplace_back();
      }
      rounds[round].push_back(i);
    }
  }
  absl::Status status = database_->Transact(true, [&](SqlTransaction& tx) -> absl::Status {
    changed.clear();
    events.clear();
    const int64_t now = NowMicros();
    for (const std::vector<size_t>& round : rounds) {
      // Statements carry many rows each: a batch of a thousand streams costs
      // tens of round trips, not thousands.
      std::unordered_map<std::string, std::pair<int64_t, int64_t>> state;  // status, last_seq
      absl::Status read = ForChunks(round.size(), [&](size_t begin, size_t count) {
        std::vector<SqlParam> ids;
        for (size_t k = 0; k < count; ++k) {
          ids.push_back(runs[round[begin + k]].message_id);
        }
        absl::StatusOr<SqlRows> rows =
            tx.Query(absl::StrCat("SELECT id, status, last_seq FROM messages WHERE id IN (",
                                  Placeholders(count), ")", database_->ForUpdate()),
                     ids);
        if (!rows.ok()) {
          return rows.status();
        }
        for (int r = 0; r < rows->size(); ++r) {
          state[rows->Text(r, 0)] = {rows->Int(r, 1), rows->Int(r, 2)};
        }
        return absl::OkStatus();
      });
      if (!read.ok()) {
        return read;
      }
      std::vector<SqlParam> inserts;  // message_id, seq, text per row
      std::vector<SqlParam> updates;  // message_id, new last seq per row
      for (size_t i : round) {
        const DeltaRun& run = runs[i];
        auto it = state.find(run.message_id);
        if (it == state.end()) {
          results[i] = absl::NotFoundError("message not found");
          continue;
        }
        const auto [message_status, last_seq] = it->second;
        if (message_status != v1::MESSAGE_STATUS_STREAMING) {
          results[i] = absl::FailedPreconditionError("message is not streaming");
          continue;
        }
        if (run.first_seq > last_seq + 1) {
          results[i] = absl::FailedPreconditionError(
              absl::StrCat("delta seq ", run.first_seq, " leaves a gap after ", last_seq));
          continue;
        }
        // The text goes into the delta log only; the row just learns the new last seq.
        int64_t seq = run.first_seq;
        for (const std::string& text : run.texts) {
          if (seq > last_seq) {  // lower seqs are stored already: a retry
            inserts.insert(inserts.end(), {run.message_id, seq, text});
          }
          ++seq;
        }
        const int64_t new_last = std::max(last_seq, seq - 1);
        if (new_last > last_seq) {
          updates.insert(updates.end(), {run.message_id, new_last});
          changed.push_back(run.message_id);
        }
        results[i] = new_last;
      }
      absl::Status written = ForChunks(inserts.size() / 3, [&](size_t begin, size_t count) {
        return tx
            .Query(absl::StrCat("INSERT INTO message_deltas (message_id, seq, text) VALUES ",
                                RowPlaceholders(count, 3)),
                   std::vector<SqlParam>(inserts.begin() + 3 * begin,
                                         inserts.begin() + 3 * (begin + count)))
            .status();
      });
      if (!written.ok()) {
        return written;
      }
      written = ForChunks(updates.size() / 2, [&](size_t begin, size_t count) {
        std::vector<SqlParam> params(updates.begin() + 2 * begin,
                                     updates.begin() + 2 * (begin + count));
        params.push_back(now);
        return tx
            .Query(absl::StrCat("UPDATE messages SET last_seq = v.column2, update_time = $",
                                2 * count + 1, " FROM (VALUES ",
                                RowPlaceholders(count, 2, "CAST(", " AS BIGINT)"),
                                ") AS v WHERE messages.id = v.column1"),
                   params)
            .status();
      });
      if (!written.ok()) {
        return written;
      }
    }
    for (size_t i = 0; i < finishes.size(); ++i) {
      const FinishRun& run = finishes[i];
      v1::Message ended;
      v1::ConversationEvent event;
      absl::Status refused =
          EndStreaming(tx, *database_, run.message_id, run.finish, &ended, &event, run.last_seq);
      if (refused.code() == absl::StatusCode::kNotFound ||
          refused.code() == absl::StatusCode::kFailedPrecondition) {
        batch.finishes[i] = refused;  // Refused before writing: the rest of the batch goes on.
        continue;
      }
      if (!refused.ok()) {
        return refused;
      }
      batch.finishes[i] = std::move(ended);
      events.push_back(std::move(event));
      if (std::find(changed.begin(), changed.end(), run.message_id) == changed.end()) {
        changed.push_back(run.message_id);
      }
    }
    return database_->NotifyChanged(tx, changed);
  });
  if (!status.ok()) {
    for (auto& result : results) {
      result = status;
    }
    for (auto& result : batch.finishes) {
      result = status;
    }
    return batch;
  }
  Changed(changed);
  Published(events);
  return batch;
}

absl::StatusOr<v1::Message> SqlStore::FinishMessage(const std::string& message_id,
                                                    const v1::StreamFinish& finish) {
  v1::Message result;
  v1::ConversationEvent event;
  absl::Status status = database_->Transact(true, [&](SqlTransaction& tx) -> absl::Status {
    if (absl::Status ended = EndStreaming(tx, *database_, message_id, finish, &result, &event);
        !ended.ok()) {
      return ended;
    }
    return database_->NotifyChanged(tx, {message_id});
  });
  if (!status.ok()) {
    return status;
  }
  Changed({message_id});
  Published({event});
  return result;
}

absl::StatusOr<MessageTail> SqlStore::ReadTail(const std::string& user_id,
                                               const std::string& message_id, int64_t after_seq) {
  MessageTail tail;
  absl::Status status = database_->Transact(false, [&](SqlTransaction& tx) -> absl::Status {
    absl::StatusOr<v1::Message> message =
        LoadMessage(tx, user_id, message_id, /*fill_text=*/after_seq <= 0);
    if (!message.ok()) {
      return message.status();
    }
    tail.last_seq = message->last_seq();
    tail.status = message->status();
    tail.finish_reason = message->finish_reason();
    tail.usage = message->usage();
    tail.sha256 = message->sha256();
    if (after_seq <= 0) {
      tail.text = std::move(*message->mutable_content());
      return absl::OkStatus();
    }
    if (after_seq >= tail.last_seq) {
      return absl::OkStatus();
    }
    if (message->status() != v1::MESSAGE_STATUS_STREAMING) {
      // An ended message's text is its content; `seq_ends` says where each seq ends in it.
      absl::StatusOr<SqlRows> ends =
          tx.Query("SELECT seq_ends FROM messages WHERE id = $1", {message_id});
      if (!ends.ok()) {
        return ends.status();
      }
      size_t end = 0;
      if (!ends->empty() && !ends->IsNull(0, 0) && SeqEnd(ends->Text(0, 0), after_seq, &end) &&
          end <= message->content().size()) {
        tail.text = message->content().substr(end);
        return absl::OkStatus();
      }
      // Else an ended message that kept its deltas (one copied by a fork has none).
    }
    absl::StatusOr<SqlRows> rows = tx.Query(
        "SELECT text FROM message_deltas WHERE message_id = $1 AND seq > $2 AND seq <= $3"
        " ORDER BY seq",
        {message_id, after_seq, tail.last_seq});
    if (!rows.ok()) {
      return rows.status();
    }
    for (int r = 0; r < rows->size(); ++r) {
      tail.text += rows->Text(r, 0);
    }
    return absl::OkStatus();
  });
  if (!status.ok()) {
    return status;
  }
  return tail;
}

}  // namespace parley::persistence
