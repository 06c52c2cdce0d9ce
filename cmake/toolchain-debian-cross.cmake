# Cross-compiling Komoku for another Debian architecture on an x86-64 Debian
# machine, with Debian's cross compilers and a sysroot of the target's Debian
# packages unpacked with `dpkg -x` (scripts/cross-check.sh makes both). The
# tests run through qemu user-mode emulation (CMAKE_CROSSCOMPILING_EMULATOR),
# which ctest and gtest_discover_tests use by themselves; the integration
# tests start komoku through a script that calls it (integration/CMakeLists.txt).
#
#   cmake -S . -B build-armhf -DCMAKE_TOOLCHAIN_FILE=cmake/toolchain-debian-cross.cmake \
#         -DKOMOKU_CROSS_ARCH=armhf -DKOMOKU_SYSROOT=/var/cache/komoku-cross/armhf/sysroot
#
# KOMOKU_CROSS_ARCH: armhf or arm64 (Debian names).
# KOMOKU_SYSROOT: the unpacked target packages (usr/lib/<triplet>, usr/include, ...).

# The toolchain file is read again for every try_compile project; these carry
# the two settings there.
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES KOMOKU_CROSS_ARCH KOMOKU_SYSROOT)

if(KOMOKU_CROSS_ARCH STREQUAL "armhf")
  set(_triplet arm-linux-gnueabihf)
  set(CMAKE_SYSTEM_PROCESSOR arm)
  set(_qemu qemu-arm-static)
  # GCC notes at every std::vector<T>::iterator passed by value that the ARM
  # ABI for it changed in GCC 7.1: nothing here links code that old.
  string(APPEND CMAKE_CXX_FLAGS_INIT " -Wno-psabi")
elseif(KOMOKU_CROSS_ARCH STREQUAL "arm64")
  set(_triplet aarch64-linux-gnu)
  set(CMAKE_SYSTEM_PROCESSOR aarch64)
  set(_qemu qemu-aarch64-static)
else()
  message(FATAL_ERROR "KOMOKU_CROSS_ARCH must be armhf or arm64, not '${KOMOKU_CROSS_ARCH}'")
endif()
if(NOT IS_DIRECTORY "${KOMOKU_SYSROOT}/usr/lib/${_triplet}")
  message(FATAL_ERROR "KOMOKU_SYSROOT '${KOMOKU_SYSROOT}' has no usr/lib/${_triplet} "
                      "(make it with scripts/cross-check.sh ${KOMOKU_CROSS_ARCH})")
endif()

set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_C_COMPILER ${_triplet}-gcc)
set(CMAKE_CXX_COMPILER ${_triplet}-g++)
set(CMAKE_LIBRARY_ARCHITECTURE ${_triplet})
set(CMAKE_SYSROOT "${KOMOKU_SYSROOT}")

# Libraries, headers and CMake packages from the sysroot only; programs
# (pkg-config, the emulator) from the build machine.
set(CMAKE_FIND_ROOT_PATH "${KOMOKU_SYSROOT}")
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

set(ENV{PKG_CONFIG_DIR} "")
set(ENV{PKG_CONFIG_LIBDIR}
    "${KOMOKU_SYSROOT}/usr/lib/${_triplet}/pkgconfig:${KOMOKU_SYSROOT}/usr/share/pkgconfig")
set(ENV{PKG_CONFIG_SYSROOT_DIR} "${KOMOKU_SYSROOT}")

# The sysroot's shared libraries need each other at link time.
set(CMAKE_EXE_LINKER_FLAGS_INIT
    "-Wl,-rpath-link,${KOMOKU_SYSROOT}/usr/lib/${_triplet}:${KOMOKU_SYSROOT}/lib/${_triplet}")

set(CMAKE_CROSSCOMPILING_EMULATOR ${_qemu} -L "${KOMOKU_SYSROOT}")
