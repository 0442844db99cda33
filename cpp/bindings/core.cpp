// The one pybind11 file: builds the private module euds._core over the C++ core.
//
// Rules at this boundary: arrays are taken as they are (no silent dtype or layout copies); a
// wrong dtype, shape or layout raises ValueError naming the argument and the fix (the checks
// live in arrays.hpp); outputs may be given by the caller (`out=`) or are allocated here; the
// GIL is released around compute, inside a ComputeScope (see Compute).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "arrays.hpp"
#include "euds/build_info.hpp"
#include "euds/information.hpp"
#include "euds/minhash.hpp"
#include "euds/parallel.hpp"
#include "euds/pooling.hpp"
#include "euds/row_entropy.hpp"
#include "euds/select.hpp"
#ifdef EUDS_WITH_CUDA
#include "euds/cuda.hpp"
#endif

namespace py = pybind11;
using namespace pybind11::literals;

namespace {

using namespace euds::bindings;

// Every stretch of compute here: the GIL released, then a ComputeScope open, so a fork() from
// a thread holding the GIL waits until this thread's allocations and frees are done.
struct Compute {
  py::gil_scoped_release release;
  euds::ComputeScope scope;
};

// The dtypes each kind of argument accepts (checked by take_all(), dispatched on by dispatch()).
using F32 = Dtypes<DT::f32>;
using F64 = Dtypes<DT::f64>;
using I64 = Dtypes<DT::i64>;
using Logits = Dtypes<DT::f32, DT::f16>;
using Ids = Dtypes<DT::i32, DT::u32, DT::i64>;
using RowIds = Dtypes<DT::i32, DT::i64>;  // target and segment ids
using RowMask = Dtypes<DT::b1, DT::u8>;
using TokenMask = Dtypes<DT::i64, DT::u8, DT::b1>;
using Scores = Dtypes<DT::f32, DT::f64>;
using U32 = Dtypes<DT::u32>;

py::array_t<bool> bool_output(py::ssize_t n) { return py::array_t<bool>(n); }

// The optional per-row arrays of the row kernels: target ids and a row mask.
struct RowArgs {
  bool has_targets = false, has_mask = false;
  py::array targets, mask;  // a default py::array is an empty array, not a null handle
};

template <class TargetTypes>
RowArgs row_args(const py::object& targets_obj, const py::object& mask_obj, py::ssize_t n,
                 TargetTypes target_types) {
  RowArgs a;
  a.has_targets = !targets_obj.is_none();
  a.has_mask = !mask_obj.is_none();
  if (a.has_targets) {
    a.targets = take(targets_obj, "targets", 1, target_types);
    require_len(a.targets, "targets", n, "one target id per row");
  }
  if (a.has_mask) {
    a.mask = take(mask_obj, "mask", 1, RowMask{});
    require_len(a.mask, "mask", n, "one flag per row");
  }
  return a;
}

// ---------------------------------------------------------------------------------------------
// Information entropy

struct Csr {
  py::array offsets, ids;
  std::size_t n_samples, n_ids;
};

Csr check_csr(const py::object& offsets_obj, const py::object& ids_obj) {
  Csr c;
  const auto arrays = take_all(In{offsets_obj, "offsets", 1, I64{}}, In{ids_obj, "ids", 1, Ids{}});
  c.offsets = arrays[0];
  c.ids = arrays[1];
  if (c.offsets.shape(0) < 1)
    throw py::value_error("offsets must hold n_samples + 1 >= 1 entries (start with 0)");
  c.n_samples = static_cast<std::size_t>(c.offsets.shape(0) - 1);
  c.n_ids = static_cast<std::size_t>(c.ids.shape(0));
  return c;
}

// The per-sample output of the CSR kernels, checked against both inputs.
py::array_t<double> csr_output(const Csr& c, const py::object& out) {
  auto result = output<double>(out, "out", static_cast<py::ssize_t>(c.n_samples));
  if (!out.is_none()) {
    require_no_overlap(result, "out", c.offsets, "offsets");
    require_no_overlap(result, "out", c.ids, "ids");
  }
  return result;
}

py::array_t<double> information_entropy(const py::object& offsets, const py::object& ids,
                                        const py::object& out) {
  const Csr c = check_csr(offsets, ids);
  auto result = csr_output(c, out);
  const auto* off = static_cast<const std::int64_t*>(c.offsets.data());
  double* dst = result.mutable_data();
  dispatch(c.ids, Ids{}, [&](auto* id) {
    const Compute compute;
    euds::information_entropy(c.n_samples, off, c.n_ids, id, dst);
  });
  return result;
}

// ---------------------------------------------------------------------------------------------
// MinHash band keys (near duplicates)

py::array_t<std::uint64_t> minhash_bands(const py::object& offsets_obj, const py::object& chars_obj,
                                         py::ssize_t shingle, py::ssize_t bands, py::ssize_t rows,
                                         std::uint64_t seed) {
  const auto [offsets, chars] =
      take_all(In{offsets_obj, "offsets", 1, I64{}}, In{chars_obj, "chars", 1, U32{}});
  if (offsets.shape(0) < 1)
    throw py::value_error("offsets must hold n_texts + 1 >= 1 entries (start with 0)");
  if (shingle < 1 || bands < 1 || rows < 1)
    throw py::value_error("shingle, bands and rows must be >= 1");
  const auto n = static_cast<std::size_t>(offsets.shape(0) - 1);
  py::array_t<std::uint64_t> out({static_cast<py::ssize_t>(n), bands});
  const auto* off = static_cast<const std::int64_t*>(offsets.data());
  const auto* ch = static_cast<const std::uint32_t*>(chars.data());
  std::uint64_t* dst = out.mutable_data();
  {
    const Compute compute;
    euds::minhash_bands(n, off, static_cast<std::size_t>(chars.shape(0)), ch,
                        static_cast<std::size_t>(shingle), static_cast<std::size_t>(bands),
                        static_cast<std::size_t>(rows), seed, dst);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Row entropy (generative and semantic)

py::tuple row_softmax_entropy(const py::object& in_obj, const py::object& targets_obj,
                              const py::object& mask_obj, float scale,
                              const py::object& entropy_out, const py::object& nll_out) {
  py::array in = take(in_obj, "logits", 2, Logits{});
  const auto rows = static_cast<std::size_t>(in.shape(0));
  const auto cols = static_cast<std::size_t>(in.shape(1));
  const auto n = static_cast<py::ssize_t>(rows);

  const RowArgs args = row_args(targets_obj, mask_obj, n, RowIds{});
  const bool has_targets = args.has_targets, has_mask = args.has_mask;
  const py::array& targets = args.targets;
  const py::array& mask = args.mask;
  auto entropy = output<float>(entropy_out, "entropy_out", n);
  // Each given output against every array the kernel reads or writes besides it.
  auto check_out = [&](const py::array& out, const std::string& name) {
    require_no_overlap(out, name, in, "logits");
    if (has_targets) require_no_overlap(out, name, targets, "targets");
    if (has_mask) require_no_overlap(out, name, mask, "mask");
  };
  if (!entropy_out.is_none()) check_out(entropy, "entropy_out");
  py::object nll_obj = py::none();
  float* nll_ptr = nullptr;
  if (has_targets) {
    auto nll = output<float>(nll_out, "nll_out", n);
    if (!nll_out.is_none()) {
      check_out(nll, "nll_out");
      require_no_overlap(nll, "nll_out", entropy, "entropy_out");
    }
    nll_ptr = nll.mutable_data();
    nll_obj = nll;
  }
  const auto* mask_ptr = has_mask ? static_cast<const std::uint8_t*>(mask.data()) : nullptr;
  float* ent_ptr = entropy.mutable_data();
  dispatch(in, Logits{}, [&](auto* x) {
    auto run = [&](auto* t) {
      const Compute compute;
      euds::row_softmax_entropy(rows, cols, x, scale, t, mask_ptr, ent_ptr, nll_ptr);
    };
    if (has_targets)
      dispatch(targets, RowIds{}, run);
    else  // no targets: any overload takes a null pointer
      run(static_cast<const std::int32_t*>(nullptr));
  });
  return py::make_tuple(entropy, nll_obj);
}

py::tuple segment_mean(const py::object& values_obj, const py::object& segment_obj,
                       py::ssize_t n_segments) {
  const auto [values, segment] =
      take_all(In{values_obj, "values", 1, F32{}}, In{segment_obj, "segment", 1, RowIds{}});
  require_len(segment, "segment", values.shape(0), "one segment id per value");
  if (n_segments < 0) throw py::value_error("n_segments must be >= 0");
  py::array_t<double> mean(n_segments);
  py::array_t<std::int64_t> count(n_segments);
  const auto rows = static_cast<std::size_t>(values.shape(0));
  const auto* v = static_cast<const float*>(values.data());
  double* m = mean.mutable_data();
  std::int64_t* c = count.mutable_data();
  dispatch(segment, RowIds{}, [&](auto* s) {
    const Compute compute;
    euds::segment_mean(rows, v, s, static_cast<std::size_t>(n_segments), m, c);
  });
  return py::make_tuple(mean, count);
}

// ---------------------------------------------------------------------------------------------
// Pooling (semantic embeddings)

py::array_t<float> mean_pool_normalize(const py::object& hidden_obj, const py::object& mask_obj,
                                       const py::object& out_obj) {
  const auto [hidden, mask] =
      take_all(In{hidden_obj, "hidden", 3, F32{}}, In{mask_obj, "mask", 2, TokenMask{}});
  if (mask.shape(0) != hidden.shape(0) || mask.shape(1) != hidden.shape(1))
    throw py::value_error("mask must have shape [batch, tokens] = [" +
                          std::to_string(hidden.shape(0)) + ", " + std::to_string(hidden.shape(1)) +
                          "] (hidden's first two dimensions)");
  const auto batch = static_cast<std::size_t>(hidden.shape(0));
  const auto tokens = static_cast<std::size_t>(hidden.shape(1));
  const auto dim = static_cast<std::size_t>(hidden.shape(2));
  py::array_t<float> out;
  if (out_obj.is_none()) {
    out = py::array_t<float>({hidden.shape(0), hidden.shape(2)});
  } else {
    py::array o = take(out_obj, "out", 2, F32{});
    if (o.shape(0) != hidden.shape(0) || o.shape(1) != hidden.shape(2))
      throw py::value_error("out must have shape [batch, dim]");
    if (!o.writeable()) throw py::value_error("out must be writeable");
    require_no_overlap(o, "out", hidden, "hidden");
    require_no_overlap(o, "out", mask, "mask");
    out = py::reinterpret_borrow<py::array_t<float>>(o);
  }
  const auto* h = static_cast<const float*>(hidden.data());
  float* dst = out.mutable_data();
  dispatch(mask, TokenMask{}, [&](auto* m) {
    const Compute compute;
    euds::mean_pool_normalize(batch, tokens, dim, h, m, dst);
  });
  return out;
}

// ---------------------------------------------------------------------------------------------
// Selection

py::array_t<double> nan_quantiles(const py::object& x_obj, const py::object& q_obj) {
  py::array x = take(x_obj, "x", 1, Scores{});
  py::array q = take(q_obj, "q", 1, F64{});
  py::array_t<double> out(q.shape(0));
  const auto n = static_cast<std::size_t>(x.shape(0));
  const auto nq = static_cast<std::size_t>(q.shape(0));
  const auto* qp = static_cast<const double*>(q.data());
  double* o = out.mutable_data();
  dispatch(x, Scores{}, [&](auto* xp) {
    const Compute compute;
    euds::nan_quantiles(n, xp, nq, qp, o);
  });
  return out;
}

py::array_t<bool> interval_mask(const py::object& x_obj, double lo, double hi) {
  py::array x = take(x_obj, "x", 1, Scores{});
  const auto n = static_cast<std::size_t>(x.shape(0));
  auto out = bool_output(x.shape(0));
  auto* o = reinterpret_cast<std::uint8_t*>(out.mutable_data());
  dispatch(x, Scores{}, [&](auto* xp) {
    const Compute compute;
    euds::interval_mask(n, xp, lo, hi, o);
  });
  return out;
}

py::array_t<double> percentile_ranks(const py::object& x_obj) {
  py::array x = take(x_obj, "x", 1, Scores{});
  const auto n = static_cast<std::size_t>(x.shape(0));
  py::array_t<double> out(x.shape(0));
  double* o = out.mutable_data();
  dispatch(x, Scores{}, [&](auto* xp) {
    const Compute compute;
    euds::percentile_ranks(n, xp, o);
  });
  return out;
}

py::array rank_matrix(const py::object& obj) {
  py::array r = take(obj, "ranks", 2, F64{});
  if (r.shape(0) < 1) throw py::value_error("ranks must hold at least one column (shape [k, n])");
  return r;
}

py::array_t<double> mean_rank(const py::object& ranks_obj) {
  py::array r = rank_matrix(ranks_obj);
  const auto k = static_cast<std::size_t>(r.shape(0));
  const auto n = static_cast<std::size_t>(r.shape(1));
  py::array_t<double> out(r.shape(1));
  const auto* rp = static_cast<const double*>(r.data());
  double* o = out.mutable_data();
  {
    const Compute compute;
    euds::mean_rank(k, n, rp, o);
  }
  return out;
}

py::tuple band_select(const py::object& ranks_obj, double position, py::ssize_t keep,
                      std::uint64_t seed) {
  py::array r = rank_matrix(ranks_obj);
  if (keep < 0) throw py::value_error("keep must be >= 0");
  const auto k = static_cast<std::size_t>(r.shape(0));
  const auto n = static_cast<std::size_t>(r.shape(1));
  auto mask = bool_output(r.shape(1));
  const auto* rp = static_cast<const double*>(r.data());
  auto* m = reinterpret_cast<std::uint8_t*>(mask.mutable_data());
  double width;
  {
    const Compute compute;
    width = euds::band_select(k, n, rp, position, static_cast<std::size_t>(keep), seed, m);
  }
  return py::make_tuple(mask, width);
}

// ---------------------------------------------------------------------------------------------
// UnigramCounts

// One counter may be shared by Python threads: every method takes the object's mutex, always
// after releasing the GIL (a thread holding the mutex never waits for the GIL, so the two
// locks cannot deadlock). add() may grow the table, so even readers must take it.
class PyUnigramCounts {
 public:
  explicit PyUnigramCounts(std::size_t vocab_size) : counts_(checked_vocab(vocab_size)) {}

  void add(const py::object& offsets, const py::object& ids) {
    const Csr c = check_csr(offsets, ids);
    const auto* off = static_cast<const std::int64_t*>(c.offsets.data());
    dispatch(c.ids, Ids{}, [&](auto* id) {
      const Compute compute;
      std::lock_guard<std::mutex> lock(mutex_);
      counts_.add(c.n_samples, off, c.n_ids, id);
    });
  }

  py::array_t<double> self_information(const py::object& offsets, const py::object& ids,
                                       double alpha, const py::object& out) const {
    const Csr c = check_csr(offsets, ids);
    auto result = csr_output(c, out);
    const auto* off = static_cast<const std::int64_t*>(c.offsets.data());
    double* dst = result.mutable_data();
    dispatch(c.ids, Ids{}, [&](auto* id) {
      const Compute compute;
      std::lock_guard<std::mutex> lock(mutex_);
      counts_.self_information(c.n_samples, off, c.n_ids, id, alpha, dst);
    });
    return result;
  }

  void merge(const PyUnigramCounts& other) {
    const Compute compute;
    if (&other == this) {  // a.merge(a) doubles the counts; one lock, taken once
      std::lock_guard<std::mutex> lock(mutex_);
      const euds::UnigramCounts copy = counts_;
      counts_.merge(copy);
      return;
    }
    // Both locks at once, in an order std::scoped_lock picks: a.merge(b) racing b.merge(a)
    // cannot deadlock.
    std::scoped_lock lock(mutex_, other.mutex_);
    counts_.merge(other.counts_);
  }

  std::uint64_t total() const {
    const Compute compute;
    std::lock_guard<std::mutex> lock(mutex_);
    return counts_.total();
  }

  std::size_t vocab_size() const {
    const Compute compute;
    std::lock_guard<std::mutex> lock(mutex_);
    return counts_.vocab_size();
  }

  py::array_t<std::uint64_t> counts() const {
    std::vector<std::uint64_t> copy;
    {
      const Compute compute;
      std::lock_guard<std::mutex> lock(mutex_);
      copy.assign(counts_.data(), counts_.data() + counts_.vocab_size());
    }
    py::array_t<std::uint64_t> out(static_cast<py::ssize_t>(copy.size()));
    std::copy(copy.begin(), copy.end(), out.mutable_data());
    return out;
  }

  static PyUnigramCounts from_counts(const py::object& obj) {
    py::array a = as_array(obj, "counts");
    require_layout(a, "counts", 1);
    require_native(a, "counts");
    if (!same_dtype(a.dtype(), py::dtype::of<std::uint64_t>()))
      throw py::value_error("counts must have dtype uint64, got " + dtype_str(a));
    checked_vocab(static_cast<std::size_t>(a.shape(0)));
    PyUnigramCounts result(0);
    result.counts_.assign(static_cast<std::size_t>(a.shape(0)),
                          static_cast<const std::uint64_t*>(a.data()));
    return result;
  }

  // pybind11 moves the object returned by from_counts; a std::mutex cannot move, and a fresh
  // object needs none of the old one's lock state.
  PyUnigramCounts(PyUnigramCounts&& other) noexcept : counts_(std::move(other.counts_)) {}

 private:
  static std::size_t checked_vocab(std::size_t vocab_size) {
    if (vocab_size > static_cast<std::size_t>(euds::UnigramCounts::kMaxVocab))
      throw py::value_error("vocab_size must be at most 2^31 (token ids are below 2^31), got " +
                            std::to_string(vocab_size));
    return vocab_size;
  }

  euds::UnigramCounts counts_;
  mutable std::mutex mutex_;
};

// ---------------------------------------------------------------------------------------------
// CUDA

#ifdef EUDS_WITH_CUDA
constexpr bool kCudaBuilt = true;
#else
constexpr bool kCudaBuilt = false;
#endif

[[noreturn]] void no_cuda() {
  throw std::runtime_error(
      "euds was built without CUDA (EUDS_ENABLE_CUDA=OFF or no nvcc at build time)");
}

int cuda_device_count() {
#ifdef EUDS_WITH_CUDA
  return euds::cuda::device_count();
#else
  return 0;
#endif
}

py::tuple cuda_row_softmax_entropy(const py::object& in_obj, const py::object& targets_obj,
                                   const py::object& mask_obj, float scale, int device) {
#ifdef EUDS_WITH_CUDA
  py::array in = take(in_obj, "logits", 2, Logits{});
  const auto n = in.shape(0);
  const RowArgs args = row_args(targets_obj, mask_obj, n, I64{});
  const bool has_targets = args.has_targets, has_mask = args.has_mask;
  const py::array& targets = args.targets;
  const py::array& mask = args.mask;
  py::array_t<float> entropy(n);
  py::object nll_obj = py::none();
  float* nll_ptr = nullptr;
  if (has_targets) {
    py::array_t<float> nll(n);
    nll_ptr = nll.mutable_data();
    nll_obj = nll;
  }
  const auto* t = has_targets ? static_cast<const std::int64_t*>(targets.data()) : nullptr;
  const auto* m = has_mask ? static_cast<const std::uint8_t*>(mask.data()) : nullptr;
  float* e = entropy.mutable_data();
  const bool f16 = dtype_of(in) == DT::f16;
  const void* x = in.data();
  {
    const Compute compute;
    euds::cuda::row_softmax_entropy_host(static_cast<std::size_t>(n),
                                         static_cast<std::size_t>(in.shape(1)), x, f16, scale, t, m,
                                         e, nll_ptr, device);
  }
  return py::make_tuple(entropy, nll_obj);
#else
  (void)in_obj, (void)targets_obj, (void)mask_obj, (void)scale, (void)device;
  no_cuda();
#endif
}

// Device-pointer entry point for buffers that already live on the GPU (ONNX Runtime I/O
// binding): no copies, queued on `stream`, checked before returning.
void cuda_row_softmax_entropy_ptr(std::uintptr_t in, std::size_t rows, std::size_t cols,
                                  const std::string& dtype, float scale, std::uintptr_t targets,
                                  const std::string& target_dtype, std::uintptr_t mask,
                                  std::uintptr_t entropy, std::uintptr_t nll,
                                  std::uintptr_t stream) {
#ifdef EUDS_WITH_CUDA
  if (dtype != "float32" && dtype != "float16")
    throw py::value_error("dtype must be 'float32' or 'float16', got '" + dtype + "'");
  if (target_dtype != "int32" && target_dtype != "int64")
    throw py::value_error("target_dtype must be 'int32' or 'int64', got '" + target_dtype + "'");
  if (in == 0 || entropy == 0) throw py::value_error("in and entropy must be device pointers");
  auto* m = reinterpret_cast<const std::uint8_t*>(mask);
  auto* e = reinterpret_cast<float*>(entropy);
  auto* n = reinterpret_cast<float*>(nll);
  auto* s = reinterpret_cast<void*>(stream);
  const Compute compute;
  auto run = [&](auto* x) {
    if (target_dtype == "int64")
      euds::cuda::row_softmax_entropy(rows, cols, x, scale,
                                      reinterpret_cast<const std::int64_t*>(targets), m, e, n, s);
    else
      euds::cuda::row_softmax_entropy(rows, cols, x, scale,
                                      reinterpret_cast<const std::int32_t*>(targets), m, e, n, s);
  };
  if (dtype == "float16")
    run(reinterpret_cast<const std::uint16_t*>(in));
  else
    run(reinterpret_cast<const float*>(in));
  euds::cuda::check_errors(s);
#else
  (void)in, (void)rows, (void)cols, (void)dtype, (void)scale, (void)targets, (void)target_dtype,
      (void)mask, (void)entropy, (void)nll, (void)stream;
  no_cuda();
#endif
}

// Takes any Python integer: one beyond 64 bits is out of range like any other, a ValueError
// rather than pybind11's TypeError for a failed conversion.
void set_num_threads(const py::object& n_obj) {
  if (!PyIndex_Check(n_obj.ptr()))
    throw py::type_error("set_num_threads: n must be an integer, got " +
                         py::str(py::type::of(n_obj).attr("__name__")).cast<std::string>());
  const auto n = py::reinterpret_steal<py::object>(PyNumber_Index(n_obj.ptr()));
  if (!n) throw py::error_already_set();
  int overflow = 0;
  const long long v = PyLong_AsLongLongAndOverflow(n.ptr(), &overflow);
  if (v == -1 && PyErr_Occurred()) throw py::error_already_set();
  if (overflow != 0 || v < 0 || v > euds::kMaxThreads)
    throw py::value_error("set_num_threads: n must be 0 (the default) or 1 to " +
                          std::to_string(euds::kMaxThreads) + ", got " +
                          py::str(n).cast<std::string>());
  const Compute compute;  // may join idle workers
  euds::set_num_threads(v);
}

py::dict build_info() {
  const euds::BuildInfo info = euds::build_info();
  py::dict d;
  d["version"] = info.version;
  d["compiler"] = info.compiler;
  d["simd"] = info.simd;
  d["simd_built"] = info.simd_built;
  d["threads"] = info.threads;
  d["cuda_compiled"] = kCudaBuilt;
#ifdef EUDS_WITH_CUDA
  const int devices = euds::cuda::device_count();
  d["cuda_version"] = euds::cuda::runtime_version();
  d["cuda_devices"] = devices;
  d["cuda_device"] = devices > 0 ? euds::cuda::device_name(0) : std::string();
#else
  d["cuda_version"] = py::none();
  d["cuda_devices"] = 0;
  d["cuda_device"] = std::string();
#endif
  return d;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "euds compiled core (private: use the euds package)";

  static py::exception<std::runtime_error> euds_error(m, "EudsError", PyExc_RuntimeError);
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const py::error_already_set&) {
      throw;
    } catch (const py::builtin_exception&) {
      throw;
    } catch (const std::invalid_argument& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const std::out_of_range& e) {
      PyErr_SetString(PyExc_IndexError, e.what());
    } catch (const std::bad_alloc&) {
      PyErr_SetString(PyExc_MemoryError, "euds core: out of memory");
    } catch (const std::exception& e) {
      py::set_error(euds_error, e.what());
    }
  });

  m.def("information_entropy", &information_entropy, "offsets"_a, "ids"_a, "out"_a = py::none());
  m.def("row_softmax_entropy", &row_softmax_entropy, "logits"_a, "targets"_a = py::none(),
        "mask"_a = py::none(), "scale"_a = 1.0f, "entropy_out"_a = py::none(),
        "nll_out"_a = py::none());
  m.def("segment_mean", &segment_mean, "values"_a, "segment"_a, "n_segments"_a);
  m.def("mean_pool_normalize", &mean_pool_normalize, "hidden"_a, "mask"_a, "out"_a = py::none());
  m.def("nan_quantiles", &nan_quantiles, "x"_a, "q"_a);
  m.def("interval_mask", &interval_mask, "x"_a, "lo"_a, "hi"_a);
  m.def("percentile_ranks", &percentile_ranks, "x"_a);
  m.def("mean_rank", &mean_rank, "ranks"_a);
  m.def("band_select", &band_select, "ranks"_a, "position"_a, "keep"_a, "seed"_a = 0);
  m.def("tie_key", &euds::tie_key, "i"_a, "seed"_a = 0);
  m.def("minhash_bands", &minhash_bands, "offsets"_a, "chars"_a, "shingle"_a, "bands"_a, "rows"_a,
        "seed"_a = 0);

  py::class_<PyUnigramCounts>(m, "UnigramCounts")
      .def(py::init<std::size_t>(), "vocab_size"_a = 0)
      .def("add", &PyUnigramCounts::add, "offsets"_a, "ids"_a)
      .def("self_information", &PyUnigramCounts::self_information, "offsets"_a, "ids"_a,
           "alpha"_a = 0.0, "out"_a = py::none())
      .def("merge", &PyUnigramCounts::merge, "other"_a)
      .def_property_readonly("total", &PyUnigramCounts::total)
      .def_property_readonly("vocab_size", &PyUnigramCounts::vocab_size)
      .def("counts", &PyUnigramCounts::counts)
      .def_static("from_counts", &PyUnigramCounts::from_counts, "counts"_a)
      .def(py::pickle([](const PyUnigramCounts& c) { return py::make_tuple(c.counts()); },
                      [](const py::tuple& t) { return PyUnigramCounts::from_counts(t[0]); }));

  m.def("cuda_device_count", &cuda_device_count);
  m.def("cuda_row_softmax_entropy", &cuda_row_softmax_entropy, "logits"_a, "targets"_a = py::none(),
        "mask"_a = py::none(), "scale"_a = 1.0f, "device"_a = 0);
  m.def("cuda_row_softmax_entropy_ptr", &cuda_row_softmax_entropy_ptr, "logits_ptr"_a, "rows"_a,
        "cols"_a, "dtype"_a, "scale"_a, "targets_ptr"_a, "target_dtype"_a, "mask_ptr"_a,
        "entropy_ptr"_a, "nll_ptr"_a, "stream"_a = 0);

  m.attr("MAX_THREADS") = euds::kMaxThreads;
  m.def("num_threads", &euds::num_threads);
  m.def("set_num_threads", &set_num_threads, "n"_a);
  m.def("build_info", &build_info);
}
