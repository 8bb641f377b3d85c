# The control-plane messages (proto/seldon_control.proto) as protobuf-c code,
# shared by seldon-scheduler, seldon-agent, seldon-router and the seldon CLI.
# Included from daemons/CMakeLists.txt, so CMAKE_CURRENT_SOURCE_DIR is daemons/.
set(SELDON_CONTROL_PB_OUT ${CMAKE_CURRENT_BINARY_DIR}/control_pb)
file(MAKE_DIRECTORY ${SELDON_CONTROL_PB_OUT})
add_custom_command(
  OUTPUT ${SELDON_CONTROL_PB_OUT}/seldon_control.pb-c.c ${SELDON_CONTROL_PB_OUT}/seldon_control.pb-c.h
  COMMAND ${PROTOC_C} --c_out=${SELDON_CONTROL_PB_OUT} -I${PROJECT_SOURCE_DIR}/proto
          ${PROJECT_SOURCE_DIR}/proto/seldon_control.proto
  DEPENDS ${PROJECT_SOURCE_DIR}/proto/seldon_control.proto
  COMMENT "protoc-c seldon_control.proto")
# The inference messages too, for daemons that speak the repository extension
# (the agent calls RepositoryModelLoad) without reaching into the library.
add_custom_command(
  OUTPUT ${SELDON_CONTROL_PB_OUT}/grpc_predict_v2.pb-c.c ${SELDON_CONTROL_PB_OUT}/grpc_predict_v2.pb-c.h
  COMMAND ${PROTOC_C} --c_out=${SELDON_CONTROL_PB_OUT} -I${PROJECT_SOURCE_DIR}/proto
          ${PROJECT_SOURCE_DIR}/proto/grpc_predict_v2.proto
  DEPENDS ${PROJECT_SOURCE_DIR}/proto/grpc_predict_v2.proto
  COMMENT "protoc-c grpc_predict_v2.proto (daemons)")
# Generated code is kept apart so our warning flags do not apply to it. The
# symbols are hidden so they never clash with the library's own copy.
add_library(seldon_control_pb STATIC
  ${SELDON_CONTROL_PB_OUT}/seldon_control.pb-c.c
  ${SELDON_CONTROL_PB_OUT}/grpc_predict_v2.pb-c.c)
target_include_directories(seldon_control_pb PUBLIC ${SELDON_CONTROL_PB_OUT} ${PROTOBUF_C_INCLUDE_DIRS})
target_link_libraries(seldon_control_pb PUBLIC protobuf-c)
set_target_properties(seldon_control_pb PROPERTIES C_VISIBILITY_PRESET hidden POSITION_INDEPENDENT_CODE ON)
