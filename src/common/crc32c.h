// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78): the checksum of
// segment blocks and headers (docs/segment-format.md) and of ingest log
// records. Computed by the CPU's own instruction where it has one (SSE 4.2
// on x86-64, the CRC32 extension of ARMv8 on arm64, found at run time),
// else from tables, eight bytes at a step; both give the same value.
#pragma once

#include <cstddef>
#include <cstdint>

namespace komoku {

// The CRC of `size` bytes at `data`, continuing from `crc` (the CRC of the
// bytes before them; 0 to start): Crc32c(b, n, Crc32c(a, m)) is the CRC of
// a's m bytes followed by b's n.
uint32_t Crc32c(const void* data, size_t size, uint32_t crc = 0);

namespace crc32c_internal {
// True when Crc32c uses the CPU's instruction.
bool InHardware();
// The table way, whatever the CPU: what tests and the benchmark compare with.
uint32_t Portable(const void* data, size_t size, uint32_t crc);
}  // namespace crc32c_internal

}  // namespace komoku
