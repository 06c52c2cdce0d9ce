// UTC civil time by integer arithmetic (proleptic Gregorian calendar), right
// on every platform: time_t is 32 bits on armhf (Debian 12), where gmtime_r
// wraps after 2038-01-19T03:14:07Z.
#pragma once

#include <cstdint>
#include <string>

namespace komoku::store {

// Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar
// (Howard Hinnant's days_from_civil).
int64_t DaysFromCivil(int64_t y, unsigned m, unsigned d);

// The inverse (Howard Hinnant's civil_from_days): y-m-d of a day count.
void CivilFromDays(int64_t z, int64_t* y, unsigned* m, unsigned* d);

// A time in ms as UTC text through strftime's `format` (whole seconds; the
// second holding `ms`, also before 1970).
std::string FormatUtc(int64_t ms, const char* format);

}  // namespace komoku::store
