#pragma once

#include <string>

namespace euds {

struct BuildInfo {
  std::string version;
  std::string compiler;
  std::string simd;        // kernel chosen at run time on this CPU: avx512, avx2 or scalar
  std::string simd_built;  // kernels compiled into this build
  int threads;
};

BuildInfo build_info();

}  // namespace euds
