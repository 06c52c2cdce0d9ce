// The files of `komoku import` and `komoku export`: CSV/TSV records and
// InfluxDB line protocol, read line by line with their line numbers.
#include "wire/import_format.h"

#include <gtest/gtest.h>

#include <sstream>

namespace komoku::store {
namespace {

struct Read {
  int64_t line;
  std::string error;  // empty: ok
  std::vector<ImportRow> rows;
};

std::vector<Read> ReadAll(const std::string& text, ImportFormat format, int64_t ns = 1) {
  std::istringstream in(text);
  ImportReader reader(in, format, ns);
  std::vector<Read> out;
  std::vector<ImportRow> rows;
  Status error;
  int64_t line = 0;
  while (reader.Next(&rows, &error, &line)) out.push_back({line, error.message(), rows});
  return out;
}

std::string Text(const InputValue& v) {
  if (const double* d = std::get_if<double>(&v)) return "number " + ValueToText(Value(*d));
  if (const bool* b = std::get_if<bool>(&v)) return *b ? "bool true" : "bool false";
  return "text " + std::get<std::string>(v);
}

TEST(ImportTimeTest, FormsAndHowTheyAreToldApart) {
  EXPECT_EQ(*ParseImportTime("2026-12-06T12:00:00Z"), 1796558400000);
  EXPECT_EQ(*ParseImportTime("2026-12-06T13:00:00.250+01:00"), 1796558400250);
  EXPECT_EQ(*ParseImportTime("2026-12-06 12:00:00"), 1796558400000);
  EXPECT_EQ(*ParseImportTime("1796558400"), 1796558400000);       // seconds
  EXPECT_EQ(*ParseImportTime("1796558400.25"), 1796558400250);    // seconds with a fraction
  EXPECT_EQ(*ParseImportTime("1796558400.0006"), 1796558400001);  // rounded to the ms
  EXPECT_EQ(*ParseImportTime("1796558400250"), 1796558400250);    // 13 digits: ms
  EXPECT_EQ(*ParseImportTime("99999999999"), 99999999999000);     // 11 digits: seconds
  EXPECT_EQ(*ParseImportTime("100000000000"), 100000000000);      // 12 digits: ms
  for (const char* bad : {"", "now", "-24h", "-5", "1e9", "12.5.3", "abc", "2026-13-01"}) {
    EXPECT_FALSE(ParseImportTime(bad).ok()) << bad;
  }
}

TEST(CsvTest, QuotingPerRfc4180) {
  std::vector<std::string> f;
  ASSERT_TRUE(SplitCsvRecord("a,\"b,c\",\"say \"\"hi\"\"\",", ',', &f).ok());
  EXPECT_EQ(f, (std::vector<std::string>{"a", "b,c", "say \"hi\"", ""}));
  ASSERT_TRUE(SplitCsvRecord("\"two\nlines\",x\r\n", ',', &f).ok());
  EXPECT_EQ(f, (std::vector<std::string>{"two\nlines", "x"}));
  EXPECT_FALSE(SplitCsvRecord("a\"b,c", ',', &f).ok());
  EXPECT_FALSE(SplitCsvRecord("\"a\"b,c", ',', &f).ok());
  EXPECT_FALSE(SplitCsvRecord("\"open,c", ',', &f).ok());
}

TEST(CsvTest, BomCrlfHeaderBlankLinesAndBadRowsByLine) {
  const std::string text =
      "\xEF\xBB\xBFkey,time,value\r\n"          // 1: BOM and header
      "kitchen/temp,1796558400,21.5\r\n"        // 2
      "\r\n"                                    // 3: blank
      "\"door, front\",1796558400000,true\r\n"  // 4
      "log,1796558401,\"first\r\nsecond\"\r\n"  // 5-6: a quoted line break
      "kitchen/temp,yesterday,1\r\n"            // 7: bad time
      "only,two\r\n"                            // 8: too few fields
      "k,1796558402,1,gauge\r\n"                // 9: bad type
      "c,1796558403,5,counter\r\n";             // 10
  std::vector<Read> got = ReadAll(text, ImportFormat::kCsv);
  ASSERT_EQ(got.size(), 7u);
  EXPECT_EQ(got[0].line, 2);
  ASSERT_EQ(got[0].rows.size(), 1u);
  EXPECT_EQ(got[0].rows[0].key, "kitchen/temp");
  EXPECT_EQ(got[0].rows[0].time_ms, 1796558400000);
  EXPECT_EQ(Text(got[0].rows[0].value), "text 21.5");
  EXPECT_EQ(got[1].line, 4);
  EXPECT_EQ(got[1].rows[0].key, "door, front");
  EXPECT_EQ(got[2].line, 5);
  EXPECT_EQ(Text(got[2].rows[0].value), "text first\nsecond");
  EXPECT_EQ(got[3].line, 7);
  EXPECT_NE(got[3].error.find("'yesterday'"), std::string::npos) << got[3].error;
  EXPECT_EQ(got[4].line, 8);
  EXPECT_NE(got[4].error.find("2 fields"), std::string::npos) << got[4].error;
  EXPECT_EQ(got[5].line, 9);
  EXPECT_FALSE(got[5].error.empty());
  EXPECT_EQ(got[6].line, 10);
  ASSERT_EQ(got[6].rows.size(), 1u);
  EXPECT_EQ(got[6].rows[0].type, KeyType::kCounter);
}

TEST(CsvTest, NoHeaderAndAnUnclosedQuote) {
  std::vector<Read> got =
      ReadAll("a,1796558400,1\nb,1796558400,\"open\nc,1796558400,3\n", ImportFormat::kCsv);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].rows[0].key, "a");
  EXPECT_EQ(got[1].line, 2);
  EXPECT_NE(got[1].error.find("not closed"), std::string::npos) << got[1].error;
}

TEST(TsvTest, TabsAndNoQuoting) {
  std::vector<Read> got =
      ReadAll("key\ttime\tvalue\nroom\t1796558400\tsays \"hi\", ok\n", ImportFormat::kTsv);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].line, 2);
  EXPECT_EQ(Text(got[0].rows[0].value), "text says \"hi\", ok");
}

// import_format_fuzzer's first finding: a TSV row whose key is empty was
// read as a row (the store refused it later, as a bad key name).
TEST(ImportFuzzRegressionTest, EmptyKeyIsABadRow) {
  std::vector<Read> got = ReadAll("\t1796558400.5\tx\n", ImportFormat::kTsv);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_NE(got[0].error.find("no key"), std::string::npos) << got[0].error;
  EXPECT_TRUE(got[0].rows.empty());
}

// The second: an RFC 3339 time before 1970 was read (the store refused it
// later, as a bad time).
TEST(ImportFuzzRegressionTest, TimeBefore1970IsABadRow) {
  Result<int64_t> t = ParseImportTime("1013-12-06T12:00:00Z");
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("before 1970"), std::string::npos);
}

TEST(LineProtocolTest, KeysTypesAndEscapes) {
  std::vector<ImportRow> rows;
  ASSERT_TRUE(ParseLineProtocol(
                  "weather,site=home,room=a\\ b temp=21.5,hum=40i,ok=t,note=\"a \\\"q\\\" \\\\ "
                  "x, y=z\" 1796558400000000000",
                  1, &rows)
                  .ok());
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_EQ(rows[0].key, "weather/home/a b/temp");
  EXPECT_EQ(rows[0].time_ms, 1796558400000);
  EXPECT_EQ(Text(rows[0].value), "number 21.5");
  EXPECT_EQ(rows[1].key, "weather/home/a b/hum");
  EXPECT_EQ(Text(rows[1].value), "number 40");
  EXPECT_EQ(Text(rows[2].value), "bool true");
  EXPECT_EQ(Text(rows[3].value), "text a \"q\" \\ x, y=z");
  EXPECT_EQ(rows[3].type, KeyType::kString);
  EXPECT_EQ(rows[0].type, std::nullopt);

  ASSERT_TRUE(ParseLineProtocol("my\\,meas\\ x value=F 1796558400", 1000000000, &rows).ok());
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].key, "my,meas x");  // the field "value" adds nothing
  EXPECT_EQ(rows[0].time_ms, 1796558400000);
  EXPECT_EQ(Text(rows[0].value), "bool false");

  ASSERT_TRUE(
      ParseLineProtocol("energy,komoku_type=counter value=12.5 1796558400000", 1000, &rows).ok());
  EXPECT_EQ(rows[0].key, "energy");
  EXPECT_EQ(rows[0].type, KeyType::kCounter);
  EXPECT_EQ(rows[0].time_ms, 1796558400);
}

TEST(LineProtocolTest, BadLinesSayWhy) {
  std::vector<ImportRow> rows;
  struct Case {
    const char* line;
    const char* says;
  } cases[] = {
      {"cpu", "no fields"},
      {"cpu value=1", "no timestamp"},
      {"cpu value=1 abc", "not an integer"},
      {"cpu value=1 -5", "before 1970"},
      {"cpu value=1x 1", "not a number"},
      {"cpu value=\"open 1", "not closed"},
      {"cpu,host value=1 1", "not key=value"},
      {"cpu value 1", "not key=value"},
      {"cpu,komoku_type=gauge value=1 1", "gauge"},
  };
  for (const Case& c : cases) {
    Status st = ParseLineProtocol(c.line, 1, &rows);
    EXPECT_FALSE(st.ok()) << c.line;
    EXPECT_NE(st.message().find(c.says), std::string::npos) << c.line << ": " << st.message();
    EXPECT_TRUE(rows.empty());
  }
}

TEST(LineProtocolTest, ReaderSkipsCommentsAndNamesLines) {
  std::vector<Read> got =
      ReadAll("# DML\n# CONTEXT-DATABASE: home\n\ncpu value=1 1000000\ncpu value=x 2000000\r\n",
              ImportFormat::kLine);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].line, 4);
  EXPECT_EQ(got[0].rows[0].time_ms, 1);
  EXPECT_EQ(got[1].line, 5);
  EXPECT_FALSE(got[1].error.empty());
}

// InfluxDB 1.6's CLI, `influx -execute 'SELECT * FROM /.*/ GROUP BY *'
// -format csv` (as influxdb-client 1.6.7 writes it; integration 41 runs the
// real one): a header before each series, the tags in one column.
TEST(InfluxCsvTest, SeriesTagsFieldsAndTimes) {
  const std::string text =
      "name,tags,time,humidity,open,temperature,value\n"
      "alarm,\"room=,site=\",1700000000000000000,,,,\"armed \"\"away\"\", all\"\n"
      "name,tags,time,humidity,open,temperature,value\n"
      "door,\"room=,site=home\",1700000000000000000,,true,,\n"
      "name,tags,time,humidity,open,temperature,value\n"
      "weather,\"room=living room,site=home\",1700000000000000000,40,,21.5,\n"
      "weather,\"room=living room,site=home\",2023-11-14T22:14:20Z,,,21.75,\n"
      "weather,\"room=kitchen,site=home\",oops,,,19.25,\n"
      "meter,komoku_type=counter,1700000000000000000,,,,12.5\n";
  std::vector<Read> got = ReadAll(text, ImportFormat::kCsv);
  ASSERT_EQ(got.size(), 6u);
  ASSERT_EQ(got[0].rows.size(), 1u) << got[0].error;
  EXPECT_EQ(got[0].line, 2);
  EXPECT_EQ(got[0].rows[0].key, "alarm");  // empty tags are left out, "value" too
  EXPECT_EQ(got[0].rows[0].time_ms, 1700000000000);
  EXPECT_EQ(Text(got[0].rows[0].value), "text armed \"away\", all");
  ASSERT_EQ(got[1].rows.size(), 1u);
  EXPECT_EQ(got[1].rows[0].key, "door/home/open");
  EXPECT_EQ(Text(got[1].rows[0].value), "text true");
  ASSERT_EQ(got[2].rows.size(), 2u);
  EXPECT_EQ(got[2].rows[0].key, "weather/living room/home/humidity");
  EXPECT_EQ(Text(got[2].rows[0].value), "text 40");
  EXPECT_EQ(got[2].rows[1].key, "weather/living room/home/temperature");
  ASSERT_EQ(got[3].rows.size(), 1u);
  EXPECT_EQ(got[3].rows[0].time_ms, 1700000060000);  // -precision rfc3339
  EXPECT_EQ(got[4].line, 8);
  EXPECT_NE(got[4].error.find("oops"), std::string::npos) << got[4].error;
  EXPECT_TRUE(got[4].rows.empty());
  ASSERT_EQ(got[5].rows.size(), 1u);
  EXPECT_EQ(got[5].rows[0].key, "meter");
  EXPECT_EQ(got[5].rows[0].type, KeyType::kCounter);
}

// A measurement without tags has no tags column; the times' unit is told
// by their size (the CLI's -precision).
TEST(InfluxCsvTest, WithoutTagsAndEachPrecision) {
  const std::string text =
      "name,time,value\n"
      "alarm,1700000000000000000,\"armed \"\"away\"\", all\"\n"
      "alarm,1700000001000000,off\n"
      "alarm,1700000002000,on\n"
      "alarm,1700000003,off\n"
      "alarm,1700000004.5,on\n"
      "name,time,humidity,temperature\n"
      "room,1700000000000000000,40,\n"
      "room,1700000000000000000,40\n";
  std::vector<Read> got = ReadAll(text, ImportFormat::kCsv);
  ASSERT_EQ(got.size(), 7u);
  int64_t expected_ms[] = {1700000000000, 1700000001000, 1700000002000, 1700000003000,
                           1700000004500};
  for (size_t i = 0; i < 5; ++i) {
    ASSERT_EQ(got[i].rows.size(), 1u) << i << ": " << got[i].error;
    EXPECT_EQ(got[i].rows[0].key, "alarm");
    EXPECT_EQ(got[i].rows[0].time_ms, expected_ms[i]) << i;
  }
  ASSERT_EQ(got[5].rows.size(), 1u) << got[5].error;
  EXPECT_EQ(got[5].rows[0].key, "room/humidity");
  EXPECT_EQ(got[6].line, 9);
  EXPECT_NE(got[6].error.find("3 fields, the header has 4"), std::string::npos) << got[6].error;
}

TEST(ExportTest, CsvAndLineProtocolReadBackAsWritten) {
  std::string csv = CsvExportHeader();
  AppendCsvRow("a,b", KeyType::kString, Sample{1796558400123, Value(std::string("x \"y\"\nz"))},
               &csv);
  AppendCsvRow("n", KeyType::kCounter, Sample{1796558400000, Value(0.1)}, &csv);
  std::vector<Read> got = ReadAll(csv, ImportFormat::kCsv);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].rows[0].key, "a,b");
  EXPECT_EQ(got[0].rows[0].time_ms, 1796558400123);
  EXPECT_EQ(Text(got[0].rows[0].value), "text x \"y\"\nz");
  EXPECT_EQ(got[0].rows[0].type, KeyType::kString);
  EXPECT_EQ(Text(got[1].rows[0].value), "text 0.1");
  EXPECT_EQ(got[1].rows[0].type, KeyType::kCounter);

  std::string lp;
  ASSERT_TRUE(AppendLineProtocolRow("room a,b", KeyType::kString,
                                    Sample{1796558400123, Value(std::string("say \"hi\" \\"))},
                                    &lp));
  ASSERT_TRUE(AppendLineProtocolRow("up", KeyType::kUptime, Sample{5, Value(true)}, &lp));
  EXPECT_FALSE(AppendLineProtocolRow("log", KeyType::kString,
                                     Sample{5, Value(std::string("two\nlines"))}, &lp));
  got = ReadAll(lp, ImportFormat::kLine);
  ASSERT_EQ(got.size(), 2u) << lp;
  EXPECT_EQ(got[0].rows[0].key, "room a,b");
  EXPECT_EQ(got[0].rows[0].time_ms, 1796558400123);
  EXPECT_EQ(Text(got[0].rows[0].value), "text say \"hi\" \\");
  EXPECT_EQ(got[1].rows[0].type, KeyType::kUptime);
  EXPECT_EQ(Text(got[1].rows[0].value), "bool true");
}

}  // namespace
}  // namespace komoku::store
