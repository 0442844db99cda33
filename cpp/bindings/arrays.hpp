// Array checks for the bindings in core.cpp: every wrong dtype, shape or layout raises ValueError
// naming the argument and the fix; nothing is silently copied or converted. Also the one dtype
// dispatch: a checked array handed to a kernel as a typed pointer.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>

namespace euds::bindings {

namespace py = pybind11;

enum class DT { f16, f32, f64, i32, u32, i64, u8, b1, other };

// The element type a kernel reads for each dtype: float16 as raw binary16 words, bool as bytes.
template <DT D>
struct ctype;
template <>
struct ctype<DT::f16> {
  using type = std::uint16_t;
  static constexpr const char* name = "float16";
};
template <>
struct ctype<DT::f32> {
  using type = float;
  static constexpr const char* name = "float32";
};
template <>
struct ctype<DT::f64> {
  using type = double;
  static constexpr const char* name = "float64";
};
template <>
struct ctype<DT::i32> {
  using type = std::int32_t;
  static constexpr const char* name = "int32";
};
template <>
struct ctype<DT::u32> {
  using type = std::uint32_t;
  static constexpr const char* name = "uint32";
};
template <>
struct ctype<DT::i64> {
  using type = std::int64_t;
  static constexpr const char* name = "int64";
};
template <>
struct ctype<DT::u8> {
  using type = std::uint8_t;
  static constexpr const char* name = "uint8";
};
template <>
struct ctype<DT::b1> {
  using type = std::uint8_t;
  static constexpr const char* name = "bool";
};

// The dtypes one argument accepts, in the order its error message lists them; the same list
// drives take_all() (the check) and dispatch() (the typed call), so the two cannot disagree.
template <DT... D>
struct Dtypes {
  static std::string names() {
    const char* all[] = {ctype<D>::name...};
    constexpr std::size_t n = sizeof...(D);
    std::string s = all[0];
    for (std::size_t i = 1; i < n; ++i) s += std::string(i + 1 == n ? " or " : ", ") + all[i];
    return s;
  }
};

// numpy reports '=' (native), '|' (not applicable), '<' or '>'.
inline bool native_order(const py::dtype& d) {
  const char order = d.byteorder();
  const std::uint16_t probe = 1;
  const bool little = *reinterpret_cast<const std::uint8_t*>(&probe) == 1;
  return order == '=' || order == '|' || order == (little ? '<' : '>');
}

// dtype equality by meaning (numpy may hand out several dtype objects for one type).
inline bool same_dtype(const py::dtype& a, const py::dtype& b) {
  return a.kind() == b.kind() && a.itemsize() == b.itemsize() && native_order(a);
}

inline DT dtype_of(const py::array& a) {
  const py::dtype d = a.dtype();
  if (!native_order(d)) return DT::other;
  const char kind = d.kind();
  const auto size = d.itemsize();
  if (kind == 'f' && size == 2) return DT::f16;
  if (kind == 'f' && size == 4) return DT::f32;
  if (kind == 'f' && size == 8) return DT::f64;
  if (kind == 'i' && size == 4) return DT::i32;
  if (kind == 'u' && size == 4) return DT::u32;
  if (kind == 'i' && size == 8) return DT::i64;
  if (kind == 'u' && size == 1) return DT::u8;
  if (kind == 'b' && size == 1) return DT::b1;
  return DT::other;
}

inline std::string dtype_str(const py::array& a) { return py::str(a.dtype()).cast<std::string>(); }

inline py::array as_array(const py::object& obj, const std::string& name) {
  if (!py::isinstance<py::array>(obj))
    throw py::value_error(name + " must be a numpy.ndarray, got " +
                          py::str(py::type::of(obj).attr("__name__")).cast<std::string>() +
                          "; pass np.asarray(" + name + ")");
  return py::reinterpret_borrow<py::array>(obj);
}

inline void require_layout(const py::array& a, const std::string& name, py::ssize_t ndim) {
  if (a.ndim() != ndim)
    throw py::value_error(name + " must be " + std::to_string(ndim) + "-D, got shape with " +
                          std::to_string(a.ndim()) + " dimensions");
  if (!(a.flags() & py::array::c_style))
    throw py::value_error(name + " must be C-contiguous; pass np.ascontiguousarray(" + name + ")");
  // The kernels read through typed pointers; a view at an odd byte offset would make that
  // undefined behaviour (fine on x86 in practice, but the sanitizer build rightly aborts).
  if (!(a.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_))
    throw py::value_error(name + " is not aligned to its dtype (a view at an odd byte offset); " +
                          "pass " + name + ".copy()");
}

inline void require_native(const py::array& a, const std::string& name) {
  if (!native_order(a.dtype()))
    throw py::value_error(name + " is not in native byte order (" + dtype_str(a) +
                          "); convert with " + name + ".astype(" + name +
                          ".dtype.newbyteorder('='))");
}

template <DT... D>
void require_dtype(const py::array& a, const std::string& name, Dtypes<D...> ok) {
  require_native(a, name);
  const DT d = dtype_of(a);
  if (((d == D) || ...)) return;
  throw py::value_error(name + " must have dtype " + ok.names() + ", got " + dtype_str(a) +
                        "; convert with " + name + ".astype(...)");
}

// One input argument of take_all(): an ndarray of `ndim` dimensions, C-contiguous, aligned,
// with a dtype of `types`.
template <class Types>
struct In {
  const py::object& obj;
  const char* name;
  py::ssize_t ndim;
  Types types;
};
template <class Types>
In(const py::object&, const char*, py::ssize_t, Types) -> In<Types>;

// Checks several inputs phase by phase (all are arrays, then all layouts, then all dtypes), so a
// call with several bad arguments reports the first failing phase, as it always has.
template <class... Types>
std::array<py::array, sizeof...(Types)> take_all(const In<Types>&... in) {
  std::array<py::array, sizeof...(Types)> a{as_array(in.obj, in.name)...};
  std::size_t i = 0;
  (require_layout(a[i++], in.name, in.ndim), ...);
  i = 0;
  (require_dtype(a[i++], in.name, in.types), ...);
  return a;
}

template <class Types>
py::array take(const py::object& obj, const char* name, py::ssize_t ndim, Types types) {
  return take_all(In{obj, name, ndim, types})[0];
}

// Calls f with a's data as a const pointer to its element type; a must have passed take_all() with
// the same list (a dtype outside it is a bug in the binding, not the caller's error).
template <DT... D, class F>
void dispatch(const py::array& a, Dtypes<D...>, F&& f) {
  const DT d = dtype_of(a);
  const bool called =
      ((d == D && (f(static_cast<const typename ctype<D>::type*>(a.data())), true)) || ...);
  if (!called) throw std::logic_error("euds bindings: dispatch on an unchecked dtype");
}

inline void require_len(const py::array& a, const std::string& name, py::ssize_t n,
                        const std::string& what) {
  if (a.shape(0) != n)
    throw py::value_error(name + " must have length " + std::to_string(n) + " (" + what +
                          "), got " + std::to_string(a.shape(0)));
}

// An output array: the caller's (checked) or a new one.
template <class T>
py::array_t<T> output(const py::object& out, const std::string& name, py::ssize_t n) {
  if (out.is_none()) return py::array_t<T>(n);
  py::array a = as_array(out, name);
  require_layout(a, name, 1);
  require_native(a, name);
  if (!same_dtype(a.dtype(), py::dtype::of<T>()))
    throw py::value_error(name + " must have dtype " +
                          py::str(py::dtype::of<T>()).cast<std::string>() + ", got " +
                          dtype_str(a));
  require_len(a, name, n, "one value per row");
  if (!a.writeable()) throw py::value_error(name + " must be writeable");
  return py::reinterpret_borrow<py::array_t<T>>(a);
}

// The bytes [first, last) an array's elements span (exact for the contiguous arrays taken here).
inline std::pair<std::uintptr_t, std::uintptr_t> byte_extent(const py::array& a) {
  if (a.size() == 0) return {0, 0};
  auto first = reinterpret_cast<std::uintptr_t>(a.data());
  auto last = first + static_cast<std::uintptr_t>(a.itemsize());
  for (py::ssize_t d = 0; d < a.ndim(); ++d) {
    const auto step = static_cast<std::intptr_t>(a.strides(d)) * (a.shape(d) - 1);
    if (step < 0)
      first -= static_cast<std::uintptr_t>(-step);
    else
      last += static_cast<std::uintptr_t>(step);
  }
  return {first, last};
}

// The kernels write outputs while threads still read the inputs: an output sharing memory with
// an input (say a float view of the offsets) would corrupt the values being read, and bounds
// already checked, into out-of-range reads.
inline void require_no_overlap(const py::array& out, const std::string& out_name,
                               const py::array& in, const std::string& in_name) {
  const auto o = byte_extent(out), i = byte_extent(in);
  if (o.first < i.second && i.first < o.second)
    throw py::value_error(out_name + " overlaps " + in_name + " in memory; pass a separate " +
                          "array for " + out_name + " (a new np.empty of the same shape and " +
                          "dtype) or leave it None");
}

}  // namespace euds::bindings
