// Prints a GGUF file's header, metadata and tensor table.
#include <cstdio>

#include "engine/formats/gguf.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: gguf_dump FILE.gguf\n");
    return 2;
  }
  auto file = otaro::engine::gguf::GgufFile::Open(argv[1]);
  if (!file.ok()) {
    std::fprintf(stderr, "%s\n", file.status().ToString().c_str());
    return 1;
  }
  const auto& f = **file;
  std::printf("GGUF v%u, alignment %llu, data at %llu, %zu metadata, %zu tensors\n", f.version(),
              static_cast<unsigned long long>(f.alignment()),
              static_cast<unsigned long long>(f.data_offset()), f.metadata().size(),
              f.tensors().size());
  for (const auto& [key, value] : f.metadata()) {
    std::printf("  %.*s = %s\n", static_cast<int>(key.size()), key.data(),
                value.DebugString().c_str());
  }
  for (const auto& t : f.tensors()) {
    std::printf("  tensor %.*s %s offset %llu\n", static_cast<int>(t.name.size()), t.name.data(),
                t.ShapeString().c_str(), static_cast<unsigned long long>(t.offset));
  }
  return 0;
}
