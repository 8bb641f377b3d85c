# seldon_kafka_suite(NAME TARGET...): registers the pytest run of the calling folder as the
# test integration_NAME (label "integration"), given each TARGET's path in the environment
# variable named after it (seldon-kafka-dev: SELDON_KAFKA_DEV), with the runtimes, proto/
# and kcat. Nothing is registered when a TARGET is not built; the test is disabled without
# kcat.
function(seldon_kafka_suite name)
  set(_env "")
  foreach(_t ${ARGN})
    if(NOT TARGET ${_t})
      return()
    endif()
    string(TOUPPER ${_t} _var)
    string(REPLACE "-" "_" _var ${_var})
    list(APPEND _env "${_var}=$<TARGET_FILE:${_t}>")
  endforeach()
  find_program(KCAT kcat)
  list(APPEND _env "SELDON_RUNTIME_PATH=${PROJECT_BINARY_DIR}/runtimes"
       "SELDON_PROTO_DIR=${PROJECT_SOURCE_DIR}/proto" "KCAT=${KCAT}"
       "PYTHONDONTWRITEBYTECODE=1" "OMP_NUM_THREADS=1")
  add_test(NAME integration_${name}
    COMMAND /usr/bin/python3 -m pytest -q -p no:cacheprovider ${CMAKE_CURRENT_SOURCE_DIR})
  set_tests_properties(integration_${name} PROPERTIES
    LABELS "integration"
    TIMEOUT 600
    ENVIRONMENT "${_env}")
  if(NOT KCAT)
    set_tests_properties(integration_${name} PROPERTIES DISABLED TRUE)
  endif()
endfunction()
