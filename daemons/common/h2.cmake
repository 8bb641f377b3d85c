# HTTP/2 cleartext (h2c) server and client on libuv loops, through libnghttp2.
# Included from daemons/CMakeLists.txt, so CMAKE_CURRENT_SOURCE_DIR is daemons/.
pkg_check_modules(NGHTTP2 REQUIRED IMPORTED_TARGET libnghttp2)
add_library(seldon_h2 STATIC
  ${CMAKE_CURRENT_SOURCE_DIR}/common/h2_conn.c
  ${CMAKE_CURRENT_SOURCE_DIR}/common/h2_server.c
  ${CMAKE_CURRENT_SOURCE_DIR}/common/h2_client.c
  ${CMAKE_CURRENT_SOURCE_DIR}/common/h2_grpc.c)
target_include_directories(seldon_h2 PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/common)
target_compile_options(seldon_h2 PRIVATE ${SELDON_WARNINGS})
target_compile_definitions(seldon_h2 PRIVATE _GNU_SOURCE)
target_link_libraries(seldon_h2 PUBLIC seldon_static uv PkgConfig::NGHTTP2)
