# Runs at install time (see Install.cmake). CMAKE_INSTALL_PREFIX is the real
# prefix here (without DESTDIR); file(INSTALL) adds DESTDIR itself.

# The unit, its paths made to match this prefix.
file(READ "${KOMOKU_UNIT_SOURCE}" _unit)
string(REPLACE "/usr/bin/komoku" "${CMAKE_INSTALL_PREFIX}/${KOMOKU_BINDIR}/komoku"
       _unit "${_unit}")
string(REPLACE "/usr/share/doc/komoku" "${CMAKE_INSTALL_PREFIX}/${KOMOKU_DOCDIR}"
       _unit "${_unit}")
string(REPLACE "/etc/komoku" "${KOMOKU_CONFIG_DIR}" _unit "${_unit}")
# A directory per install: `make deb` and the package test may run at once.
string(RANDOM LENGTH 12 _tag)
set(_staged "${KOMOKU_STAGING_DIR}/unit-${_tag}/komoku.service")
file(WRITE "${_staged}" "${_unit}")
file(INSTALL DESTINATION "${CMAKE_INSTALL_PREFIX}/${KOMOKU_SYSTEMD_UNITDIR}" TYPE FILE
     PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ
     FILES "${_staged}")
file(REMOVE_RECURSE "${KOMOKU_STAGING_DIR}/unit-${_tag}")

# The config: an edited one is never overwritten.
set(_config "$ENV{DESTDIR}${KOMOKU_CONFIG_DIR}/komoku.yaml")
if(EXISTS "${_config}")
  message(STATUS "Keeping: ${_config} (exists; the example is in the docs)")
else()
  file(INSTALL DESTINATION "${KOMOKU_CONFIG_DIR}" TYPE FILE
       PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ
       FILES "${KOMOKU_CONFIG_SOURCE}")
endif()
