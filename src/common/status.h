// Status and Result<T>: the one error policy of Komoku's libraries.
//
// Expected failures (bad input, a missing key, a corrupt file, an I/O error)
// are return values, never exceptions and never asserts. A Status carries a
// code a caller can branch on and a message a person can act on: it names the
// file, key or field and the reason ("not a KeyKa v0 file (bad magic)").
//
// Thread-compatible value types: copy freely, share only const.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace komoku {

class Status {
 public:
  enum class Code {
    kOk = 0,
    kNotFound,
    kInvalidArgument,
    kCorruption,
    kIOError,
    kBusy,
  };

  Status() = default;

  static Status Ok() { return Status(); }
  static Status NotFound(std::string msg) { return {Code::kNotFound, std::move(msg)}; }
  static Status InvalidArgument(std::string msg) {
    return {Code::kInvalidArgument, std::move(msg)};
  }
  static Status Corruption(std::string msg) { return {Code::kCorruption, std::move(msg)}; }
  static Status IOError(std::string msg) { return {Code::kIOError, std::move(msg)}; }
  static Status Busy(std::string msg) { return {Code::kBusy, std::move(msg)}; }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }

  bool IsNotFound() const { return code_ == Code::kNotFound; }
  bool IsInvalidArgument() const { return code_ == Code::kInvalidArgument; }
  bool IsCorruption() const { return code_ == Code::kCorruption; }
  bool IsIOError() const { return code_ == Code::kIOError; }
  bool IsBusy() const { return code_ == Code::kBusy; }

  // "InvalidArgument: value 'abc' is not a number", or "OK".
  std::string ToString() const {
    return ok() ? std::string("OK") : std::string(CodeName(code_)) + ": " + message_;
  }

  // Prefixes the message with context, e.g. the file name: "f.keyka: bad magic".
  Status WithContext(std::string_view context) const {
    if (ok()) return *this;
    Status st(code_, std::string(context) + ": " + message_);
    st.reason_ = reason_;
    return st;
  }

  // A machine-readable reason for clients and counters, finer than the code:
  // "wrong_type", "value_not_allowed", "unknown_key", ...
  Status WithReason(std::string reason) const {
    Status st = *this;
    st.reason_ = std::move(reason);
    return st;
  }
  // The reason given, else one derived from the code ("not_found", ...).
  std::string reason() const {
    if (!reason_.empty()) return reason_;
    switch (code_) {
      case Code::kOk:
        return "ok";
      case Code::kNotFound:
        return "not_found";
      case Code::kInvalidArgument:
        return "bad_request";
      case Code::kCorruption:
        return "corruption";
      case Code::kIOError:
        return "io_error";
      case Code::kBusy:
        return "busy";
    }
    return "unknown";
  }

  static const char* CodeName(Code code) {
    switch (code) {
      case Code::kOk:
        return "OK";
      case Code::kNotFound:
        return "NotFound";
      case Code::kInvalidArgument:
        return "InvalidArgument";
      case Code::kCorruption:
        return "Corruption";
      case Code::kIOError:
        return "IOError";
      case Code::kBusy:
        return "Busy";
    }
    return "Unknown";
  }

 private:
  Status(Code code, std::string msg) : code_(code), message_(std::move(msg)) {}

  Code code_ = Code::kOk;
  std::string message_;
  std::string reason_;
};

// A value or the Status that explains why there is none.
template <typename T>
class Result {
 public:
  Result(T value) : value_(std::move(value)) {}          // NOLINT: implicit by design
  Result(Status status) : status_(std::move(status)) {}  // NOLINT: implicit by design

  bool ok() const { return status_.ok(); }
  const Status& status() const { return status_; }

  // Precondition: ok().
  T& value() & { return *value_; }
  const T& value() const& { return *value_; }
  T&& value() && { return std::move(*value_); }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }
  T& operator*() & { return *value_; }
  const T& operator*() const& { return *value_; }

 private:
  Status status_;
  std::optional<T> value_;
};

}  // namespace komoku

// Returns early from the enclosing function with a non-OK Status.
#define KOMOKU_RETURN_IF_ERROR(expr)         \
  do {                                       \
    ::komoku::Status _komoku_st = (expr);    \
    if (!_komoku_st.ok()) return _komoku_st; \
  } while (0)
