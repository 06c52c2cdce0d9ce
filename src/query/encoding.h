// Compressed answers: which content coding a request accepts, which answers
// are worth compressing, and gzip itself (zlib). The transport applies
// EncodeAnswer to every finished answer on the worker thread that made it,
// never on the io thread (docs/http-api.md, "Compression"). Internal to
// src/query; stateless and thread-safe.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "common/status.h"
#include "query/http.h"

namespace komoku::query {

// Answers smaller than this go out as they are: gzip's 18-byte frame and
// the extra header would eat what little it saves.
constexpr size_t kMinCompressBytes = 1024;

// Whether a request whose Accept-Encoding header is `accept_encoding`
// (`present` false: the request has none) takes a gzip body, by the rules
// of RFC 9110 section 12.5.3: members separated by commas, each a coding
// (case-insensitive; "x-gzip" is gzip) with an optional ";q=" weight from
// 0 to 1. gzip is taken when its weight (its own, else that of "*", else 0)
// is above 0 and not below identity's when the header weighs identity (its
// own, else that of "*"). A member whose weight does not parse is ignored. Without the header, or
// with an empty one, the answer is not compressed: a client that says
// nothing may not expect it (curl without --compressed).
bool AcceptsGzip(std::string_view accept_encoding, bool present = true);

// Whether an answer of this Content-Type is text that compresses: text/*
// but the event stream (each event must reach the client when it is
// written), JSON, JavaScript, XML and SVG. Parameters (";charset=") are
// ignored.
bool IsCompressible(std::string_view content_type);

// `bytes` as a gzip member (RFC 1952) at zlib level `level` (1 fastest … 9
// smallest). IOError only when zlib itself fails (out of memory).
Result<std::string> Gzip(std::string_view bytes, int level);

// Finishes `res` for `req`: an answer whose type IsCompressible (and is not
// an event stream) gets `Vary: Accept-Encoding`, compressed or not, so a
// cache keeps the two apart; when the request AcceptsGzip and the body is
// at least kMinCompressBytes, the body is gzipped with `Content-Encoding:
// gzip`, and a strong ETag becomes weak (W/"…"): the gzipped bytes differ
// from the plain ones that the strong ETag names, while both mean the same
// thing, which is what a weak ETag says (RFC 9110 section 8.8.1), and weak
// comparison keeps If-None-Match working across the two. A 304 answers the
// ETag in the form the request named in If-None-Match. An answer that
// already has a Content-Encoding is left alone.
void EncodeAnswer(const Request& req, Response& res);

}  // namespace komoku::query
