# The HTTP/1.1 server transport (libuv + http-parser) and the caller-owned event
# loops (loops.c), shared by the daemons.
# Included from daemons/CMakeLists.txt, so CMAKE_CURRENT_SOURCE_DIR is daemons/.
add_library(seldon_http STATIC
  ${CMAKE_CURRENT_SOURCE_DIR}/common/http_server.c
  ${CMAKE_CURRENT_SOURCE_DIR}/common/http_conn.c
  ${CMAKE_CURRENT_SOURCE_DIR}/common/http_stream.c
  ${CMAKE_CURRENT_SOURCE_DIR}/common/loops.c)
target_include_directories(seldon_http
  PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/common)
target_compile_options(seldon_http PRIVATE ${SELDON_WARNINGS})
# SO_REUSEPORT and friends are outside strict C11.
target_compile_definitions(seldon_http PRIVATE _GNU_SOURCE)
target_link_libraries(seldon_http PUBLIC seldon_static uv http_parser pthread)
