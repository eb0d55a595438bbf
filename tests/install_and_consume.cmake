# ctest -P script: install the build tree into WORK_DIR/prefix, then build and run
# examples/consumer as an outside project would (find_package(parallax)).
file(REMOVE_RECURSE "${WORK_DIR}")
execute_process(COMMAND ${CMAKE_COMMAND} --install "${BUILD_DIR}" --prefix "${WORK_DIR}/prefix"
                RESULT_VARIABLE result)
if(result)
  message(FATAL_ERROR "install failed (${result})")
endif()
find_program(CCACHE ccache)
set(launcher "")
if(CCACHE)
  set(launcher "-DCMAKE_CXX_COMPILER_LAUNCHER=${CCACHE}")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} -S "${SOURCE_DIR}/examples/consumer" -B "${WORK_DIR}/build"
                        -G "${GENERATOR}" -DCMAKE_BUILD_TYPE=Release ${launcher}
                        "-DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix;${PREFIX_PATH}"
                RESULT_VARIABLE result)
if(result)
  message(FATAL_ERROR "configuring the consumer failed (${result})")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} --build "${WORK_DIR}/build" RESULT_VARIABLE result)
if(result)
  message(FATAL_ERROR "building the consumer failed (${result})")
endif()
execute_process(COMMAND "${WORK_DIR}/build/consumer" RESULT_VARIABLE result)
if(result)
  message(FATAL_ERROR "the consumer failed (${result})")
endif()
file(REMOVE_RECURSE "${WORK_DIR}")
