// The study's results: study.csv, study.json, study.md (tables) and PNG charts drawn by
// gnuplot (time and efficiency vs devices; accuracy per epoch per model; time per model).
#pragma once

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>
#include <parallax/parallax.hpp>

#include "study_projection.hpp"

namespace asl {

/// One training run of the study, and the studies (strong, weak, model) that report it.
struct StudyRun {
  std::string arch, policy, schedule = "constant";
  int64_t devices = 1, global_batch = 32, epochs = 1, samples = 0;
  std::vector<std::string> studies;
  nlohmann::json metrics;

  bool reports(const std::string& study) const {
    return std::find(studies.begin(), studies.end(), study) != studies.end();
  }
  bool same_training(const StudyRun& o) const {
    return arch == o.arch && policy == o.policy && devices == o.devices &&
           global_batch == o.global_batch && epochs == o.epochs && samples == o.samples &&
           schedule == o.schedule;
  }
  std::string policy_family() const { return policy.substr(0, policy.find(':')); }
  std::string name() const {
    std::string p = policy;
    for (auto& c : p)
      if (c == ':') c = '-';
    return arch + "_" + p + "_x" + std::to_string(devices) + "_b" + std::to_string(global_batch) +
           "_e" + std::to_string(epochs) + "_s" + std::to_string(samples);
  }
  std::string label() const {
    return arch + " " + policy + " x" + std::to_string(devices) + " batch " +
           std::to_string(global_batch);
  }
  double seconds() const { return metrics.at("wall_seconds").get<double>(); }
  double images_per_second() const { return metrics.at("train_images_per_second").get<double>(); }
  double accuracy() const { return metrics.at("val_accuracy").get<double>(); }
};

struct StudyInfo {
  std::string device_kind;
  int64_t devices, image_size, batch_size;
  std::string data;
};

namespace detail {

inline std::string machine_text(const StudyInfo& info) {
  std::string cpu = "unknown CPU";
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);)
    if (line.rfind("model name", 0) == 0) {
      cpu = line.substr(line.find(':') + 2);
      break;
    }
  char date[32];
  const std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof date, "%Y-%m-%d", std::gmtime(&now));
  std::ostringstream out;
  out << date << ", " << cpu << " (" << std::thread::hardware_concurrency() << " cores), "
      << (info.device_kind == "cuda"
              ? std::to_string(info.devices) + " CUDA device(s)"
              : "no GPU: devices are CPU replicas (dp) and CPU processes (ddp) sharing the cores");
  return out.str();
}

/// Speed-up is throughput relative to the study's single-device Single run (for strong scaling
/// the same as the time ratio: every run trains on the same images); efficiency = speed-up /
/// devices.
struct ScalingRow {
  const StudyRun* run;
  double speedup, efficiency;
};

/// One study.csv line; model rows (no `scaling`) leave speed-up and efficiency empty.
inline std::string csv_row(const std::string& study, const std::string& device_kind,
                           const StudyRun& r, const ScalingRow* scaling) {
  return study + "," + r.arch + "," + r.policy + "," + device_kind + "," +
         std::to_string(r.devices) + "," + std::to_string(r.global_batch) + "," +
         std::to_string(r.global_batch / r.devices) + "," + std::to_string(r.epochs) + "," +
         std::to_string(r.samples) + "," + fixed(r.seconds(), 3) + "," +
         fixed(r.images_per_second(), 2) + "," + (scaling ? fixed(scaling->speedup, 4) : "") + "," +
         (scaling ? fixed(scaling->efficiency, 4) : "") + "," + fixed(r.accuracy(), 4) + "\n";
}

inline std::vector<ScalingRow> scaling_rows(const std::vector<StudyRun>& runs,
                                            const std::string& study) {
  std::vector<const StudyRun*> members;
  for (const auto& run : runs)
    if (run.reports(study)) members.push_back(&run);
  if (members.empty()) return {};
  auto order = [](const StudyRun* r) {
    const auto family = r->policy_family();
    return std::pair(family == "single" ? 0 : family == "dp" ? 1 : 2, r->devices);
  };
  std::stable_sort(members.begin(), members.end(),
                   [&](const StudyRun* a, const StudyRun* b) { return order(a) < order(b); });
  const StudyRun* base = members.front();
  for (const auto* run : members)
    if (run->policy == "single") base = run;
  std::vector<ScalingRow> rows;
  for (const auto* run : members) {
    const double speedup = run->images_per_second() / base->images_per_second();
    rows.push_back({run, speedup, speedup / static_cast<double>(run->devices)});
  }
  return rows;
}

inline void write_charts(const std::vector<StudyRun>& runs, const std::filesystem::path& out,
                         const std::string& device_kind) {
  namespace fs = std::filesystem;
  const fs::path data = out / "chart-data";
  fs::create_directories(data);
  std::ostringstream script;
  script << "set terminal pngcairo size 1000,420 font 'sans,10'\nset key outside right\n"
            "set grid\nset xlabel '"
         << (device_kind == "cuda" ? "GPUs" : "CPU devices (replicas or processes)") << "'\n";
  // Time and efficiency vs devices: one panel per study, a line per policy.
  for (const std::string quantity : {"time", "efficiency"}) {
    script << "set output '" << (out / ("scaling_" + quantity + ".png.tmp")).string()
           << "'\nset multiplot layout 1,2\n";
    for (const std::string study : {"strong", "weak"}) {
      const auto rows = scaling_rows(runs, study);
      std::map<std::string, std::ostringstream> series;
      for (const auto& row : rows)
        series[row.run->policy_family()]
            << row.run->devices << ' ' << (quantity == "time" ? row.run->seconds() : row.efficiency)
            << '\n';
      script << "set title '" << study << " scaling" << (device_kind == "cpu" ? " (CPU)" : "")
             << "'\nset ylabel '" << (quantity == "time" ? "wall seconds" : "scaling efficiency")
             << "'\nset xtics 1\nset yrange [0:*]\n";
      if (series.empty()) {
        script << "set label 1 'not run' at graph 0.4,0.5\nplot 1/0 notitle\nunset label 1\n";
        continue;
      }
      script << "plot ";
      bool first = true;
      for (auto& [policy, text] : series) {
        const fs::path file = data / (study + "_" + quantity + "_" + policy + ".dat");
        std::ofstream(file) << text.str();
        script << (first ? "" : ", ") << "'" << file.string()
               << "' using 1:2 with linespoints lw 2 title '" << policy << "'";
        first = false;
      }
      if (quantity == "efficiency") script << ", 1 with lines dt 2 lc 'gray' title 'ideal'";
      script << "\n";
    }
    script << "unset multiplot\nset output\n";
  }
  // Models: accuracy per epoch, and time per model.
  std::ostringstream bars;
  script << "set output '" << (out / "models.png.tmp").string()
         << "'\nset multiplot layout 1,2\nset title 'validation accuracy per epoch'\n"
            "set xlabel 'epoch'\nset ylabel 'accuracy'\nset yrange [0:1]\nset xtics 1\nplot ";
  bool first = true;
  int index = 0;
  for (const auto& run : runs) {
    if (!run.reports("model")) continue;
    const fs::path file = data / ("model_" + run.arch + ".dat");
    std::ofstream epochs(file);
    for (const auto& e : run.metrics["epochs"])
      epochs << e["epoch"].get<int64_t>() << ' ' << e["val_accuracy"].get<double>() << '\n';
    script << (first ? "" : ", ") << "'" << file.string()
           << "' using 1:2 with linespoints lw 2 title '" << run.arch << "'";
    bars << index++ << " \"" << run.arch << "\" " << run.seconds() << '\n';
    first = false;
  }
  if (first) script << "1/0 notitle";
  std::ofstream(data / "model_time.dat") << bars.str();
  script << "\nset title 'training time per model (one device)'\nset xlabel ''\n"
            "set ylabel 'wall seconds'\nset yrange [0:*]\nset style fill solid 0.6\n"
            "set boxwidth 0.6\nset xtics ()\nplot '"
         << (data / "model_time.dat").string()
         << "' using 1:3:xtic(2) with boxes notitle\nunset multiplot\nset output\n";
  const fs::path script_file = out / "charts.gp";
  std::ofstream(script_file) << script.str();
  const std::string command =
      "gnuplot '" + script_file.string() + "' 2>'" + (out / "charts.log").string() + "'";
  if (std::system(command.c_str()) != 0) {
    std::fprintf(stderr, "study: gnuplot failed or is missing (see %s): no charts\n",
                 (out / "charts.log").c_str());
    return;
  }
  for (const char* chart : {"scaling_time.png", "scaling_efficiency.png", "models.png"})
    fs::rename(out / (std::string(chart) + ".tmp"), out / chart);
}

}  // namespace detail

inline void write_study_report(const StudyInfo& info, const std::vector<StudyRun>& runs,
                               const std::vector<ProjectionRow>& projected,
                               const std::filesystem::path& out) {
  nlohmann::json json = {{"machine", detail::machine_text(info)},
                         {"device_kind", info.device_kind},
                         {"devices", info.devices},
                         {"image_size", info.image_size},
                         {"data", info.data},
                         {"rows", nlohmann::json::array()},
                         {"projected", projection_json(projected)}};
  std::string csv =
      "study,arch,policy,device_kind,devices,global_batch,per_device_batch,epochs,samples,"
      "wall_seconds,images_per_second,speedup,efficiency,val_accuracy\n";
  std::ostringstream md;
  md << "# asl_resnet timing study\n\n"
     << detail::machine_text(info) << ".  \nData: `" << info.data << "`, " << info.image_size
     << " px.\n";
  for (const std::string study : {"strong", "weak"}) {
    const auto rows = detail::scaling_rows(runs, study);
    if (rows.empty()) continue;
    md << "\n## " << (study == "strong" ? "Strong" : "Weak") << " scaling ("
       << (study == "strong" ? "fixed global batch " : "fixed per-device batch ") << info.batch_size
       << ")" << (info.device_kind == "cpu" ? " — CPU figures" : "") << "\n\n"
       << "Speed-up: images/s relative to the `" << rows.front().run->policy
       << "` row; efficiency: speed-up / devices.\n\n"
       << "| policy | devices | global batch | wall s | images/s | speed-up | efficiency | val "
          "accuracy |\n|---|---:|---:|---:|---:|---:|---:|---:|\n";
    for (const auto& row : rows) {
      const StudyRun& r = *row.run;
      md << "| " << r.policy << " | " << r.devices << " | " << r.global_batch << " | "
         << detail::fixed(r.seconds(), 1) << " | " << detail::fixed(r.images_per_second(), 1)
         << " | " << detail::fixed(row.speedup, 2) << "× | " << detail::fixed(row.efficiency, 2)
         << " | " << detail::fixed(100 * r.accuracy(), 1) << "% |\n";
      csv += detail::csv_row(study, info.device_kind, r, &row);
      json["rows"].push_back({{"study", study},
                              {"arch", r.arch},
                              {"policy", r.policy},
                              {"devices", r.devices},
                              {"global_batch", r.global_batch},
                              {"epochs", r.epochs},
                              {"samples", r.samples},
                              {"speedup", row.speedup},
                              {"efficiency", row.efficiency},
                              {"metrics", r.metrics}});
    }
  }
  bool models = false;
  for (const auto& r : runs) {
    if (!r.reports("model")) continue;
    if (!models)
      md << "\n## Models (one device, single policy, cosine learning rate)\n\n"
            "| arch | epochs | wall s | images/s | val accuracy per epoch | final |\n"
            "|---|---:|---:|---:|---|---:|\n";
    models = true;
    std::string per_epoch;
    for (const auto& e : r.metrics["epochs"])
      per_epoch += (per_epoch.empty() ? "" : " → ") +
                   detail::fixed(100 * e["val_accuracy"].get<double>(), 1);
    md << "| " << r.arch << " | " << r.epochs << " | " << detail::fixed(r.seconds(), 1) << " | "
       << detail::fixed(r.images_per_second(), 1) << " | " << per_epoch << " | "
       << detail::fixed(100 * r.accuracy(), 1) << "% |\n";
    csv += detail::csv_row("model", info.device_kind, r, nullptr);
    json["rows"].push_back({{"study", "model"}, {"arch", r.arch}, {"metrics", r.metrics}});
  }
  md << projection_markdown(projected, info.device_kind);
  md << "\n![time vs devices](scaling_time.png)\n![efficiency vs devices]"
        "(scaling_efficiency.png)\n![models](models.png)\n";
  parallax::write_text_atomically(out / "study.csv", csv);
  if (!projected.empty())
    parallax::write_text_atomically(out / "projection.csv", projection_csv(projected));
  parallax::write_text_atomically(out / "study.json", json.dump(2) + "\n");
  parallax::write_text_atomically(out / "study.md", md.str());
  detail::write_charts(runs, out,
                       info.device_kind);  // after the tables: a chart failure loses none
  std::printf(
      "\n%s\nwrote %s/study.{md,csv,json} and charts %s/{scaling_time,scaling_efficiency,"
      "models}.png\n",
      md.str().c_str(), out.c_str(), out.c_str());
}

}  // namespace asl
