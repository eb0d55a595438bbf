// parallax: train any torch::nn module on many devices by choosing a policy type.
//
//   parallax::Trainer<parallax::DataParallel<4>> trainer(model, optimizer, options);
//   auto history = trainer.fit(train_set, val_set, loss);
#pragma once

#include "parallax/config.hpp"
#include "parallax/error.hpp"

#include "parallax/data/batch.hpp"
#include "parallax/data/collate.hpp"
#include "parallax/data/dataset.hpp"
#include "parallax/data/device_copy.hpp"
#include "parallax/data/image_header.hpp"
#include "parallax/data/image_tensor.hpp"
#include "parallax/data/index_pipeline.hpp"
#include "parallax/data/loader.hpp"
#include "parallax/data/packed_images.hpp"
#include "parallax/data/shard.hpp"
#include "parallax/data/subset.hpp"
#include "parallax/data/tensor_dataset.hpp"
// parallax/data/image_folder.hpp needs OpenCV: include it yourself (PARALLAX_WITH_OPENCV=ON).

#include "parallax/comm/backend.hpp"
#include "parallax/comm/bucket_plan.hpp"
#include "parallax/comm/bucket_reducer.hpp"
#include "parallax/comm/launcher.hpp"
#include "parallax/comm/local_reduce.hpp"
#include "parallax/comm/rendezvous.hpp"
#include "parallax/comm/step_projection.hpp"

#include "parallax/policy/autocast.hpp"
#include "parallax/policy/channels_last.hpp"
#include "parallax/policy/concept.hpp"
#include "parallax/policy/cuda_graph.hpp"
#include "parallax/policy/data_parallel.hpp"
#include "parallax/policy/devices.hpp"
#include "parallax/policy/distributed.hpp"
#include "parallax/policy/model.hpp"
#include "parallax/policy/single.hpp"
#include "parallax/policy/step.hpp"

#include "parallax/train/atomic_file.hpp"
#include "parallax/train/callbacks.hpp"
#include "parallax/train/checkpoint.hpp"
#include "parallax/train/clip_grad.hpp"
#include "parallax/train/early_stopping.hpp"
#include "parallax/train/fused_adam.hpp"
#include "parallax/train/loss_scaler.hpp"
#include "parallax/train/metrics.hpp"
#include "parallax/train/metrics_log.hpp"
#include "parallax/train/options.hpp"
#include "parallax/train/progress_bar.hpp"
#include "parallax/train/trainer.hpp"
