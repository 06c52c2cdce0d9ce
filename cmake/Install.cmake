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

install(TARGETS komoku RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
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
set(CPACK_PACKAGE_CONTACT "Komoku maintainers <komoku@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "home-automation history over MQTT, with HTTP queries")
set(CPACK_PACKAGE_DESCRIPTION
    "Komoku maps MQTT topics to typed keys, records every change in a SQLite hot store, publishes state back to MQTT and answers history over HTTP. Runs as a hardened systemd service; nothing is enabled at install.")
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
include(CPack)
