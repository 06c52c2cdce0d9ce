// Block codecs of cold segments; see segment_codec.h and
// docs/segment-format.md ("Codecs") for the bit layouts.
#include "cold/segment_codec.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <unordered_map>

namespace komoku::store::segment_internal {
namespace {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "the bit coder loads little-endian words directly");

// The bit helpers of C++20's <bit>, for C++17.
int BitWidth(uint64_t v) { return v == 0 ? 0 : 64 - __builtin_clzll(v); }
int CountlZero(uint64_t v) { return v == 0 ? 64 : __builtin_clzll(v); }
int CountrZero(uint64_t v) { return v == 0 ? 64 : __builtin_ctzll(v); }
int CountrOne(uint64_t v) { return CountrZero(~v); }

// ---------------------------------------------------------------- limits

// Most items (samples, ms_per_value entries) one block may decode to, and
// most rollups: the writer cuts blocks at 1024 items, 65,536 ms_per_value
// entries, or after a run of at most 60,000 changes at one time
// (segment.cc). The limits bound what a crafted payload that passes the CRC
// can make a reader allocate (a Rollup is ~200 bytes, all-zero columns cost
// no bits).
constexpr uint64_t kMaxItems = uint64_t{1} << 17;
constexpr uint64_t kMaxRollups = uint64_t{1} << 12;
// The longest a rollup bucket is (kRollupResolutionsMs' coarsest).
constexpr int64_t kMaxRollupOffsetMs = 24 * 60 * 60 * 1000;
// Most string bytes one block may decode to (the writer cuts blocks at about
// 1 MiB of text and refuses single strings over 16 MiB).
constexpr uint64_t kMaxTextBytes = uint64_t{64} << 20;

Status Bad(const std::string& what) { return Status::Corruption("bad block payload: " + what); }

// ---------------------------------------------------------------- bits

class BitWriter {
 public:
  // Appends the low `n` bits of `v`, 0 <= n <= 64.
  void Write(uint64_t v, int n) {
    if (n == 0) return;
    if (n < 64) v &= (uint64_t{1} << n) - 1;
    acc_ |= v << fill_;
    if (fill_ + n >= 64) {
      char word[8];
      std::memcpy(word, &acc_, 8);
      out_.append(word, 8);
      const int used = 64 - fill_;
      acc_ = used < 64 ? v >> used : 0;
      fill_ = fill_ + n - 64;
    } else {
      fill_ += n;
    }
  }
  void WriteBit(bool b) { Write(b ? 1 : 0, 1); }
  // A header integer: its bit length in 7 bits, then the bits.
  void WriteU64(uint64_t v) {
    const int len = BitWidth(v);
    Write(static_cast<uint64_t>(len), 7);
    Write(v, len);
  }
  void WriteBytes(std::string_view s) {
    size_t i = 0;
    for (; i + 8 <= s.size(); i += 8) {
      uint64_t w;
      std::memcpy(&w, s.data() + i, 8);
      Write(w, 64);
    }
    for (; i < s.size(); ++i) Write(static_cast<unsigned char>(s[i]), 8);
  }
  uint64_t bits() const { return out_.size() * 8 + static_cast<uint64_t>(fill_); }
  std::string Finish() {
    for (int i = 0; i < fill_; i += 8) out_.push_back(static_cast<char>(acc_ >> i));
    acc_ = 0;
    fill_ = 0;
    return std::move(out_);
  }

 private:
  std::string out_;
  uint64_t acc_ = 0;
  int fill_ = 0;  // bits in acc_, always < 64
};

// Reads what BitWriter wrote. Past the end it reads zeros and remembers the
// overrun; decoders check ok() before trusting what they read, and bound
// every count by bits_left() (or kMaxItems) before allocating.
class BitReader {
 public:
  explicit BitReader(std::string_view bytes)
      : p_(reinterpret_cast<const unsigned char*>(bytes.data())),
        size_(bytes.size()),
        bits_(static_cast<uint64_t>(bytes.size()) * 8) {}

  // The next `n` bits without consuming them, 0 <= n <= 56.
  uint64_t Peek(int n) const {
    const uint64_t byte = pos_ >> 3;
    uint64_t w = 0;
    if (byte + 8 <= size_) {
      std::memcpy(&w, p_ + byte, 8);
    } else {
      for (uint64_t i = 0; byte + i < size_; ++i)
        w |= static_cast<uint64_t>(p_[byte + i]) << (8 * i);
    }
    w >>= (pos_ & 7);
    return n == 0 ? 0 : w & (~uint64_t{0} >> (64 - n));
  }
  void Skip(int n) { pos_ += static_cast<uint64_t>(n); }
  uint64_t Read(int n) {
    if (n > 56) {
      const uint64_t lo = Read(32);
      return lo | (Read(n - 32) << 32);
    }
    const uint64_t v = Peek(n);
    pos_ += static_cast<uint64_t>(n);
    return v;
  }
  bool ReadBit() { return Read(1) != 0; }
  uint64_t ReadU64() {
    const int len = static_cast<int>(Read(7));
    if (len > 64) {
      bad_ = true;
      return 0;
    }
    return Read(len);
  }
  bool ReadBytes(uint64_t n, std::string* out) {
    if (n > bits_left() / 8) {
      bad_ = true;
      return false;
    }
    out->resize(n);
    if ((pos_ & 7) == 0) {
      std::memcpy(out->data(), p_ + (pos_ >> 3), n);
      pos_ += n * 8;
      return true;
    }
    for (uint64_t i = 0; i < n; ++i) (*out)[i] = static_cast<char>(Read(8));
    return true;
  }
  void Fail() { bad_ = true; }
  bool ok() const { return !bad_ && pos_ <= bits_; }
  uint64_t bits_left() const { return pos_ >= bits_ ? 0 : bits_ - pos_; }

 private:
  const unsigned char* p_;
  uint64_t size_;
  uint64_t bits_;
  uint64_t pos_ = 0;
  bool bad_ = false;
};

uint64_t ZigZag(uint64_t v) {
  return (v << 1) ^ static_cast<uint64_t>(static_cast<int64_t>(v) >> 63);
}
uint64_t UnZigZag(uint64_t z) { return (z >> 1) ^ (0 - (z & 1)); }

uint64_t DoubleBits(double d) {
  uint64_t b;
  std::memcpy(&b, &d, 8);
  return b;
}
double BitsDouble(uint64_t b) {
  double d;
  std::memcpy(&d, &b, 8);
  return d;
}

// ---------------------------------------------------------------- Rice

// A Golomb-Rice code with parameter k: the quotient z >> k in unary (ones
// ended by a zero), then the k low bits. A quotient of kRiceEscape or more is
// written as kRiceEscape ones, the bit length of z in 7 bits and z itself, so
// outliers cost at most ~100 bits and the unary run is bounded.
constexpr int kRiceEscape = 32;
// The k that marks "every value is zero": nothing follows.
constexpr int kAllZero = 127;

uint64_t RiceCost(uint64_t z, int k) {
  const uint64_t q = z >> k;
  if (q < kRiceEscape) return q + 1 + static_cast<uint64_t>(k);
  return kRiceEscape + 7 + static_cast<uint64_t>(BitWidth(z));
}

void WriteRice(BitWriter& w, uint64_t z, int k) {
  const uint64_t q = z >> k;
  if (q < kRiceEscape) {
    w.Write((uint64_t{1} << q) - 1, static_cast<int>(q) + 1);
    w.Write(z, k);
    return;
  }
  w.Write((uint64_t{1} << kRiceEscape) - 1, kRiceEscape);
  w.WriteU64(z);
}

uint64_t ReadRice(BitReader& r, int k) {
  const int q = CountrOne(r.Peek(kRiceEscape + 1));
  if (q >= kRiceEscape) {
    r.Skip(kRiceEscape);
    return r.ReadU64();
  }
  r.Skip(q + 1);
  return (static_cast<uint64_t>(q) << k) | r.Read(k);
}

// The cheapest Rice parameter for `z` and its cost in bits.
std::pair<int, uint64_t> BestRice(const std::vector<uint64_t>& z) {
  if (std::all_of(z.begin(), z.end(), [](uint64_t v) { return v == 0; })) return {kAllZero, 0};
  // The best k sits near log2 of the mean; try a few around it.
  long double sum = 0;
  for (uint64_t v : z) sum += static_cast<long double>(v);
  const long double mean = sum / static_cast<long double>(z.size());
  const int b = mean < 1 ? 0 : static_cast<int>(std::log2(mean));
  int best_k = 0;
  uint64_t best = std::numeric_limits<uint64_t>::max();
  for (int k = std::max(0, b - 2); k <= std::min(63, b + 2); ++k) {
    uint64_t cost = 0;
    for (uint64_t v : z) cost += RiceCost(v, k);
    if (cost < best) {
      best = cost;
      best_k = k;
    }
  }
  return {best_k, best};
}

uint64_t U64Cost(uint64_t v) { return 7 + static_cast<uint64_t>(BitWidth(v)); }

// ---------------------------------------------------------------- integer series

// An integer series (modular 64-bit arithmetic, so any int64 values and any
// differences round-trip) coded as differences of order 0, 1 or 2 minus a
// stride (the median difference), zigzagged and Rice-coded:
//   order 2 bits · stride U64(zigzag) · k 7 bits · heads U64(zigzag)... · Rice residuals
// The count is known to the caller and not stored.
struct SeriesPlan {
  int order = 0;
  uint64_t stride = 0;
  int k = kAllZero;
  uint64_t heads[2] = {0, 0};
  int num_heads = 0;
  std::vector<uint64_t> z;  // zigzagged residuals
  uint64_t cost = 0;        // bits
};

SeriesPlan PlanOrder(const std::vector<uint64_t>& x, int order) {
  SeriesPlan p;
  p.order = order;
  const size_t n = x.size();
  std::vector<uint64_t> d;  // the differences before the stride
  d.reserve(n);
  if (order == 0) {
    d = x;
  } else if (order == 1) {
    if (n > 0) p.heads[p.num_heads++] = x[0];
    for (size_t i = 1; i < n; ++i) d.push_back(x[i] - x[i - 1]);
  } else {
    if (n > 0) p.heads[p.num_heads++] = x[0];
    if (n > 1) p.heads[p.num_heads++] = x[1] - x[0];
    for (size_t i = 2; i < n; ++i) d.push_back((x[i] - x[i - 1]) - (x[i - 1] - x[i - 2]));
  }
  if (!d.empty()) {
    std::vector<int64_t> sorted(d.size());
    for (size_t i = 0; i < d.size(); ++i) sorted[i] = static_cast<int64_t>(d[i]);
    auto mid = sorted.begin() + static_cast<std::ptrdiff_t>(sorted.size() / 2);
    std::nth_element(sorted.begin(), mid, sorted.end());
    p.stride = static_cast<uint64_t>(*mid);
  }
  p.z.resize(d.size());
  for (size_t i = 0; i < d.size(); ++i) p.z[i] = ZigZag(d[i] - p.stride);
  auto [k, bits] = BestRice(p.z);
  p.k = k;
  p.cost = 2 + U64Cost(ZigZag(p.stride)) + 7 + bits;
  for (int i = 0; i < p.num_heads; ++i) p.cost += U64Cost(ZigZag(p.heads[i]));
  return p;
}

SeriesPlan PlanSeries(const std::vector<uint64_t>& x) {
  SeriesPlan best = PlanOrder(x, 0);
  for (int order = 1; order <= 2; ++order) {
    SeriesPlan p = PlanOrder(x, order);
    if (p.cost < best.cost) best = std::move(p);
  }
  return best;
}

void WritePlan(BitWriter& w, const SeriesPlan& p) {
  w.Write(static_cast<uint64_t>(p.order), 2);
  w.WriteU64(ZigZag(p.stride));
  w.Write(static_cast<uint64_t>(p.k), 7);
  for (int i = 0; i < p.num_heads; ++i) w.WriteU64(ZigZag(p.heads[i]));
  if (p.k == kAllZero) return;
  for (uint64_t z : p.z) WriteRice(w, z, p.k);
}

void WriteSeries(BitWriter& w, const std::vector<uint64_t>& x) { WritePlan(w, PlanSeries(x)); }

// Reads `n` values (n <= kMaxItems, checked by the caller).
bool ReadSeries(BitReader& r, uint64_t n, std::vector<uint64_t>* out) {
  const int order = static_cast<int>(r.Read(2));
  const uint64_t stride = UnZigZag(r.ReadU64());
  const int k = static_cast<int>(r.Read(7));
  if (order > 2 || (k > 63 && k != kAllZero)) {
    r.Fail();
    return false;
  }
  // Every residual costs a bit unless all are zero.
  if (k != kAllZero && n > r.bits_left()) {
    r.Fail();
    return false;
  }
  out->resize(n);
  uint64_t* x = out->data();
  const uint64_t heads = std::min<uint64_t>(static_cast<uint64_t>(order), n);
  uint64_t h[2] = {0, 0};
  for (uint64_t i = 0; i < heads; ++i) h[i] = UnZigZag(r.ReadU64());
  auto next = [&]() -> uint64_t {
    return k == kAllZero ? stride : UnZigZag(ReadRice(r, k)) + stride;
  };
  if (order == 0) {
    for (uint64_t i = 0; i < n; ++i) x[i] = next();
  } else if (order == 1) {
    uint64_t prev = h[0];
    if (n > 0) x[0] = prev;
    for (uint64_t i = 1; i < n; ++i) x[i] = prev = prev + next();
  } else {
    if (n > 0) x[0] = h[0];
    if (n > 1) x[1] = h[0] + h[1];
    uint64_t prev = n > 1 ? x[1] : 0, delta = h[1];
    for (uint64_t i = 2; i < n; ++i) {
      delta += next();
      x[i] = prev = prev + delta;
    }
  }
  return r.ok();
}

// ---------------------------------------------------------------- doubles

constexpr double kPow10[] = {1, 10, 100, 1e3, 1e4, 1e5, 1e6};
constexpr int kMaxDecimals = 6;
// Scaled values stay below 2^62 so that llround and the differences of the
// integer coder are exact.
constexpr double kMaxScaled = 4611686018427387904.0;

enum DoubleMode : uint64_t { kDecimal = 0, kDecimalUlp = 1, kGorilla = 2, kConstant = 3 };

// The scaled integer of `v` at 10^k, if |v * 10^k| < 2^62.
bool Scale(double v, int k, int64_t* s) {
  if (!std::isfinite(v)) return false;
  const double t = v * kPow10[k];
  if (!(std::fabs(t) < kMaxScaled)) return false;
  *s = std::llround(t);
  return true;
}
double Unscale(int64_t s, int k) { return static_cast<double>(s) / kPow10[k]; }

// Gorilla (Pelkonen et al., VLDB 2015) XOR coding of doubles: the first
// value's 64 bits, then per value '0' when it repeats the previous, else '1'
// and either '0' + the XOR's meaningful bits inside the previous window, or
// '1' + leading zeros (5 bits, capped at 31) + meaningful length - 1 (6 bits)
// + the bits.
void WriteGorilla(BitWriter& w, const std::vector<double>& v) {
  if (v.empty()) return;
  uint64_t prev = DoubleBits(v[0]);
  w.Write(prev, 64);
  int lead = -1, trail = 0;  // the window; lead < 0 until one exists
  for (size_t i = 1; i < v.size(); ++i) {
    const uint64_t cur = DoubleBits(v[i]);
    const uint64_t x = cur ^ prev;
    prev = cur;
    if (x == 0) {
      w.WriteBit(false);
      continue;
    }
    w.WriteBit(true);
    const int lz = std::min(31, CountlZero(x));
    const int tz = CountrZero(x);
    if (lead >= 0 && lz >= lead && tz >= trail) {
      w.WriteBit(false);
      w.Write(x >> trail, 64 - lead - trail);
    } else {
      lead = lz;
      trail = tz;
      const int len = 64 - lead - trail;
      w.WriteBit(true);
      w.Write(static_cast<uint64_t>(lead), 5);
      w.Write(static_cast<uint64_t>(len - 1), 6);
      w.Write(x >> trail, len);
    }
  }
}

bool ReadGorilla(BitReader& r, uint64_t n, std::vector<double>* out) {
  out->resize(n);
  if (n == 0) return true;
  if (n - 1 > r.bits_left()) {
    r.Fail();
    return false;
  }
  uint64_t prev = r.Read(64);
  (*out)[0] = BitsDouble(prev);
  int lead = -1, trail = 0;
  for (uint64_t i = 1; i < n; ++i) {
    if (r.ReadBit()) {
      if (r.ReadBit()) {
        lead = static_cast<int>(r.Read(5));
        const int len = static_cast<int>(r.Read(6)) + 1;
        trail = 64 - lead - len;
        if (trail < 0) {
          r.Fail();
          return false;
        }
      } else if (lead < 0) {
        r.Fail();
        return false;
      }
      prev ^= r.Read(64 - lead - trail) << trail;
    }
    (*out)[i] = BitsDouble(prev);
  }
  return r.ok();
}

// Writes a column of doubles in whichever mode costs least:
//   mode 2 bits, then
//   kConstant:   the 64 bits of the value
//   kDecimal:    k 3 bits · series of round(v * 10^k)        (exact: v == s / 10^k)
//   kDecimalUlp: k 3 bits · series of round(v * 10^k) · series of bits(v) - bits(s / 10^k)
//   kGorilla:    XOR coding
// kDecimalUlp is for sums of decimals, whose float rounding leaves them a few
// ULPs off the decimal; the corrections then cost a few bits.
void WriteDoubles(BitWriter& w, const std::vector<double>& v) {
  const size_t n = v.size();
  if (n == 0) {
    w.Write(kConstant, 2);
    w.Write(0, 64);
    return;
  }
  const uint64_t b0 = DoubleBits(v[0]);
  if (std::all_of(v.begin(), v.end(), [b0](double d) { return DoubleBits(d) == b0; })) {
    w.Write(kConstant, 2);
    w.Write(b0, 64);
    return;
  }
  std::vector<uint64_t> scaled(n);
  for (int k = 0; k <= kMaxDecimals; ++k) {
    bool exact = true;
    for (size_t i = 0; i < n && exact; ++i) {
      int64_t s = 0;
      exact = Scale(v[i], k, &s) && DoubleBits(Unscale(s, k)) == DoubleBits(v[i]);
      scaled[i] = static_cast<uint64_t>(s);
    }
    if (exact) {
      w.Write(kDecimal, 2);
      w.Write(static_cast<uint64_t>(k), 3);
      WriteSeries(w, scaled);
      return;
    }
  }
  BitWriter gorilla;
  WriteGorilla(gorilla, v);
  uint64_t best_cost = gorilla.bits();
  int best_k = -1;
  SeriesPlan best_s, best_c;
  std::vector<uint64_t> corr(n);
  for (int k = 0; k <= kMaxDecimals; ++k) {
    bool ok = true;
    for (size_t i = 0; i < n && ok; ++i) {
      int64_t s = 0;
      ok = Scale(v[i], k, &s);
      scaled[i] = static_cast<uint64_t>(s);
      corr[i] = DoubleBits(v[i]) - DoubleBits(Unscale(s, k));
    }
    if (!ok) break;  // a larger k only scales further out of range
    SeriesPlan ps = PlanSeries(scaled);
    SeriesPlan pc = PlanOrder(corr, 0);
    const uint64_t cost = 3 + ps.cost + pc.cost;
    if (cost < best_cost) {
      best_cost = cost;
      best_k = k;
      best_s = std::move(ps);
      best_c = std::move(pc);
    }
  }
  if (best_k < 0) {
    w.Write(kGorilla, 2);
    WriteGorilla(w, v);
    return;
  }
  w.Write(kDecimalUlp, 2);
  w.Write(static_cast<uint64_t>(best_k), 3);
  WritePlan(w, best_s);
  WritePlan(w, best_c);
}

bool ReadDoubles(BitReader& r, uint64_t n, std::vector<double>* out) {
  const uint64_t mode = r.Read(2);
  if (mode == kConstant) {
    const double d = BitsDouble(r.Read(64));
    out->assign(n, d);
    return r.ok();
  }
  if (mode == kGorilla) return ReadGorilla(r, n, out);
  const int k = static_cast<int>(r.Read(3));
  if (k > kMaxDecimals) {
    r.Fail();
    return false;
  }
  std::vector<uint64_t> scaled;
  if (!ReadSeries(r, n, &scaled)) return false;
  out->resize(n);
  if (mode == kDecimal) {
    for (uint64_t i = 0; i < n; ++i) (*out)[i] = Unscale(static_cast<int64_t>(scaled[i]), k);
    return true;
  }
  std::vector<uint64_t> corr;
  if (!ReadSeries(r, n, &corr)) return false;
  for (uint64_t i = 0; i < n; ++i) {
    (*out)[i] = BitsDouble(DoubleBits(Unscale(static_cast<int64_t>(scaled[i]), k)) + corr[i]);
  }
  return true;
}

// ---------------------------------------------------------------- strings

// A column of strings: '1' + a dictionary (count, then each string) + each
// value's index in bit_width(count - 1) bits, or '0' + each string. A string
// is U64 length + bytes.
void WriteStrings(BitWriter& w, const std::vector<std::string_view>& v) {
  std::unordered_map<std::string_view, uint64_t> index;
  std::vector<std::string_view> dict;
  uint64_t plain = 0, dict_bits = 0;
  for (std::string_view s : v) {
    const uint64_t cost = U64Cost(s.size()) + 8 * s.size();
    plain += cost;
    if (index.emplace(s, dict.size()).second) {
      dict.push_back(s);
      dict_bits += cost;
    }
  }
  const int width = dict.size() <= 1 ? 0 : BitWidth(dict.size() - 1);
  dict_bits += U64Cost(dict.size()) + v.size() * static_cast<uint64_t>(width);
  if (dict_bits < plain) {
    w.WriteBit(true);
    w.WriteU64(dict.size());
    for (std::string_view s : dict) {
      w.WriteU64(s.size());
      w.WriteBytes(s);
    }
    for (std::string_view s : v) w.Write(index[s], width);
  } else {
    w.WriteBit(false);
    for (std::string_view s : v) {
      w.WriteU64(s.size());
      w.WriteBytes(s);
    }
  }
}

bool ReadString(BitReader& r, uint64_t* text_budget, std::string* out) {
  const uint64_t len = r.ReadU64();
  if (len > *text_budget) {
    r.Fail();
    return false;
  }
  *text_budget -= len;
  return r.ReadBytes(len, out);
}

bool ReadStrings(BitReader& r, uint64_t n, uint64_t* text_budget, std::vector<std::string>* out) {
  out->clear();
  if (r.ReadBit()) {
    const uint64_t d = r.ReadU64();
    // Each dictionary entry costs at least its 7-bit length.
    if (d > kMaxItems || d > r.bits_left() / 7 || (d == 0 && n > 0)) {
      r.Fail();
      return false;
    }
    std::vector<std::string> dict(d);
    for (auto& s : dict) {
      if (!ReadString(r, text_budget, &s)) return false;
    }
    const int width = d <= 1 ? 0 : BitWidth(d - 1);
    if (width > 0 && n > r.bits_left() / static_cast<uint64_t>(width)) {
      r.Fail();
      return false;
    }
    out->reserve(n);
    for (uint64_t i = 0; i < n; ++i) {
      const uint64_t idx = r.Read(width);
      if (idx >= d || dict[idx].size() > *text_budget) {
        r.Fail();
        return false;
      }
      *text_budget -= dict[idx].size();
      out->push_back(dict[idx]);
    }
    return r.ok();
  }
  if (n > r.bits_left() / 7) {
    r.Fail();
    return false;
  }
  out->resize(n);
  for (auto& s : *out) {
    if (!ReadString(r, text_budget, &s)) return false;
  }
  return r.ok();
}

// ---------------------------------------------------------------- typed values

// A column of values of one key type: doubles, one bit per boolean, or strings.
void WriteValues(BitWriter& w, KeyType type, const std::vector<const Value*>& v) {
  switch (type) {
    case KeyType::kNumeric:
    case KeyType::kCounter: {
      std::vector<double> d(v.size());
      for (size_t i = 0; i < v.size(); ++i) d[i] = std::get<double>(*v[i]);
      WriteDoubles(w, d);
      return;
    }
    case KeyType::kBoolean:
    case KeyType::kUptime:
      for (const Value* x : v) w.WriteBit(std::get<bool>(*x));
      return;
    case KeyType::kString: {
      std::vector<std::string_view> s(v.size());
      for (size_t i = 0; i < v.size(); ++i) s[i] = std::get<std::string>(*v[i]);
      WriteStrings(w, s);
      return;
    }
  }
}

// Calls set(i, value) for i in [0, n).
template <typename Set>
bool ReadValues(BitReader& r, KeyType type, uint64_t n, uint64_t* text_budget, Set set) {
  switch (type) {
    case KeyType::kNumeric:
    case KeyType::kCounter: {
      std::vector<double> d;
      if (!ReadDoubles(r, n, &d)) return false;
      for (uint64_t i = 0; i < n; ++i) set(i, Value(d[i]));
      return true;
    }
    case KeyType::kBoolean:
    case KeyType::kUptime:
      if (n > r.bits_left()) {
        r.Fail();
        return false;
      }
      for (uint64_t i = 0; i < n; ++i) set(i, Value(r.ReadBit()));
      return r.ok();
    case KeyType::kString: {
      std::vector<std::string> s;
      if (!ReadStrings(r, n, text_budget, &s)) return false;
      for (uint64_t i = 0; i < n; ++i) set(i, Value(std::move(s[i])));
      return true;
    }
  }
  r.Fail();
  return false;
}

bool ReadCount(BitReader& r, uint64_t* n) {
  *n = r.ReadU64();
  if (*n > kMaxItems) r.Fail();
  return r.ok();
}

// Optional values (a rollup's first and last): '1' when all are present, else
// '0' + one presence bit each; then the present values as a column.
void WriteOptionalValues(BitWriter& w, KeyType type,
                         const std::vector<const std::optional<Value>*>& v) {
  std::vector<const Value*> present;
  for (const auto* o : v) {
    if (o->has_value()) present.push_back(&**o);
  }
  if (present.size() == v.size()) {
    w.WriteBit(true);
  } else {
    w.WriteBit(false);
    for (const auto* o : v) w.WriteBit(o->has_value());
  }
  WriteValues(w, type, present);
}

template <typename Get>
bool ReadOptionalValues(BitReader& r, KeyType type, uint64_t n, uint64_t* text_budget, Get get) {
  std::vector<uint64_t> where;
  where.reserve(n);
  if (r.ReadBit()) {
    for (uint64_t i = 0; i < n; ++i) where.push_back(i);
  } else {
    if (n > r.bits_left()) {
      r.Fail();
      return false;
    }
    for (uint64_t i = 0; i < n; ++i) {
      if (r.ReadBit()) where.push_back(i);
    }
  }
  return ReadValues(r, type, where.size(), text_budget,
                    [&](uint64_t i, Value&& value) { get(where[i]).emplace(std::move(value)); });
}

Status Checked(const BitReader& r, const char* what) {
  if (r.ok()) return Status::Ok();
  return Bad(std::string(what) + " does not decode");
}

}  // namespace

bool ValueMatchesType(KeyType type, const Value& value) {
  switch (type) {
    case KeyType::kNumeric:
    case KeyType::kCounter:
      return std::holds_alternative<double>(value);
    case KeyType::kBoolean:
    case KeyType::kUptime:
      return std::holds_alternative<bool>(value);
    case KeyType::kString:
      return std::holds_alternative<std::string>(value);
  }
  return false;
}

// ---------------------------------------------------------------- meta

std::string EncodeKeyMeta(const KeyRecord& m) {
  BitWriter w;
  w.WriteU64(m.name.size());
  w.WriteBytes(m.name);
  w.WriteU64(static_cast<uint64_t>(m.type));
  w.WriteU64((m.raw_dropped ? 1u : 0u) | (m.carry ? 2u : 0u));
  w.WriteU64(ZigZag(static_cast<uint64_t>(m.stale_after_ms)));
  w.Write(DoubleBits(m.reset_tolerance), 64);
  if (m.carry) {
    w.WriteU64(ZigZag(static_cast<uint64_t>(m.carry->time_ms)));
    WriteValues(w, m.type, {&m.carry->value});
  }
  w.WriteU64(m.changes);
  w.WriteU64(ZigZag(static_cast<uint64_t>(m.first_ms)));
  w.WriteU64(ZigZag(static_cast<uint64_t>(m.last_ms)));
  w.WriteU64(m.raw_bytes);
  w.WriteU64(m.rollup_bytes);
  w.WriteU64(m.resolutions.size());
  for (const auto& res : m.resolutions) {
    w.WriteU64(ZigZag(static_cast<uint64_t>(res.resolution_ms)));
    w.WriteU64(res.rollups);
  }
  return w.Finish();
}

Result<KeyRecord> DecodeKeyMeta(std::string_view payload) {
  BitReader r(payload);
  KeyRecord m;
  uint64_t name_budget = kMaxTextBytes;
  if (!ReadString(r, &name_budget, &m.name)) return Bad("key metadata: name");
  const uint64_t type = r.ReadU64();
  if (type > static_cast<uint64_t>(KeyType::kString)) return Bad("unknown key type");
  m.type = static_cast<KeyType>(type);
  const uint64_t flags = r.ReadU64();
  if (flags > 3) return Bad("unknown key flags");
  m.raw_dropped = (flags & 1) != 0;
  m.stale_after_ms = static_cast<int64_t>(UnZigZag(r.ReadU64()));
  m.reset_tolerance = BitsDouble(r.Read(64));
  if (flags & 2) {
    Sample carry;
    carry.time_ms = static_cast<int64_t>(UnZigZag(r.ReadU64()));
    uint64_t budget = kMaxTextBytes;
    if (!ReadValues(r, m.type, 1, &budget,
                    [&](uint64_t, Value&& v) { carry.value = std::move(v); })) {
      return Bad("key metadata: carry does not decode");
    }
    m.carry = std::move(carry);
  }
  m.changes = r.ReadU64();
  m.first_ms = static_cast<int64_t>(UnZigZag(r.ReadU64()));
  m.last_ms = static_cast<int64_t>(UnZigZag(r.ReadU64()));
  m.raw_bytes = r.ReadU64();
  m.rollup_bytes = r.ReadU64();
  const uint64_t nres = r.ReadU64();
  if (nres > 16) return Bad("key metadata: more than 16 resolutions");
  for (uint64_t i = 0; i < nres; ++i) {
    KeyRecord::Resolution res;
    res.resolution_ms = static_cast<int64_t>(UnZigZag(r.ReadU64()));
    res.rollups = r.ReadU64();
    m.resolutions.push_back(res);
  }
  KOMOKU_RETURN_IF_ERROR(Checked(r, "key metadata"));
  return m;
}

// ---------------------------------------------------------------- raw blocks

// n U64 · times (series) · values (column of the key's type)
std::string EncodeRawBlock(KeyType type, const Sample* samples, size_t n) {
  BitWriter w;
  w.WriteU64(n);
  std::vector<uint64_t> times(n);
  std::vector<const Value*> values(n);
  for (size_t i = 0; i < n; ++i) {
    times[i] = static_cast<uint64_t>(samples[i].time_ms);
    values[i] = &samples[i].value;
  }
  WriteSeries(w, times);
  WriteValues(w, type, values);
  return w.Finish();
}

Status DecodeRawBlock(KeyType type, std::string_view payload, std::vector<Sample>* out) {
  BitReader r(payload);
  uint64_t n;
  if (!ReadCount(r, &n)) return Bad("raw block: sample count");
  std::vector<uint64_t> times;
  if (!ReadSeries(r, n, &times)) return Bad("raw block: times do not decode");
  const size_t base = out->size();
  out->resize(base + n);
  Sample* s = out->data() + base;
  for (uint64_t i = 0; i < n; ++i) s[i].time_ms = static_cast<int64_t>(times[i]);
  uint64_t budget = kMaxTextBytes;
  if (!ReadValues(r, type, n, &budget, [&](uint64_t i, Value&& v) { s[i].value = std::move(v); })) {
    out->resize(base);
    return Bad("raw block: values do not decode");
  }
  return Status::Ok();
}

// ---------------------------------------------------------------- rollup blocks

// n U64 · start_ms, count, changes (series) · first, last (optional values) ·
// sum, min, max, integral, increase, high (doubles) · known_ms, unknown_ms
// (series) · ms_per_value: entries per rollup (series), texts (strings), ms
// (series) · since format 2: first_ms - start_ms + 1, 0 for none (series),
// shared_times 0/1 (series)
std::string EncodeRollupBlock(KeyType type, const Rollup* rollups, size_t n) {
  BitWriter w;
  w.WriteU64(n);
  auto ints = [&](auto field) {
    std::vector<uint64_t> x(n);
    for (size_t i = 0; i < n; ++i) x[i] = static_cast<uint64_t>(field(rollups[i]));
    WriteSeries(w, x);
  };
  auto doubles = [&](auto field) {
    std::vector<double> x(n);
    for (size_t i = 0; i < n; ++i) x[i] = field(rollups[i]);
    WriteDoubles(w, x);
  };
  ints([](const Rollup& r) { return r.start_ms; });
  ints([](const Rollup& r) { return r.count; });
  ints([](const Rollup& r) { return r.changes; });
  std::vector<const std::optional<Value>*> opt(n);
  for (size_t i = 0; i < n; ++i) opt[i] = &rollups[i].first;
  WriteOptionalValues(w, type, opt);
  for (size_t i = 0; i < n; ++i) opt[i] = &rollups[i].last;
  WriteOptionalValues(w, type, opt);
  doubles([](const Rollup& r) { return r.sum; });
  doubles([](const Rollup& r) { return r.min; });
  doubles([](const Rollup& r) { return r.max; });
  doubles([](const Rollup& r) { return r.integral; });
  doubles([](const Rollup& r) { return r.increase; });
  doubles([](const Rollup& r) { return r.high; });
  ints([](const Rollup& r) { return r.known_ms; });
  ints([](const Rollup& r) { return r.unknown_ms; });
  ints([](const Rollup& r) { return r.ms_per_value.size(); });
  std::vector<std::string_view> texts;
  std::vector<uint64_t> ms;
  for (size_t i = 0; i < n; ++i) {
    for (const auto& [text, m] : rollups[i].ms_per_value) {
      texts.push_back(text);
      ms.push_back(static_cast<uint64_t>(m));
    }
  }
  WriteStrings(w, texts);
  WriteSeries(w, ms);
  ints([](const Rollup& r) { return r.first_ms ? *r.first_ms - r.start_ms + 1 : 0; });
  ints([](const Rollup& r) { return r.shared_times ? 1 : 0; });
  return w.Finish();
}

Status RollupColumns::Decode(KeyType type, std::string_view payload, uint32_t version) {
  n_ = 0;
  BitReader r(payload);
  uint64_t n;
  if (!ReadCount(r, &n) || n > kMaxRollups) return Bad("rollup block: count");
  uint64_t budget = kMaxTextBytes;
  first_.assign(n, std::nullopt);
  last_.assign(n, std::nullopt);
  const bool ok =
      ReadSeries(r, n, &start_) && ReadSeries(r, n, &count_) && ReadSeries(r, n, &changes_) &&
      ReadOptionalValues(r, type, n, &budget,
                         [&](uint64_t i) -> std::optional<Value>& { return first_[i]; }) &&
      ReadOptionalValues(r, type, n, &budget,
                         [&](uint64_t i) -> std::optional<Value>& { return last_[i]; }) &&
      ReadDoubles(r, n, &sum_) && ReadDoubles(r, n, &min_) && ReadDoubles(r, n, &max_) &&
      ReadDoubles(r, n, &integral_) && ReadDoubles(r, n, &increase_) && ReadDoubles(r, n, &high_) &&
      ReadSeries(r, n, &known_) && ReadSeries(r, n, &unknown_);
  if (!ok) return Bad("rollup block: a column does not decode");
  if (!ReadSeries(r, n, &entries_)) return Bad("rollup block: ms_per_value counts");
  uint64_t m = 0;
  for (uint64_t e : entries_) {
    if (e > kMaxItems || (m += e) > kMaxItems)
      return Bad("rollup block: too many ms_per_value entries");
  }
  if (!ReadStrings(r, m, &budget, &texts_) || !ReadSeries(r, m, &ms_)) {
    return Bad("rollup block: ms_per_value does not decode");
  }
  if (version >= 2) {
    if (!ReadSeries(r, n, &first_offset_) || !ReadSeries(r, n, &shared_)) {
      return Bad("rollup block: first_ms or shared_times does not decode");
    }
    // A first change lies inside its bucket (no bucket is longer than a
    // day), and only a bucket with changes has one.
    for (uint64_t i = 0; i < n; ++i) {
      const auto o = static_cast<int64_t>(first_offset_[i]);
      if (o != 0 && (o < 1 || o > kMaxRollupOffsetMs || count_[i] == 0)) {
        return Bad("rollup block: a first change's time outside its bucket");
      }
    }
  } else {
    first_offset_.assign(n, kUnknownFirst);
    shared_.assign(n, 0);
  }
  Status st = Checked(r, "rollup block");
  if (!st.ok()) return st;
  // Where each rollup's ms_per_value entries begin.
  entry_begin_.resize(n + 1);
  entry_begin_[0] = 0;
  for (uint64_t i = 0; i < n; ++i) entry_begin_[i + 1] = entry_begin_[i] + entries_[i];
  n_ = n;
  return Status::Ok();
}

void RollupColumns::Take(size_t i, Rollup* out) {
  Rollup& o = *out;
  o.start_ms = static_cast<int64_t>(start_[i]);
  o.count = static_cast<int64_t>(count_[i]);
  o.changes = static_cast<int64_t>(changes_[i]);
  o.first = std::move(first_[i]);
  o.last = std::move(last_[i]);
  o.sum = sum_[i];
  o.min = min_[i];
  o.max = max_[i];
  o.integral = integral_[i];
  o.increase = increase_[i];
  o.high = high_[i];
  o.known_ms = static_cast<int64_t>(known_[i]);
  o.unknown_ms = static_cast<int64_t>(unknown_[i]);
  o.ms_per_value.clear();
  o.ms_per_value.reserve(entries_[i]);
  for (uint64_t j = entry_begin_[i]; j < entry_begin_[i + 1]; ++j) {
    o.ms_per_value.emplace_back(std::move(texts_[j]), static_cast<int64_t>(ms_[j]));
  }
  const uint64_t offset = first_offset_[i];
  if (offset == 0 || offset == kUnknownFirst) {
    o.first_ms.reset();
  } else {
    o.first_ms = o.start_ms + static_cast<int64_t>(offset) - 1;
  }
  o.shared_times = shared_[i] != 0;
}

Status DecodeRollupBlock(KeyType type, std::string_view payload, uint32_t version,
                         std::vector<Rollup>* out) {
  RollupColumns columns;
  KOMOKU_RETURN_IF_ERROR(columns.Decode(type, payload, version));
  const size_t base = out->size();
  out->resize(base + columns.size());
  for (size_t i = 0; i < columns.size(); ++i) columns.Take(i, &(*out)[base + i]);
  return Status::Ok();
}

}  // namespace komoku::store::segment_internal
