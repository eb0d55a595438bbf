// Compile-time facts about the LibTorch parallax was configured against.
//
// CMake detects them from the found LibTorch (see cmake/parallaxDependencies.cmake) and passes
// them as PARALLAX_HAS_* definitions; code that includes parallax without its CMake target gets
// the conservative defaults below.
#pragma once

#ifndef PARALLAX_HAS_CUDA
#define PARALLAX_HAS_CUDA 0
#endif
#ifndef PARALLAX_HAS_NCCL
#define PARALLAX_HAS_NCCL 0
#endif
#ifndef PARALLAX_HAS_OPENCV
#define PARALLAX_HAS_OPENCV 0
#endif
#ifndef PARALLAX_HAS_LIBJPEG
#define PARALLAX_HAS_LIBJPEG 0
#endif

namespace parallax {

/// The found LibTorch was built with CUDA (a GPU may still be absent at run time).
inline constexpr bool torch_has_cuda = PARALLAX_HAS_CUDA != 0;
/// The found LibTorch's c10d was built with NCCL.
inline constexpr bool torch_has_nccl = PARALLAX_HAS_NCCL != 0;
/// parallax was configured with OpenCV (image-folder datasets).
inline constexpr bool has_opencv = PARALLAX_HAS_OPENCV != 0;
/// JPEG images are decoded by libjpeg directly (with OpenCV; see data/jpeg_decode.hpp).
inline constexpr bool has_libjpeg = PARALLAX_HAS_LIBJPEG != 0;

inline constexpr int version_major = 0;
inline constexpr int version_minor = 1;
inline constexpr int version_patch = 0;

}  // namespace parallax
