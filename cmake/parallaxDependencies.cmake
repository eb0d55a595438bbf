# Finds what parallax::parallax needs, for the build tree and for an installed package alike.
#
#   LibTorch 2.x (find_package(Torch)), range-v3 (config package or a plain header folder),
#   OpenCV (optional; only the image-folder headers use it).
#
# Sets PARALLAX_TORCH_HAS_CUDA / PARALLAX_TORCH_HAS_NCCL from what the found LibTorch was built with.

include_guard(GLOBAL)

# A CUDA LibTorch's config probes the local GPUs (try_run) to pick nvcc architectures, which fails
# on machines without one. parallax compiles no CUDA sources, so any list will do; name one.
if(NOT DEFINED TORCH_CUDA_ARCH_LIST AND NOT DEFINED ENV{TORCH_CUDA_ARCH_LIST})
  set(TORCH_CUDA_ARCH_LIST "8.0;9.0")
endif()
# Global imported targets, so that a project that add_subdirectory()s parallax sees them too.
set(CMAKE_FIND_PACKAGE_TARGETS_GLOBAL TRUE)
find_package(Torch 2.0 REQUIRED)

# range-v3: Debian ships a CMake package; a CUDA box without apt gets a copied header folder
# (PARALLAX_DEPS_DIR/include or CMAKE_PREFIX_PATH), so fall back to finding the header.
find_package(range-v3 QUIET CONFIG)
if(NOT TARGET range-v3::range-v3)
  find_path(PARALLAX_RANGE_V3_INCLUDE_DIR range/v3/all.hpp HINTS "${PARALLAX_DEPS_DIR}/include" REQUIRED)
  add_library(range-v3::range-v3 INTERFACE IMPORTED GLOBAL)
  set_target_properties(range-v3::range-v3 PROPERTIES INTERFACE_INCLUDE_DIRECTORIES
                                                      "${PARALLAX_RANGE_V3_INCLUDE_DIR}")
endif()
unset(CMAKE_FIND_PACKAGE_TARGETS_GLOBAL)

# The CUDA build of LibTorch exports torch_cuda, whose interface definitions carry USE_C10D_NCCL
# when c10d was built with NCCL. Reading them is more reliable than probing for headers (the NCCL
# headers are shipped in every build, with or without NCCL support).
set(PARALLAX_TORCH_HAS_CUDA OFF)
set(PARALLAX_TORCH_HAS_NCCL OFF)
if(TARGET torch_cuda)
  set(PARALLAX_TORCH_HAS_CUDA ON)
  get_target_property(_parallax_cuda_defs torch_cuda INTERFACE_COMPILE_DEFINITIONS)
  if(_parallax_cuda_defs MATCHES "USE_C10D_NCCL")
    set(PARALLAX_TORCH_HAS_NCCL ON)
  endif()
endif()

# Gloo: pip's LibTorch has c10d Gloo compiled in (USE_C10D_GLOO on torch_cpu) but ships no gloo
# headers, which ProcessGroupGloo.hpp includes. Debian's libgloo-dev (or a copy under
# PARALLAX_DEPS_DIR/include) provides them; only the headers are used, never its library. The
# versions differ, so check once (cached) that LibTorch's header compiles against these.
# MPI: only when LibTorch itself was built with it (USE_C10D_MPI).
set(PARALLAX_TORCH_HAS_GLOO OFF)
set(PARALLAX_TORCH_HAS_MPI OFF)
get_target_property(_parallax_cpu_defs torch_cpu INTERFACE_COMPILE_DEFINITIONS)
if(_parallax_cpu_defs MATCHES "USE_C10D_MPI")
  set(PARALLAX_TORCH_HAS_MPI ON)
endif()
if(_parallax_cpu_defs MATCHES "USE_C10D_GLOO")
  find_path(PARALLAX_GLOO_INCLUDE_DIR gloo/rendezvous/store.h HINTS "${PARALLAX_DEPS_DIR}/include")
  if(PARALLAX_GLOO_INCLUDE_DIR AND NOT DEFINED PARALLAX_GLOO_HEADERS_MATCH)
    message(STATUS "parallax: checking that LibTorch's ProcessGroupGloo.hpp compiles with "
                   "${PARALLAX_GLOO_INCLUDE_DIR}/gloo")
    set(_probe "${CMAKE_BINARY_DIR}/parallax_gloo_probe.cpp")
    file(WRITE "${_probe}" "#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>\n"
                           "auto parallax_probe = &c10d::ProcessGroupGloo::createDefaultDevice;\n")
    set(CMAKE_TRY_COMPILE_TARGET_TYPE STATIC_LIBRARY)
    try_compile(PARALLAX_GLOO_HEADERS_MATCH "${CMAKE_BINARY_DIR}/parallax_gloo_probe" "${_probe}"
                CMAKE_FLAGS "-DINCLUDE_DIRECTORIES=${TORCH_INCLUDE_DIRS};${PARALLAX_GLOO_INCLUDE_DIR}"
                COMPILE_DEFINITIONS -DUSE_C10D_GLOO -DUSE_DISTRIBUTED
                CXX_STANDARD 20 OUTPUT_VARIABLE _probe_output)
    unset(CMAKE_TRY_COMPILE_TARGET_TYPE)
    set(PARALLAX_GLOO_HEADERS_MATCH ${PARALLAX_GLOO_HEADERS_MATCH} CACHE INTERNAL "")
    if(NOT PARALLAX_GLOO_HEADERS_MATCH)
      string(REGEX MATCH "error:[^\n]*" _first_error "${_probe_output}")
      message(WARNING "parallax: gloo headers in ${PARALLAX_GLOO_INCLUDE_DIR} do not fit this "
                      "LibTorch (${_first_error}); Distributed<Gloo> is disabled")
    endif()
  endif()
  if(PARALLAX_GLOO_INCLUDE_DIR AND PARALLAX_GLOO_HEADERS_MATCH)
    set(PARALLAX_TORCH_HAS_GLOO ON)
  endif()
endif()

# Adds LibTorch, range-v3, the compile-time traits and (optionally) OpenCV to an INTERFACE target:
# the in-tree parallax target and the imported parallax::parallax of an installed package alike,
# so a consumer always sees the traits of the LibTorch *it* found.
function(parallax_configure_target target with_opencv)
  # Note [libstdc++ before LibTorch]
  # The pip build of libtorch.so exports its own copy of std::filesystem (built against an older
  # libstdc++). When libtorch.so precedes libstdc++.so among an executable's DT_NEEDED entries,
  # the dynamic linker binds std::filesystem calls to that copy, and some of them (remove_all)
  # crash. Naming libstdc++ first keeps the toolchain's own implementation.
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND UNIX AND NOT APPLE)
    target_link_libraries(${target} INTERFACE stdc++)
  endif()
  target_link_libraries(${target} INTERFACE ${TORCH_LIBRARIES} range-v3::range-v3)
  target_compile_features(${target} INTERFACE cxx_std_20)
  target_compile_definitions(
    ${target} INTERFACE PARALLAX_HAS_CUDA=$<BOOL:${PARALLAX_TORCH_HAS_CUDA}>
                        PARALLAX_HAS_NCCL=$<BOOL:${PARALLAX_TORCH_HAS_NCCL}>
                        PARALLAX_HAS_GLOO=$<BOOL:${PARALLAX_TORCH_HAS_GLOO}>
                        PARALLAX_HAS_MPI=$<BOOL:${PARALLAX_TORCH_HAS_MPI}>)
  if(PARALLAX_TORCH_HAS_GLOO)
    target_include_directories(${target} SYSTEM INTERFACE "${PARALLAX_GLOO_INCLUDE_DIR}")
  endif()
  if(with_opencv)
    target_link_libraries(${target} INTERFACE opencv_core opencv_imgproc opencv_imgcodecs)
    target_compile_definitions(${target} INTERFACE PARALLAX_HAS_OPENCV=1)
    # libjpeg-turbo itself (the JPEG codec of Debian's OpenCV) decodes JPEG straight to RGB;
    # without its headers every image goes through OpenCV (Note [Decoding JPEG directly]).
    # Only libjpeg-turbo: IJG's libjpeg 9 scales and upsamples differently from what OpenCV
    # would give, and old ones lack jpeg_mem_src.
    find_package(JPEG QUIET)
    if(JPEG_FOUND)
      include(CheckCXXSymbolExists)
      set(CMAKE_REQUIRED_INCLUDES ${JPEG_INCLUDE_DIRS})
      set(CMAKE_REQUIRED_QUIET ON)
      check_cxx_symbol_exists(LIBJPEG_TURBO_VERSION "cstdio;jpeglib.h" PARALLAX_LIBJPEG_IS_TURBO)
      unset(CMAKE_REQUIRED_INCLUDES)
      unset(CMAKE_REQUIRED_QUIET)
      if(PARALLAX_LIBJPEG_IS_TURBO)
        target_link_libraries(${target} INTERFACE JPEG::JPEG)
        target_compile_definitions(${target} INTERFACE PARALLAX_HAS_LIBJPEG=1)
      endif()
    endif()
  else()
    target_compile_definitions(${target} INTERFACE PARALLAX_HAS_OPENCV=0)
  endif()
endfunction()
