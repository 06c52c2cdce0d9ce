// libFuzzer target: Home Assistant value templates (bridge/ha_template.h),
// which come from whoever may publish a discovery config on the broker:
// ParseHaTemplate (both forms), ParseHaExpressionTemplate and
// ParseHaEventTemplate, then the evaluation of what they accept.
//
// Input: the template up to the first NUL byte; after it, the value the
// template reads: a JSON scalar (a number, true, false, null) as it would
// come from value_json, any other bytes as text; nothing after the NUL (or
// no NUL): the field is missing. Any crash or sanitizer report is a bug,
// and so is:
// - a refusal without a message, or, for a template that is valid UTF-8
//   (as every one from a JSON discovery config is), a message that is not
//   (json::dump() with strict UTF-8);
// - an accepted template with neither steps nor an expression, or both;
// - an evaluation that gives another answer the second time (a parsed
//   template is immutable: Evaluate may run on any number of threads);
// - arithmetic steps (the first form) and the same template evaluated
//   whole (the second form) disagreeing on a number: the bridge takes the
//   first, and both claim Python's arithmetic.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "bridge/ha_template.h"
#include "core/value.h"
#include "fuzz_util.h"

namespace {

using komoku::Result;
using komoku::bridge::HaTemplate;
using komoku::bridge::TemplateValue;
using komoku::fuzz::Dump;
using komoku::fuzz::Require;

TemplateValue Input(std::string_view bytes, bool present) {
  if (!present) return TemplateValue::Undefined();
  const nlohmann::json j = nlohmann::json::parse(bytes, nullptr, /*allow_exceptions=*/false);
  if (j.is_boolean()) return TemplateValue::Bool(j.get<bool>());
  if (j.is_number_integer()) return TemplateValue::Int(j.get<double>());
  if (j.is_number_float()) return TemplateValue::Float(j.get<double>());
  if (j.is_null()) return TemplateValue::None();
  return TemplateValue::String(std::string(bytes));
}

void CheckRefusal(const komoku::Status& s, bool utf8) {
  Require(!s.ok() && !s.message().empty());
  if (utf8) Dump({{"message", s.message()}});
}

// Same answer: the same status message, or the same kind and rendering.
bool Same(const Result<TemplateValue>& a, const Result<TemplateValue>& b) {
  if (a.ok() != b.ok()) return false;
  if (!a.ok()) return a.status().message() == b.status().message();
  return a->kind == b->kind && RenderTemplateValue(*a) == RenderTemplateValue(*b);
}

void Evaluate(const HaTemplate& t, const TemplateValue& in) {
  Require(t.expression != nullptr);
  Require(t.ops.empty() && !t.numeric && !t.missing_value);
  const Result<TemplateValue> first = t.expression->Evaluate(in);
  const Result<TemplateValue> second = t.expression->Evaluate(in);
  Require(Same(first, second));
  if (first.ok()) (void)RenderTemplateValue(*first);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view all(reinterpret_cast<const char*>(data), size);
  const size_t nul = all.find('\0');
  const std::string_view text = all.substr(0, nul);
  const bool present = nul != std::string_view::npos && nul + 1 < all.size();
  const TemplateValue in = Input(present ? all.substr(nul + 1) : std::string_view(), present);
  const bool utf8 = komoku::store::IsValidUtf8(text);

  Result<HaTemplate> general = komoku::bridge::ParseHaExpressionTemplate(text);
  if (general.ok()) {
    Evaluate(*general, in);
  } else {
    CheckRefusal(general.status(), utf8);
  }

  Result<HaTemplate> event = komoku::bridge::ParseHaEventTemplate(text);
  Require(event.ok() == general.ok());
  if (event.ok()) {
    Evaluate(*event, in);
    const Result<TemplateValue> type = event->expression->Evaluate(in);
    // An event's type is text, or nothing.
    if (type.ok()) {
      Require(type->kind == TemplateValue::Kind::kString ||
              type->kind == TemplateValue::Kind::kUndefined);
    }
  }

  Result<HaTemplate> t = komoku::bridge::ParseHaTemplate(text);
  if (!t.ok()) {
    CheckRefusal(t.status(), utf8);
    return 0;
  }
  if (t->expression) {
    Evaluate(*t, in);
    return 0;
  }
  // The first form: steps on one number. A number read from value_json
  // (or the payload's text of one, for `value`) must come out as the
  // second form computes it.
  if (!general.ok()) return 0;
  if (!in.is_number() || in.kind == TemplateValue::Kind::kBool || !std::isfinite(in.number)) {
    return 0;
  }
  const TemplateValue whole_in =
      t->path.empty() ? TemplateValue::String(RenderTemplateValue(in)) : in;
  const Result<double> stepped = komoku::bridge::ApplyNumberOps(t->ops, in.number);
  const Result<TemplateValue> whole = general->expression->Evaluate(whole_in);
  if (stepped.ok() && whole.ok() && whole->is_number()) {
    Require(*stepped == whole->number || (std::isnan(*stepped) && std::isnan(whole->number)));
  }
  return 0;
}
