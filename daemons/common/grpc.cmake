# gRPC server transport: gRPC core's C API, bytes in and bytes out.
pkg_check_modules(GRPC REQUIRED IMPORTED_TARGET grpc)

file(GLOB SELDON_GRPC_SOURCES CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/common/grpc_*.c)
add_library(seldon_grpc STATIC ${SELDON_GRPC_SOURCES})
target_include_directories(seldon_grpc PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/common)
# Daemons see the public API alone (sdd.h wraps the core services it offers).
target_link_libraries(seldon_grpc PUBLIC seldon_static PkgConfig::GRPC pthread)
target_compile_options(seldon_grpc PRIVATE ${SELDON_WARNINGS})
target_compile_definitions(seldon_grpc PRIVATE _GNU_SOURCE)
