#include "euds/build_info.hpp"

#include "euds/parallel.hpp"
#include "euds/row_entropy.hpp"

#ifndef EUDS_VERSION
#define EUDS_VERSION "0.0.0+dev"
#endif
#ifndef EUDS_CXX_COMPILER
#define EUDS_CXX_COMPILER "unknown"
#endif

namespace euds {

BuildInfo build_info() {
  BuildInfo info;
  info.version = EUDS_VERSION;
  info.compiler = EUDS_CXX_COMPILER;
  info.simd = row_entropy_isa();
  info.simd_built = "scalar,avx2,avx512";
  info.threads = num_threads();
  return info;
}

}  // namespace euds
