// The study's projected rows: weak scaling on 2/4/8 devices beyond those present, estimated
// from the measured single-device step (Note [Projecting data-parallel steps] in
// parallax/comm/step_projection.hpp). Reported in their own table and file, never among the
// measured rows.
#pragma once

#include <cstdint>
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <parallax/parallax.hpp>

#include "models.hpp"

namespace asl {

namespace detail {
inline std::string fixed(double v, int digits) {
  char text[32];
  std::snprintf(text, sizeof text, "%.*f", digits, v);
  return text;
}
}  // namespace detail

struct ProjectionRow {
  std::string arch, link;
  double bus_gigabytes_per_second = 0;
  int64_t per_device_batch = 0, buckets = 0, gradient_bytes = 0;
  double measured_step_seconds = 0;
  parallax::comm::ProjectedStep step;

  double images_per_second() const {
    return static_cast<double>(step.devices * per_device_batch) / step.step_seconds;
  }
};

/// "nvlink:200,pcie:12" -> link classes (name: all-reduce bus bandwidth in GB/s).
inline std::vector<parallax::comm::LinkClass> parse_links(const std::string& text) {
  std::vector<parallax::comm::LinkClass> links;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) {
    if (item.empty()) continue;
    const auto colon = item.find(':');
    double rate = 0;
    try {
      rate = colon == std::string::npos ? 0 : std::stod(item.substr(colon + 1));
    } catch (const std::exception&) {
    }
    parallax::detail::require(rate > 0, "--project-links: '", item,
                              "' is not NAME:GBPS with a positive bandwidth");
    parallax::comm::LinkClass link{item.substr(0, colon), rate};
    for (const auto& known : parallax::comm::default_link_classes())
      if (known.name == link.name) link.latency_microseconds = known.latency_microseconds;
    links.push_back(link);
  }
  return links;
}

/// Projected rows from a one-device run of `arch` at `batch` images per step and
/// `images_per_second`, on each of 2, 4, 8 devices that is more than `present`, for every link.
inline std::vector<ProjectionRow> project_weak_scaling(
    const std::string& arch, int64_t batch, double images_per_second, int64_t classes,
    int64_t image_size, int64_t present, const std::vector<parallax::comm::LinkClass>& links) {
  std::vector<ProjectionRow> rows;
  if (links.empty()) return rows;
  const Network network = make_network(arch, classes, image_size);
  const auto parameters = network.model->parameters();
  const parallax::comm::BucketOptions defaults;
  const auto bytes = parallax::comm::bucket_bytes(
      parameters,
      parallax::comm::plan_buckets(parameters, defaults.cap_bytes(), defaults.first_cap_bytes()));
  int64_t total = 0;
  for (const auto b : bytes) total += b;
  const double step = static_cast<double>(batch) / images_per_second;
  for (const auto& link : links)
    for (const int64_t devices : {2, 4, 8}) {
      if (devices <= present) continue;
      rows.push_back({arch, link.name, link.bus_gigabytes_per_second, batch,
                      static_cast<int64_t>(bytes.size()), total, step,
                      parallax::comm::project_step(step, bytes, devices, link)});
    }
  return rows;
}

inline std::string projection_markdown(const std::vector<ProjectionRow>& rows,
                                       const std::string& device_kind) {
  if (rows.empty()) return "";
  const auto& first = rows.front();
  std::ostringstream md;
  md << "\n## Projected weak scaling — estimates, not measurements\n\n"
     << "From the measured one-device " << first.arch << " step ("
     << detail::fixed(1e3 * first.measured_step_seconds, 2) << " ms at batch "
     << first.per_device_batch << (device_kind == "cpu" ? ", on the CPU" : "") << "), "
     << first.buckets << " gradient buckets of " << detail::fixed(first.gradient_bytes / 1e6, 1)
     << " MB in all, ring all-reduce at the stated bus bandwidth, overlapped with backward "
        "(parallax/comm/step_projection.hpp states the model).\n\n"
     << "| link | bus GB/s | devices | step ms | all-reduce ms | exposed ms | images/s | "
        "efficiency |\n|---|---:|---:|---:|---:|---:|---:|---:|\n";
  for (const auto& r : rows)
    md << "| " << r.link << " | " << detail::fixed(r.bus_gigabytes_per_second, 0) << " | "
       << r.step.devices << " | " << detail::fixed(1e3 * r.step.step_seconds, 2) << " | "
       << detail::fixed(1e3 * r.step.all_reduce_seconds, 2) << " | "
       << detail::fixed(1e3 * r.step.exposed_seconds, 2) << " | "
       << detail::fixed(r.images_per_second(), 1) << " | " << detail::fixed(r.step.efficiency, 3)
       << " |\n";
  return md.str();
}

inline std::string projection_csv(const std::vector<ProjectionRow>& rows) {
  std::string csv =
      "arch,link,bus_gigabytes_per_second,devices,per_device_batch,buckets,gradient_bytes,"
      "measured_step_seconds,projected_step_seconds,all_reduce_seconds,exposed_seconds,"
      "images_per_second,efficiency\n";
  for (const auto& r : rows)
    csv += r.arch + "," + r.link + "," + detail::fixed(r.bus_gigabytes_per_second, 3) + "," +
           std::to_string(r.step.devices) + "," + std::to_string(r.per_device_batch) + "," +
           std::to_string(r.buckets) + "," + std::to_string(r.gradient_bytes) + "," +
           detail::fixed(r.measured_step_seconds, 6) + "," + detail::fixed(r.step.step_seconds, 6) +
           "," + detail::fixed(r.step.all_reduce_seconds, 6) + "," +
           detail::fixed(r.step.exposed_seconds, 6) + "," +
           detail::fixed(r.images_per_second(), 2) + "," + detail::fixed(r.step.efficiency, 4) +
           "\n";
  return csv;
}

inline nlohmann::json projection_json(const std::vector<ProjectionRow>& rows) {
  auto json = nlohmann::json::array();
  for (const auto& r : rows)
    json.push_back({{"arch", r.arch},
                    {"link", r.link},
                    {"bus_gigabytes_per_second", r.bus_gigabytes_per_second},
                    {"devices", r.step.devices},
                    {"per_device_batch", r.per_device_batch},
                    {"measured_step_seconds", r.measured_step_seconds},
                    {"projected_step_seconds", r.step.step_seconds},
                    {"exposed_seconds", r.step.exposed_seconds},
                    {"images_per_second", r.images_per_second()},
                    {"efficiency", r.step.efficiency}});
  return json;
}

}  // namespace asl
