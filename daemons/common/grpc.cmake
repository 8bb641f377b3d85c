# gRPC server transport: gRPC core's C API, bytes in and bytes out.
pkg_check_modules(GRPC REQUIRED IMPORTED_TARGET grpc)

file(GLOB SELDON_GRPC_SOURCES CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/common/grpc_*.c)
add_library(seldon_grpc STATIC ${SELDON_GRPC_SOURCES})
target_include_directories(seldon_grpc PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/common)
# seldon_internal adds the sdn_* headers (errors, allocator, logging) to seldon_static.
target_link_libraries(seldon_grpc PUBLIC seldon_static PkgConfig::GRPC pthread
                      PRIVATE seldon_internal)
target_compile_options(seldon_grpc PRIVATE ${SELDON_WARNINGS})
target_compile_definitions(seldon_grpc PRIVATE _GNU_SOURCE)
