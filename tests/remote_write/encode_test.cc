#include "remote_write/encode.h"

#include <gtest/gtest.h>
#include <snappy.h>

namespace komoku::remote_write {
namespace {

using store::KeyType;
using store::Sample;
using SeqChange = store::Store::SeqChange;

TEST(KeyFilter, IncludeAndExcludeGlobs) {
  KeyFilter all;
  EXPECT_TRUE(all.Matches("any/key"));
  KeyFilter f{SplitGlobs(" house/*, garden/* ,"), SplitGlobs("*/debug/*")};
  EXPECT_EQ(f.include, (std::vector<std::string>{"house/*", "garden/*"}));
  EXPECT_TRUE(f.Matches("house/kitchen/temperature"));  // '*' takes '/' too
  EXPECT_TRUE(f.Matches("garden/rain"));
  EXPECT_FALSE(f.Matches("garage/door"));
  EXPECT_FALSE(f.Matches("house/debug/x"));
}

TEST(BuildBatch, NamesLabelsAndValuesAsTheReadApi) {
  std::vector<SeqChange> changes = {
      {1, "kitchen/temperature", KeyType::kNumeric, Sample{1000, 21.5}},
      {2, "door", KeyType::kBoolean, Sample{1000, true}},
      {3, "kitchen/temperature", KeyType::kNumeric, Sample{2000, 22.0}},
      {4, "alarm", KeyType::kString, Sample{2000, std::string("armed")}},
      {5, "door", KeyType::kBoolean, Sample{3000, false}},
      {6, "1st/rain", KeyType::kCounter, Sample{3000, 4.0}},
  };
  Batch b = BuildBatch(changes, KeyFilter{}, {});
  ASSERT_EQ(b.series.size(), 3u);
  EXPECT_EQ(b.samples, 5u);
  EXPECT_EQ(b.filtered, 1u);
  using Labels = std::vector<std::pair<std::string, std::string>>;
  EXPECT_EQ(b.series[0].labels, (Labels{{"__name__", "kitchen_temperature"},
                                        {"key", "kitchen/temperature"},
                                        {"type", "numeric"}}));
  EXPECT_EQ(b.series[0].samples,
            (std::vector<std::pair<int64_t, double>>{{1000, 21.5}, {2000, 22}}));
  EXPECT_EQ(b.series[1].samples, (std::vector<std::pair<int64_t, double>>{{1000, 1}, {3000, 0}}));
  EXPECT_EQ(b.series[2].labels[0].second, "_1st_rain");
  EXPECT_EQ(b.series[2].labels[2].second, "counter");
}

TEST(BuildBatch, LeavesOutWhatPrometheusWouldRefuse) {
  std::vector<SeqChange> changes = {
      {1, "a", KeyType::kNumeric, Sample{500, 1.0}},  // not after what was sent
      {2, "a", KeyType::kNumeric, Sample{2000, 2.0}},
      {3, "a", KeyType::kNumeric, Sample{2000, 3.0}},  // same time: the later put
      {4, "a", KeyType::kNumeric, Sample{1500, 4.0}},  // late within the batch
      {5, "b", KeyType::kNumeric, Sample{100, 5.0}},
  };
  Batch b = BuildBatch(changes, KeyFilter{}, {{"a", 1000}});
  ASSERT_EQ(b.series.size(), 2u);
  EXPECT_EQ(b.series[0].samples, (std::vector<std::pair<int64_t, double>>{{2000, 3.0}}));
  EXPECT_EQ(b.out_of_order, 3u);
  EXPECT_EQ(b.samples, 2u);
}

// WriteRequest{timeseries: [{labels: [{name: "a", value: "b"}],
// samples: [{value: 1.0, timestamp: 5}]}]}, encoded by hand from the
// protocol's field numbers (WriteRequest.timeseries = 1; TimeSeries.labels =
// 1, samples = 2; Label.name = 1, value = 2; Sample.value = 1 (double),
// timestamp = 2 (int64)).
const std::string kHandMade = std::string(
    "\x0a\x15"  // timeseries, 21 bytes
    "\x0a\x06\x0a\x01"
    "a\x12\x01"
    "b"                                                      // labels {name "a", value "b"}
    "\x12\x0b\x09\x00\x00\x00\x00\x00\x00\xf0\x3f\x10\x05",  // samples {1.0, 5}
    23);

TEST(WriteRequest, EncodesTheProtocolsFields) {
  Series s;
  s.labels = {{"a", "b"}};
  s.samples = {{5, 1.0}};
  std::string body = EncodeWriteRequest({s});
  std::string raw;
  ASSERT_TRUE(snappy::Uncompress(body.data(), body.size(), &raw));
  EXPECT_EQ(raw, kHandMade);
}

TEST(WriteRequest, DecodesHandMadeBodiesAndRefusesOthers) {
  std::string body;
  snappy::Compress(kHandMade.data(), kHandMade.size(), &body);
  Result<std::vector<Series>> decoded = DecodeWriteRequest(body);
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  ASSERT_EQ(decoded->size(), 1u);
  EXPECT_EQ((*decoded)[0].labels[0], (std::pair<std::string, std::string>{"a", "b"}));
  EXPECT_EQ((*decoded)[0].samples[0], (std::pair<int64_t, double>{5, 1.0}));
  EXPECT_FALSE(DecodeWriteRequest("not snappy at all").ok());
}

}  // namespace
}  // namespace komoku::remote_write
