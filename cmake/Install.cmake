# Install rules (`make install`, DESTDIR honoured) and the Debian package
# (`make deb`, CPack). Layout:
#   <prefix>/bin/komoku
#   <prefix>/lib/systemd/system/komoku.service  (ExecStart pointing at <prefix>/bin)
#   /etc/komoku/komoku.yaml                     (the example, store.data_dir set to
#                                                /var/lib/komoku; never overwritten)
#   <prefix>/share/doc/komoku/                  (README and docs/)
include(GNUInstallDirs)

# `make install` / cpack install what was built and do not build first
# (`make install` and `make deb` in the Makefile build before); so the
# package test can run cpack on the built tree without rebuilding.
set(CMAKE_SKIP_INSTALL_ALL_DEPENDENCY ON)

set(KOMOKU_SYSTEMD_UNITDIR "lib/systemd/system" CACHE STRING
    "Where the unit goes, relative to the install prefix")
set(KOMOKU_CONFIG_DIR "/etc/komoku" CACHE PATH "Where komoku.yaml goes (absolute)")
set(KOMOKU_STATE_DIR "/var/lib/komoku" CACHE PATH
    "store.data_dir in the installed config (the unit's StateDirectory)")

# The installed config is the generated example (config/komoku.yaml, from
# `komoku config-example`) with the data directory the unit provides.
set(_example "${PROJECT_SOURCE_DIR}/config/komoku.yaml")
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS "${_example}")
file(READ "${_example}" _config)
set(_default_line "  #data_dir: ./komoku-data\n")
string(FIND "${_config}" "${_default_line}" _at)
if(_at EQUAL -1)
  message(WARNING "config/komoku.yaml has no '#data_dir: ./komoku-data' line; "
                  "the installed config keeps the built-in data directory")
endif()
string(REPLACE "${_default_line}"
       "  # Set by the package: the unit's StateDirectory.\n  data_dir: ${KOMOKU_STATE_DIR}\n"
       _config "${_config}")
file(CONFIGURE OUTPUT "${PROJECT_BINARY_DIR}/packaging/komoku.yaml" CONTENT "${_config}")

# The newest entry of packaging/deb/changelog gives the Debian revision, the
# maintainer and the date of the manual page; its upstream version must be
# the project's.
set(_changelog "${PROJECT_SOURCE_DIR}/packaging/deb/changelog")
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS "${_changelog}")
file(STRINGS "${_changelog}" _entry_line LIMIT_COUNT 1)
file(STRINGS "${_changelog}" _trailer REGEX "^ -- " LIMIT_COUNT 1)
if(NOT _entry_line MATCHES "^komoku \\(([^)]+)-([^)-]+)\\) ")
  message(FATAL_ERROR "${_changelog}: the first line is not 'komoku (VERSION-REVISION) ...'")
endif()
if(NOT CMAKE_MATCH_1 STREQUAL PROJECT_VERSION)
  message(FATAL_ERROR "${_changelog}: the newest entry is for ${CMAKE_MATCH_1}, the project is "
                      "${PROJECT_VERSION}; add an entry (dch -v ${PROJECT_VERSION}-1)")
endif()
set(KOMOKU_DEB_REVISION "${CMAKE_MATCH_2}")
# A package built on Debian 12 depends on 12's library packages (libfmt9,
# libyaml-cpp0.7, ...), one built on 13 on 13's (libfmt10, ...): the
# revision names the release it is for, as Debian's own stable updates do
# (0.1.0-1+deb12, 0.1.0-1+deb13; +deb12 sorts before +deb13, so an upgrade
# of the system to 13 can take the newer package). The release is the build
# machine's (a cross build's sysroot comes from its apt sources); Raspberry
# Pi OS says ID=raspbian (32-bit) or debian. Elsewhere no suffix, unless
# KOMOKU_DEB_RELEASE_SUFFIX says one (empty: none).
if(NOT DEFINED KOMOKU_DEB_RELEASE_SUFFIX AND EXISTS /etc/os-release)
  file(STRINGS /etc/os-release _os_id REGEX "^ID=")
  file(STRINGS /etc/os-release _os_version REGEX "^VERSION_ID=")
  if(_os_id MATCHES "^ID=\"?(debian|raspbian)\"?$"
     AND _os_version MATCHES "^VERSION_ID=\"?([0-9]+)")
    set(KOMOKU_DEB_RELEASE_SUFFIX "+deb${CMAKE_MATCH_1}")
  endif()
endif()
set(KOMOKU_DEB_RELEASE_SUFFIX "${KOMOKU_DEB_RELEASE_SUFFIX}"
    CACHE STRING "Appended to the Debian revision (default: +debN on Debian N)")
if(NOT _trailer MATCHES "^ -- (.+ <[^>]+>)  [A-Z][a-z][a-z], ([0-9][0-9]) ([A-Z][a-z][a-z]) ([0-9]+) ")
  message(FATAL_ERROR "${_changelog}: no ' -- NAME <EMAIL>  DATE' line")
endif()
set(KOMOKU_MAINTAINER "${CMAKE_MATCH_1}")
set(_months Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec)
list(FIND _months "${CMAKE_MATCH_3}" _month)
math(EXPR _month "${_month} + 1")
if(_month LESS 10)
  set(_month "0${_month}")
endif()
set(KOMOKU_RELEASE_DATE "${CMAKE_MATCH_4}-${_month}-${CMAKE_MATCH_2}")

# komoku(1), from the binary's own --help and config-docs (through the
# emulator in a cross build); gzip -n keeps the page free of a timestamp.
set(_man "${PROJECT_BINARY_DIR}/packaging/komoku.1")
add_custom_command(
  OUTPUT "${_man}.gz"
  COMMAND sh "${PROJECT_SOURCE_DIR}/packaging/man/komoku-man.sh" -o "${_man}"
          "${PROJECT_VERSION}" "${KOMOKU_RELEASE_DATE}" ${CMAKE_CROSSCOMPILING_EMULATOR}
          "$<TARGET_FILE:komoku>"
  COMMAND gzip -9 -n -f "${_man}"
  DEPENDS komoku "${PROJECT_SOURCE_DIR}/packaging/man/komoku-man.sh"
  COMMENT "Generating komoku(1)"
  VERBATIM)
set(_changelog_gz "${PROJECT_BINARY_DIR}/packaging/changelog.Debian.gz")
add_custom_command(
  OUTPUT "${_changelog_gz}"
  COMMAND "${CMAKE_COMMAND}" -E copy "${_changelog}" "${PROJECT_BINARY_DIR}/packaging/changelog.Debian"
  COMMAND gzip -9 -n -f "${PROJECT_BINARY_DIR}/packaging/changelog.Debian"
  DEPENDS "${_changelog}"
  VERBATIM)
add_custom_target(komoku_package_files ALL DEPENDS "${_man}.gz" "${_changelog_gz}")

install(TARGETS komoku RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(FILES "${_man}.gz" DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
install(FILES "${_changelog_gz}" packaging/deb/copyright DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(FILES packaging/deb/lintian-overrides
        DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/lintian/overrides RENAME komoku)
install(FILES README.md DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(FILES config/komoku.yaml DESTINATION ${CMAKE_INSTALL_DOCDIR} RENAME komoku.yaml.example)
install(DIRECTORY docs/ DESTINATION ${CMAKE_INSTALL_DOCDIR}/docs FILES_MATCHING PATTERN "*.md")

# The unit and the config are installed by a script because both depend on
# where the install really goes (the prefix may change at install time:
# `cmake --install --prefix`, CPack), and the config must survive.
install(CODE "
  set(KOMOKU_UNIT_SOURCE \"${PROJECT_SOURCE_DIR}/systemd/komoku.service\")
  set(KOMOKU_STAGING_DIR \"${PROJECT_BINARY_DIR}/packaging\")
  set(KOMOKU_CONFIG_SOURCE \"${PROJECT_BINARY_DIR}/packaging/komoku.yaml\")
  set(KOMOKU_CONFIG_DIR \"${KOMOKU_CONFIG_DIR}\")
  set(KOMOKU_BINDIR \"${CMAKE_INSTALL_BINDIR}\")
  set(KOMOKU_DOCDIR \"${CMAKE_INSTALL_DOCDIR}\")
  set(KOMOKU_SYSTEMD_UNITDIR \"${KOMOKU_SYSTEMD_UNITDIR}\")
  include(\"${CMAKE_CURRENT_LIST_DIR}/InstallScript.cmake\")
")

# --- Debian package (`make deb`) ------------------------------------------
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME komoku)
set(CPACK_PACKAGE_VENDOR "Komoku")
set(CPACK_PACKAGE_CONTACT "${KOMOKU_MAINTAINER}")
set(CPACK_DEBIAN_PACKAGE_RELEASE "${KOMOKU_DEB_REVISION}${KOMOKU_DEB_RELEASE_SUFFIX}")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "home-automation history over MQTT, with HTTP queries")
# The extended description (CPack puts the summary before it and indents
# its lines as Debian wants).
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION "Komoku maps MQTT topics to typed keys (numeric, counter, boolean, uptime,
string), records every change in a SQLite hot store, compacts older history
into immutable segment files with rollups, publishes state back to MQTT and
answers history over HTTP, with a web page of charts.

It runs as a hardened systemd service; nothing is enabled at install.")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_INSTALL_PREFIX /usr)
# DESTDIR staging keeps the absolute /etc path inside the package and gives
# the install script the real prefix (/usr) for the unit's ExecStart.
set(CPACK_SET_DESTDIR ON)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION misc)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "https://example.invalid/komoku")
# Runtime libraries from dpkg-shlibdeps (Paho, SQLite, spdlog, fmt,
# yaml-cpp, libsystemd, libstdc++); systemd itself is what runs it.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "systemd")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "mosquitto, mosquitto-clients")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    "${PROJECT_SOURCE_DIR}/packaging/deb/conffiles"
    "${PROJECT_SOURCE_DIR}/packaging/deb/postinst"
    "${PROJECT_SOURCE_DIR}/packaging/deb/prerm"
    "${PROJECT_SOURCE_DIR}/packaging/deb/postrm")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
if(CMAKE_CROSSCOMPILING)
  # The Depends are read at cpack time from what the deb target computes.
  set(CPACK_PROJECT_CONFIG_FILE "${PROJECT_BINARY_DIR}/packaging/cpack-project.cmake")
  set(CPACK_DEBIAN_PACKAGE_ARCHITECTURE "${KOMOKU_CROSS_ARCH}")
  set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS OFF)
endif()
include(CPack)

# `cmake --build BUILD --target deb` (`make deb`): the package from only what
# it holds, the binary and the generated files, not the tests. A cross build
# (cmake/toolchain-debian-cross.cmake) names the target's architecture and
# takes its Depends from dpkg-shlibdeps run on the target's libraries
# (packaging/deb/cross-depends.sh), read by cpack from a project config file.
set(_deb_steps)
if(CMAKE_CROSSCOMPILING)
  set(KOMOKU_CROSS_SHLIBS "" CACHE PATH
      "The target's library packages, one tree each (scripts/cross-check.sh makes them)")
  set(_cross_depends "${PROJECT_BINARY_DIR}/packaging/cross-depends.cmake")
  list(APPEND _deb_steps
    COMMAND sh "${PROJECT_SOURCE_DIR}/packaging/deb/cross-depends.sh" "${KOMOKU_CROSS_ARCH}"
            "${KOMOKU_CROSS_SHLIBS}" "$<TARGET_FILE:komoku>" "${CPACK_DEBIAN_PACKAGE_DEPENDS}"
            "${_cross_depends}")
  file(WRITE "${PROJECT_BINARY_DIR}/packaging/cpack-project.cmake"
       "include(\"${_cross_depends}\")\n")
endif()
add_custom_target(deb
  ${_deb_steps}
  COMMAND "${CMAKE_CPACK_COMMAND}" -G DEB --config "${PROJECT_BINARY_DIR}/CPackConfig.cmake"
  WORKING_DIRECTORY "${PROJECT_BINARY_DIR}"
  COMMENT "Building the Debian package"
  VERBATIM)
add_dependencies(deb komoku komoku_package_files)
