// ImageFolder (OpenCV) and PackedImages: classes, labels, preprocessing, bad files, packing.
#include <array>
#include <filesystem>
#include <fstream>
#include <mutex>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <parallax/data/image_folder.hpp>

#include "support.hpp"

using namespace test;
namespace fs = std::filesystem;

namespace {

/// root/b/{0,1}.png (solid colours), root/a/0.png, root/a/broken.jpg (not an image).
fs::path make_folder(const std::string& name) {
  const auto root = fresh_directory("images-" + name);
  fs::create_directories(root / "a");
  fs::create_directories(root / "b");
  auto solid = [](const fs::path& path, int r, int g, int b) {
    cv::Mat image(40, 30, CV_8UC3, cv::Scalar(b, g, r));  // OpenCV stores BGR
    REQUIRE(cv::imwrite(path.string(), image));
  };
  solid(root / "b" / "0.png", 255, 0, 0);
  solid(root / "b" / "1.png", 0, 255, 0);
  solid(root / "a" / "0.png", 0, 0, 255);
  std::ofstream(root / "a" / "broken.jpg") << "not a jpeg";
  std::ofstream(root / "a" / "notes.txt") << "ignored";
  return root;
}

/// A smooth colour ramp with noise on it: something for JPEG and area averaging to work on.
cv::Mat textured(int rows, int cols, int type, unsigned seed) {
  cv::Mat image(rows, cols, type);
  cv::theRNG().state = seed;
  cv::randu(image, 0, 64);
  for (int y = 0; y < rows; ++y)
    for (int x = 0; x < cols * image.channels(); ++x)
      image.ptr<uint8_t>(y)[x] +=
          static_cast<uint8_t>((x * 150 / (cols * image.channels())) + (y * 40 / rows));
  return image;
}

/// decode_image as OpenCV alone does it: scaled decode to BGR, INTER_AREA, swap to RGB, CHW.
torch::Tensor opencv_decode(const std::vector<uint8_t>& jpeg, int read_mode, int64_t size) {
  cv::Mat bgr = cv::imdecode(jpeg, read_mode), resized, rgb;
  cv::resize(bgr, resized, cv::Size(static_cast<int>(size), static_cast<int>(size)), 0, 0,
             cv::INTER_AREA);
  cv::cvtColor(resized, rgb, cv::COLOR_BGR2RGB);
  return torch::from_blob(rgb.data, {size, size, 3}, torch::kUInt8).permute({2, 0, 1}).clone();
}

}  // namespace

TEST_SUITE("images") {
  TEST_CASE("area_resize: each output is the mean of the area it covers, like INTER_AREA") {
    // By hand: 3 pixels -> 2, each output covers 1.5 inputs.
    const uint8_t row[] = {0, 90, 180};
    uint8_t out[2] = {};
    px::detail::area_resize(row, 1, 3, 1, 1, 2, out);
    CHECK(out[0] == 30);   // (0 + 90 / 2) / 1.5
    CHECK(out[1] == 150);  // (90 / 2 + 180) / 1.5
    CHECK_THROWS_WITH_AS(px::detail::area_resize(row, 1, 3, 1, 1, 4, out),
                         doctest::Contains("shrinks only: 3 -> 4"), px::InputError);
    // Against OpenCV on noise (the hardest case), integer and fractional factors, 1 and 3
    // channels; ours is planar, OpenCV's interleaved.
    for (const auto [rows, cols, out_rows, out_cols] : {std::array{100, 100, 64, 64},
                                                        {128, 128, 64, 64},
                                                        {150, 200, 64, 64},
                                                        {75, 75, 64, 64},
                                                        {64, 64, 64, 64},
                                                        {37, 91, 5, 13},
                                                        {1000, 3, 7, 1}})
      for (const int channels : {1, 3}) {
        CAPTURE(rows);
        CAPTURE(cols);
        CAPTURE(out_rows);
        CAPTURE(out_cols);
        CAPTURE(channels);
        cv::Mat image(rows, cols, CV_8UC(channels)), expected;
        cv::randu(image, 0, 256);
        cv::resize(image, expected, cv::Size(out_cols, out_rows), 0, 0, cv::INTER_AREA);
        auto ours = torch::empty({channels, out_rows, out_cols}, torch::kUInt8);
        px::detail::area_resize(image.data, rows, cols, channels, out_rows, out_cols,
                                ours.data_ptr<uint8_t>());
        const auto theirs =
            torch::from_blob(expected.data, {out_rows, out_cols, channels}, torch::kUInt8)
                .permute({2, 0, 1});
        CHECK(max_difference(ours.to(torch::kFloat), theirs.to(torch::kFloat)) <=
              1);  // float summation order only
      }
  }

  TEST_CASE("decode_image: JPEGs decoded by libjpeg give OpenCV's pixels, every reduction") {
    CHECK(px::has_libjpeg);  // bootstrap installs libjpeg-dev: this build must take that path
    struct Case {
      int rows, cols, type, read_mode, denominator;
      int64_t size;
      bool progressive;
    };
    const Case cases[] = {
        {200, 200, CV_8UC3, cv::IMREAD_REDUCED_COLOR_2, 2, 64, false},  // the ASL images
        {150, 300, CV_8UC3, cv::IMREAD_REDUCED_COLOR_2, 2, 64, true},   // not square, progressive
        {530, 520, CV_8UC3, cv::IMREAD_REDUCED_COLOR_8, 8, 64, false},
        {300, 280, CV_8UC3, cv::IMREAD_REDUCED_COLOR_4, 4, 64, false},
        {64, 64, CV_8UC3, cv::IMREAD_COLOR, 1, 64, false},              // already the size
        {90, 70, CV_8UC3, cv::IMREAD_COLOR, 1, 64, false},              // no reduction fits
        {30, 40, CV_8UC3, cv::IMREAD_COLOR, 1, 64, false},              // enlarged: OpenCV's resize
        {200, 200, CV_8UC1, cv::IMREAD_REDUCED_COLOR_2, 2, 64, false},  // greyscale JPEG
    };
    unsigned seed = 1;
    for (const auto& c : cases) {
      CAPTURE(c.rows);
      CAPTURE(c.cols);
      CAPTURE(c.type);
      CAPTURE(c.progressive);
      std::vector<uint8_t> jpeg;
      REQUIRE(cv::imencode(".jpg", textured(c.rows, c.cols, c.type, seed++), jpeg,
                           {cv::IMWRITE_JPEG_PROGRESSIVE, c.progressive ? 1 : 0}));
      const auto ours = px::decode_image(jpeg.data(), jpeg.size(), c.size, "case");
      REQUIRE(ours.sizes() == torch::IntArrayRef{3, c.size, c.size});
      CHECK(max_difference(ours.to(torch::kFloat),
                           opencv_decode(jpeg, c.read_mode, c.size).to(torch::kFloat)) <= 1);
#if PARALLAX_HAS_LIBJPEG
      // The direct decoder itself takes these (decode_image would hide a failure by falling
      // back to OpenCV), at the scaled size, and refuses a cut file and unexpected dimensions.
      px::detail::DecodedRgb rgb;
      CHECK(px::detail::decode_jpeg_rgb(jpeg.data(), jpeg.size(), c.denominator, c.cols, c.rows,
                                        rgb));
      CHECK(rgb.height == (c.rows + c.denominator - 1) / c.denominator);
      CHECK(rgb.width == (c.cols + c.denominator - 1) / c.denominator);
      CHECK(rgb.pixels.size() == static_cast<std::size_t>(rgb.height * rgb.width * 3));
      CHECK_FALSE(px::detail::decode_jpeg_rgb(jpeg.data(), jpeg.size() / 2, c.denominator, c.cols,
                                              c.rows, rgb));
      CHECK_FALSE(px::detail::decode_jpeg_rgb(jpeg.data(), jpeg.size(), c.denominator, c.cols + 1,
                                              c.rows, rgb));
#endif
    }
  }

  TEST_CASE("decode_image: an EXIF orientation is applied, as OpenCV applies it") {
    std::vector<uint8_t> plain;
    REQUIRE(cv::imencode(".jpg", textured(200, 130, CV_8UC3, 7), plain));
    // An APP1 "Exif" segment right after SOI: big-endian TIFF, IFD0 with one entry,
    // orientation (0x0112, SHORT) = 6 (rotate 90 degrees clockwise to display).
    const std::vector<uint8_t> app1 = {0xFF, 0xE1, 0x00, 0x22, 'E',  'x',  'i',  'f',  0,
                                       0,    'M',  'M',  0x00, 0x2A, 0x00, 0x00, 0x00, 0x08,
                                       0x00, 0x01, 0x01, 0x12, 0x00, 0x03, 0x00, 0x00, 0x00,
                                       0x01, 0x00, 0x06, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
    std::vector<uint8_t> rotated(plain.size() + app1.size());
    std::copy(plain.begin(), plain.begin() + 2, rotated.begin());
    std::copy(app1.begin(), app1.end(), rotated.begin() + 2);
    std::copy(plain.begin() + 2, plain.end(),
              rotated.begin() + 2 + static_cast<std::ptrdiff_t>(app1.size()));
    const auto header = px::read_image_header(rotated.data(), rotated.size());
    REQUIRE(header.has_value());
    CHECK(header->orientation == 6);
    CHECK(header->complete);
    CHECK(px::read_image_header(plain.data(), plain.size())->orientation == 1);
    const auto ours = px::decode_image(rotated.data(), rotated.size(), 32, "rotated");
    CHECK(max_difference(
              ours.to(torch::kFloat),
              opencv_decode(rotated, cv::IMREAD_REDUCED_COLOR_4, 32).to(torch::kFloat)) <= 1);
    // ... and it matters: the unrotated decode is another image.
    const auto upright = px::decode_image(plain.data(), plain.size(), 32, "plain");
    CHECK(max_difference(ours.to(torch::kFloat), upright.to(torch::kFloat)) > 20);
  }

  TEST_CASE("image folder: sorted classes, labels, RGB, resize, ImageNet normalisation") {
    const auto root = make_folder("folder");
    px::ImageFolder folder(root, px::ImageOptions().image_size(8));
    CHECK(folder.classes() == std::vector<std::string>{"a", "b"});
    REQUIRE(folder.size() == 4u);  // a/0.png, a/broken.jpg, b/0.png, b/1.png
    CHECK(folder.label(0) == 0);
    CHECK(folder.label(2) == 1);
    const auto red = folder.get(2);  // b/0.png
    CHECK(red.data.sizes() == torch::IntArrayRef{3, 8, 8});
    CHECK(red.data[0][0][0].item<float>() == doctest::Approx((1.0 - 0.485) / 0.229));
    CHECK(red.data[1][4][4].item<float>() == doctest::Approx((0.0 - 0.456) / 0.224));
    CHECK(red.target.item<int64_t>() == 1);
    CHECK_THROWS_WITH_AS(folder.get(1), doctest::Contains("cannot decode image '"), px::InputError);
    CHECK_THROWS_WITH_AS(px::ImageFolder(root / "missing"), doctest::Contains("does not exist"),
                         px::InputError);
    fs::remove_all(root);
  }

  TEST_CASE("pack: skips and reports undecodable files; the pack equals the folder") {
    const auto root = make_folder("pack");
    px::ImageFolder folder(root, px::ImageOptions().image_size(8));
    const auto pack = root / "cache.pxpack";
    CHECK_THROWS_WITH_AS(px::pack_images(folder, *folder.size(), pack, 2, /*strict=*/true),
                         doctest::Contains("broken.jpg"), px::InputError);
    CHECK_FALSE(fs::exists(pack));  // nothing half-written
    const auto report = px::pack_images(folder, *folder.size(), pack, 2);
    CHECK(report.written == 3);
    REQUIRE(report.skipped.size() == 1);
    CHECK(report.skipped[0].find("broken.jpg") != std::string::npos);
    px::PackedImages packed(pack, px::ImageOptions().image_size(8));
    CHECK(packed.size() == 3u);
    CHECK(packed.classes() == folder.classes());
    const std::size_t from_folder[] = {0, 2, 3};
    for (std::size_t i = 0; i < 3; ++i) {
      CHECK(torch::equal(packed.get(i).data, folder.get(from_folder[i]).data));
      CHECK(packed.label(i) == folder.label(from_folder[i]));
    }
    // Whole batches read in one pass equal the stacked examples, also through a Subset.
    static_assert(px::BatchReadable<px::PackedImages>);
    static_assert(px::BatchReadable<px::Subset<px::PackedImages>>);
    static_assert(!px::BatchReadable<px::ImageFolder>);
    const std::vector<int64_t> order{2, 0, 2, 1};
    px::BatchMemory memory;
    const auto batch = packed.get_batch(order, memory);
    for (std::size_t k = 0; k < order.size(); ++k) {
      const auto example = packed.get(static_cast<std::size_t>(order[k]));
      CHECK(torch::equal(batch.input[static_cast<int64_t>(k)], example.data));
      CHECK(batch.target[static_cast<int64_t>(k)].item<int64_t>() ==
            example.target.item<int64_t>());
    }
    CHECK_THROWS_AS(packed.get_batch({3}, memory), px::InputError);  // out of range
    px::PackedImages grey_stats(pack, px::ImageOptions().image_size(8).mean({0.5}).std({0.5}));
    CHECK_THROWS_WITH_AS(grey_stats.get_batch({0}, memory),
                         doctest::Contains("3 channels but mean/std have 1/1"), px::InputError);
    // A 1-pixel image is copied out of OpenCV's buffer, not viewed (its layout is already CHW).
    const auto tiny = px::load_image(folder.path(0), 1);
    CHECK(tiny.sizes() == torch::IntArrayRef({3, 1, 1}));
    const auto mean = px::load_image(folder.path(0), 8).to(torch::kFloat).mean({1, 2});
    CHECK((tiny.flatten().to(torch::kFloat) - mean).abs().max().item<float>() <= 3);
    auto shared = std::make_shared<px::PackedImages>(pack, px::ImageOptions().image_size(8));
    px::Subset<px::PackedImages> subset(shared, {1, 2});
    CHECK(torch::equal(subset.get_batch({1, 0}, memory).input,
                       torch::stack({packed.get(2).data, packed.get(1).data})));
    // Trains through the Loader like any dataset (collate takes the batch path).
    px::Loader loader(packed, px::LoaderOptions().batch_size(2).workers(2).shuffle(false));
    std::vector<torch::Tensor> inputs;
    for (px::Batch& b : loader.epoch(0)) inputs.push_back(b.input);
    REQUIRE(inputs.size() == 2u);
    CHECK(torch::equal(torch::cat(inputs),
                       torch::stack({packed.get(0).data, packed.get(1).data, packed.get(2).data})));
    fs::remove_all(root);
  }

  TEST_CASE("decode_image: empty, truncated and undecodable inputs are named; check_images") {
    const auto root = make_folder("check");
    const cv::Mat image(50, 60, CV_8UC3, cv::Scalar(10, 20, 30));
    std::vector<uint8_t> jpeg;
    REQUIRE(cv::imencode(".jpg", image, jpeg));
    const auto whole = px::decode_image(jpeg.data(), jpeg.size(), 16, "upload");
    CHECK(whole.sizes() == torch::IntArrayRef{3, 16, 16});
    CHECK_THROWS_WITH_AS(px::decode_image(jpeg.data(), 0, 16, "upload"),
                         doctest::Contains("image 'upload' is empty"), px::InputError);
    CHECK_THROWS_WITH_AS(px::decode_image(jpeg.data(), jpeg.size() / 2, 16, "half.jpg"),
                         doctest::Contains("'half.jpg' is a truncated JPEG"), px::InputError);
    const uint8_t noise[] = {1, 2, 3, 4, 5, 6, 7, 8};
    CHECK_THROWS_WITH_AS(px::decode_image(noise, sizeof noise, 16, "noise"),
                         doctest::Contains("cannot decode image 'noise'"), px::InputError);
    CHECK_THROWS_WITH_AS(px::decode_image(jpeg.data(), jpeg.size(), 16, "big", 100),
                         doctest::Contains("60x50 pixels, over the limit"), px::InputError);
    // A truncated file in a folder: check_images names it, and refuses it when strict.
    std::ofstream(root / "b" / "cut.jpg", std::ios::binary)
        .write(reinterpret_cast<const char*>(jpeg.data()),
               static_cast<std::streamsize>(jpeg.size() / 2));
    px::ImageFolder folder(root, px::ImageOptions().image_size(8));
    int ticks = 0;
    std::mutex mutex;
    const auto check = px::check_images(folder, *folder.size(), 2, false, [&] {
      std::lock_guard lock(mutex);
      ++ticks;
    });
    CHECK(ticks == 5);
    CHECK(check.readable == std::vector<int64_t>{0, 2, 3});
    REQUIRE(check.skipped.size() == 2);
    CHECK(check.skipped[0].find("broken.jpg") != std::string::npos);
    CHECK(check.skipped[1].find("cut.jpg: image") != std::string::npos);
    CHECK_THROWS_WITH_AS(px::check_images(folder, *folder.size(), 2, true),
                         doctest::Contains("broken.jpg"), px::InputError);
    // An empty class folder is refused by name.
    fs::create_directories(root / "c");
    auto open = [&] { px::ImageFolder folder_with_empty_class(root); };
    CHECK_THROWS_WITH_AS(open(), doctest::Contains("class folder '"), px::InputError);
    fs::remove_all(root);
  }

  TEST_CASE("read_image_header: dimensions, completeness, trailing data, decompression bombs") {
    const cv::Mat image(50, 60, CV_8UC3, cv::Scalar(10, 20, 30));
    for (const int progressive : {0, 1}) {
      std::vector<uint8_t> jpeg;
      REQUIRE(cv::imencode(".jpg", image, jpeg, {cv::IMWRITE_JPEG_PROGRESSIVE, progressive}));
      const auto header = px::read_image_header(jpeg.data(), jpeg.size());
      REQUIRE(header.has_value());
      CHECK(header->format == "jpeg");
      CHECK(header->width == 60);
      CHECK(header->height == 50);
      CHECK(header->complete);
      CHECK_FALSE(px::read_image_header(jpeg.data(), jpeg.size() - 3)->complete);
      // Data after the end-of-image marker (a phone's "motion photo" video) is not truncation.
      auto with_trailer = jpeg;
      for (int i = 0; i < 1000; ++i) with_trailer.push_back(static_cast<uint8_t>(i * 7));
      CHECK(px::read_image_header(with_trailer.data(), with_trailer.size())->complete);
      CHECK(px::decode_image(with_trailer.data(), with_trailer.size(), 8, "trailer").size(1) == 8);
    }
    std::vector<uint8_t> png;
    REQUIRE(cv::imencode(".png", image, png));
    const auto header = px::read_image_header(png.data(), png.size());
    REQUIRE(header.has_value());
    CHECK(header->format == "png");
    CHECK(header->width == 60);
    CHECK(header->height == 50);
    // A PNG header declaring 100000 x 100000 pixels: refused from the header alone.
    png[16] = 0, png[17] = 1, png[18] = 0x86, png[19] = 0xA0;
    png[20] = 0, png[21] = 1, png[22] = 0x86, png[23] = 0xA0;
    CHECK_THROWS_WITH_AS(px::decode_image(png.data(), png.size(), 8, "bomb.png"),
                         doctest::Contains("100000x100000 pixels, over the limit"), px::InputError);
    // Two frame headers: the first one counts (libjpeg decodes that one), whatever follows.
    const uint8_t two_frames[] = {0xFF, 0xD8,  // SOI
                                  0xFF, 0xC0, 0x00, 0x0B, 8,    0x2E, 0xE0, 0x2E, 0xE0, 1,
                                  1,    0x11, 0,    0xFF, 0xC0, 0x00, 0x0B, 8,    0x00, 0x10,
                                  0x00, 0x10, 1,    1,    0x11, 0,    0xFF, 0xD9};
    const auto first = px::read_image_header(two_frames, sizeof two_frames);
    CHECK(first->width == 12000);
    CHECK(first->height == 12000);
    const uint8_t other[] = {'B', 'M', 0, 0, 0, 0};
    CHECK_FALSE(px::read_image_header(other, sizeof other).has_value());
  }

  TEST_CASE("a file that is not a pack is refused with its path") {
    auto open = [](const fs::path& file) { px::PackedImages packed(file); };
    const auto path =
        fs::temp_directory_path() / ("parallax-not-a-pack-" + std::to_string(::getpid()));
    std::ofstream(path) << "PXPACK00 and some bytes";
    CHECK_THROWS_WITH_AS(open(path), doctest::Contains("is not a parallax pack"), px::InputError);
    std::ofstream(path, std::ios::trunc) << std::string("PXPACK01") + std::string(4, '\0');
    CHECK_THROWS_WITH_AS(open(path), doctest::Contains("truncated"), px::InputError);
    CHECK_THROWS_WITH_AS(open("/nonexistent.pxpack"),
                         doctest::Contains("cannot open packed images"), px::InputError);
    fs::remove(path);
  }
}
