# The HTTP/1.1 wire layer and client (libuv + http-parser) on loops the caller owns.
# Included from daemons/CMakeLists.txt, so CMAKE_CURRENT_SOURCE_DIR is daemons/.
add_library(seldon_http_client STATIC
  ${CMAKE_CURRENT_SOURCE_DIR}/common/http_wire.c
  ${CMAKE_CURRENT_SOURCE_DIR}/common/http_client.c)
target_include_directories(seldon_http_client
  PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/common)
target_compile_options(seldon_http_client PRIVATE ${SELDON_WARNINGS})
# sigaction is POSIX, outside strict C11.
target_compile_definitions(seldon_http_client PRIVATE _GNU_SOURCE)
target_link_libraries(seldon_http_client PUBLIC seldon_static uv http_parser)
