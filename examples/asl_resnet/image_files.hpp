// Whether this build of asl_resnet reads image files (JPEG/PNG, decoded by OpenCV). Many CUDA
// machines have no OpenCV C++: without it asl_resnet still trains and studies packed caches
// (.pxpack, made by `asl_resnet prepare` on a machine that has it). CMake builds that variant
// as well (ASL_IMAGE_FILES=0), so that it keeps compiling where OpenCV is installed.
#pragma once

#include <filesystem>
#include <string>

#include <parallax/config.hpp>
#include <parallax/error.hpp>

#ifndef ASL_IMAGE_FILES
#define ASL_IMAGE_FILES PARALLAX_HAS_OPENCV
#endif
#if ASL_IMAGE_FILES
#include <parallax/data/image_folder.hpp>
#endif

namespace asl {

/// The error for an image folder given to a build that cannot read image files.
inline parallax::InputError no_image_files(const std::filesystem::path& data) {
  if (!std::filesystem::exists(data))
    return parallax::InputError("--data '" + data.string() + "' does not exist");
  return parallax::InputError("asl_resnet was built without OpenCV: --data '" + data.string() +
                              "' must be a .pxpack file (asl_resnet prepare makes one)");
}

}  // namespace asl
