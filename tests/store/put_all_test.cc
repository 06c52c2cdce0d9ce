// Store::PutAll: several changes at once, all or none. A refusal of any
// change (its key's type, its allowed values, a bad key name or time)
// changes nothing, is counted once and names the key; accepted changes
// apply in order, create keys, and reach the listeners and the database.
#include <gtest/gtest.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "key_options_util.h"
#include "store/store.h"
#include "store_test_util.h"

namespace komoku::store {
namespace {

using testing::FakeClock;
using testing::OpenTestStore;
using testing::Opts;
using testing::TempDir;

constexpr int64_t kNow = 1700000000000;  // 2023-11-14T22:13:20Z

Store::KeyPut PutOf(std::string_view key, const InputValue& value, int64_t time_ms) {
  Store::KeyPut put{key, &value, {}};
  put.options.time_ms = time_ms;
  return put;
}

class PutAllTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = OpenTestStore(dir_.File("data"), &clock_);
    ASSERT_NE(store_, nullptr);
    ASSERT_TRUE(store_->Put("temp", InputValue(21.5), PutAt(kNow - 1000)).ok());
    ASSERT_TRUE(
        store_->Define("mode", KeyType::kString, Opts(nlohmann::json{{"values", {"auto", "off"}}}))
            .ok());
    ASSERT_TRUE(store_->Put("mode", InputValue(std::string("auto")), PutAt(kNow - 1000)).ok());
    store_->AddListener([this](const Change& c) { heard_.push_back(c.key); });
  }

  static PutOptions PutAt(int64_t time_ms) {
    PutOptions o;
    o.time_ms = time_ms;
    return o;
  }

  // Every key with its current value and its history, as text.
  std::string State() const {
    std::string out;
    for (const KeyInfo& k : store_->Keys()) {
      out += k.name + "=" + (k.last ? ValueToText(k.last->value) : "none");
      Result<std::vector<Sample>> h = store_->History(k.name, 0, kNow + 1, 100);
      out += " (" + std::to_string(h.ok() ? h->size() : 0) + ") ";
    }
    return out;
  }

  int64_t Refused(const std::string& reason) const {
    return store_->metrics().Get("komoku_refused_total{reason=\"" + reason + "\"}");
  }

  TempDir dir_;
  FakeClock clock_{kNow};
  std::unique_ptr<Store> store_;
  std::vector<std::string> heard_;
};

TEST_F(PutAllTest, AllAcceptedApplyInOrderAndCreateKeys) {
  const InputValue t(22.0), m(std::string("off")), n(std::string("hello")), n2(std::string("bye"));
  Result<std::vector<Change>> r =
      store_->PutAll({PutOf("temp", t, kNow), PutOf("mode", m, kNow), PutOf("note", n, kNow - 10),
                      PutOf("note", n2, kNow)});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->size(), 4u);
  EXPECT_FALSE((*r)[0].created_key);
  EXPECT_TRUE((*r)[2].created_key);
  EXPECT_FALSE((*r)[3].created_key);
  EXPECT_EQ((*r)[3].type, KeyType::kString);
  ASSERT_TRUE((*r)[3].previous.has_value());
  EXPECT_EQ(ValueToText((*r)[3].previous->value), "hello");
  EXPECT_EQ(State(), "mode=off (2) note=bye (2) temp=22 (2) ");
  EXPECT_EQ(heard_, (std::vector<std::string>{"temp", "mode", "note", "note"}));
}

TEST_F(PutAllTest, OneRefusedChangeRefusesThemAllAndNamesItsKey) {
  const std::string before = State();
  const InputValue good(23.0), fresh(1.0), warm(std::string("warm")), heat(std::string("heat"));
  struct Case {
    std::vector<Store::KeyPut> puts;
    const char* reason;
    const char* key;  // the key the error names
    size_t index;     // the change refused
  };
  const std::vector<Case> cases = {
      // The bad change last: the ones before it are checked and not applied.
      {{PutOf("temp", good, kNow), PutOf("new/key", fresh, kNow), PutOf("temp", warm, kNow)},
       "wrong_type",
       "key 'temp'",
       2},
      {{PutOf("new/key", fresh, kNow), PutOf("mode", heat, kNow)},
       "value_not_allowed",
       "key 'mode'",
       1},
      // A key the batch creates as numeric refuses text later in the batch.
      {{PutOf("new/key", fresh, kNow), PutOf("new/key", warm, kNow)},
       "wrong_type",
       "key 'new/key'",
       1},
      {{PutOf("temp", good, kNow), PutOf("bad+key", fresh, kNow)}, "bad_key", "bad+key", 1},
      {{PutOf("new/key", fresh, kNow), PutOf("temp", good, -5)}, "bad_time", "key 'temp'", 1},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.reason);
    const int64_t counted = Refused(c.reason);
    size_t refused = 99;
    Result<std::vector<Change>> r = store_->PutAll(c.puts, &refused);
    ASSERT_FALSE(r.ok());
    EXPECT_TRUE(r.status().IsInvalidArgument()) << r.status().ToString();
    EXPECT_EQ(r.status().reason(), c.reason);
    EXPECT_NE(r.status().message().find(c.key), std::string::npos) << r.status().message();
    EXPECT_EQ(refused, c.index);
    EXPECT_EQ(Refused(c.reason), counted + 1);
    EXPECT_EQ(State(), before);
    EXPECT_TRUE(store_->Get("new/key").status().IsNotFound());
  }
  EXPECT_TRUE(heard_.empty());
  EXPECT_EQ(store_->metrics().Get("komoku_changes_accepted_total"), 2);

  // Nothing half-written reached the database either.
  store_->Close();
  store_ = OpenTestStore(dir_.File("data"), &clock_);
  ASSERT_NE(store_, nullptr);
  EXPECT_EQ(State(), before);
}

TEST_F(PutAllTest, RepeatsAndDuplicatesAreAsForPut) {
  const InputValue same(21.5), again(21.5);
  // The stored change again (same time and value): a duplicate; the same
  // value later within same_value_resolution: a repeat, not stored.
  Result<std::vector<Change>> r =
      store_->PutAll({PutOf("temp", same, kNow - 1000), PutOf("temp", again, kNow)});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE((*r)[0].duplicate);
  EXPECT_FALSE((*r)[1].duplicate);
  EXPECT_FALSE((*r)[1].stored);
  EXPECT_EQ(store_->History("temp", 0, kNow + 1, 10)->size(), 1u);
  EXPECT_TRUE(heard_.empty());
}

}  // namespace
}  // namespace komoku::store
