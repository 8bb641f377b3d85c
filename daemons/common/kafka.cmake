# Kafka client glue (librdkafka) on libuv loops: producers, consumers, the
# --kafka-* flags. Included from daemons/CMakeLists.txt (CMAKE_CURRENT_SOURCE_DIR is daemons/).
pkg_check_modules(RDKAFKA IMPORTED_TARGET rdkafka)
if(RDKAFKA_FOUND)
  add_library(seldon_kafka STATIC ${CMAKE_CURRENT_SOURCE_DIR}/common/kafka.c)
  target_include_directories(seldon_kafka PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/common)
  target_compile_options(seldon_kafka PRIVATE ${SELDON_WARNINGS})
  target_compile_definitions(seldon_kafka PRIVATE _GNU_SOURCE)
  target_link_libraries(seldon_kafka PUBLIC seldon_static uv PkgConfig::RDKAFKA)
else()
  message(WARNING "librdkafka not found (apt-get install librdkafka-dev): no Kafka daemons")
endif()
