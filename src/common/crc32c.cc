#include "common/crc32c.h"

#include <cstring>

#if defined(__x86_64__)
#include <nmmintrin.h>
#elif defined(__aarch64__)
#include <arm_acle.h>
#include <asm/hwcap.h>
#include <sys/auxv.h>
#endif

namespace komoku {
namespace {

// Eight tables of 256: t[0] is the CRC of one byte, t[s] of that byte
// followed by s zero bytes, so that eight bytes take one step.
struct Tables {
  uint32_t t[8][256];
  Tables() {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int j = 0; j < 8; ++j) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1)));
      t[0][i] = c;
    }
    for (int s = 1; s < 8; ++s) {
      for (uint32_t i = 0; i < 256; ++i) t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xFF];
    }
  }
};

const Tables& TheTables() {
  static const Tables tables;
  return tables;
}

// The steps below read eight bytes as a little-endian word.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "CRC steps load little-endian words");

uint64_t Load64(const unsigned char* p) {
  uint64_t w;
  std::memcpy(&w, p, 8);
  return w;
}

uint32_t TableSteps(const unsigned char* p, size_t size, uint32_t crc) {
  const auto& t = TheTables().t;
  while (size >= 8) {
    const uint64_t w = Load64(p) ^ crc;
    crc = t[7][w & 0xFF] ^ t[6][(w >> 8) & 0xFF] ^ t[5][(w >> 16) & 0xFF] ^ t[4][(w >> 24) & 0xFF] ^
          t[3][(w >> 32) & 0xFF] ^ t[2][(w >> 40) & 0xFF] ^ t[1][(w >> 48) & 0xFF] ^ t[0][w >> 56];
    p += 8;
    size -= 8;
  }
  while (size-- > 0) crc = (crc >> 8) ^ t[0][(crc ^ *p++) & 0xFF];
  return crc;
}

#if defined(__x86_64__)

__attribute__((target("sse4.2"))) uint32_t HardwareSteps(const unsigned char* p, size_t size,
                                                         uint32_t crc) {
  uint64_t c = crc;
  for (; size >= 8; p += 8, size -= 8) c = _mm_crc32_u64(c, Load64(p));
  auto c32 = static_cast<uint32_t>(c);
  while (size-- > 0) c32 = _mm_crc32_u8(c32, *p++);
  return c32;
}

bool CpuHasIt() { return __builtin_cpu_supports("sse4.2") != 0; }

#elif defined(__aarch64__)

__attribute__((target("+crc"))) uint32_t HardwareSteps(const unsigned char* p, size_t size,
                                                       uint32_t crc) {
  for (; size >= 8; p += 8, size -= 8) crc = __crc32cd(crc, Load64(p));
  while (size-- > 0) crc = __crc32cb(crc, *p++);
  return crc;
}

bool CpuHasIt() { return (getauxval(AT_HWCAP) & HWCAP_CRC32) != 0; }

#else

uint32_t HardwareSteps(const unsigned char* p, size_t size, uint32_t crc) {
  return TableSteps(p, size, crc);
}

bool CpuHasIt() { return false; }

#endif

using Steps = uint32_t (*)(const unsigned char*, size_t, uint32_t);

Steps Chosen() {
  static const Steps steps = CpuHasIt() ? HardwareSteps : TableSteps;
  return steps;
}

}  // namespace

uint32_t Crc32c(const void* data, size_t size, uint32_t crc) {
  return ~Chosen()(static_cast<const unsigned char*>(data), size, ~crc);
}

namespace crc32c_internal {

bool InHardware() { return Chosen() != TableSteps; }

uint32_t Portable(const void* data, size_t size, uint32_t crc) {
  return ~TableSteps(static_cast<const unsigned char*>(data), size, ~crc);
}

}  // namespace crc32c_internal
}  // namespace komoku
