// Malleable convolution on CPU: forward, grad x and grad of the low-resolution grid, and for inference the whole
// inverted bottleneck around it (see restorekit/ops/_malleable_cpu.py for the maths and the build).
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__AVX512BF16__)
#include <immintrin.h>
#endif

typedef int64_t i64;

namespace {

#define MC_INLINE inline __attribute__((always_inline))

enum Dtype { kF32 = 0, kF64 = 1, kBF16 = 2, kF16 = 3 };

struct bf16_t { uint16_t bits; };
struct f16_t { uint16_t bits; };

inline float bits_to_float(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
inline uint32_t float_to_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

inline float widen(float v) { return v; }
inline double widen(double v) { return v; }
inline float widen(bf16_t v) { return bits_to_float((uint32_t)v.bits << 16); }
inline float widen(f16_t v) {  // exact half -> float (F. Giesen)
  uint32_t u = (uint32_t)(v.bits & 0x7fff) << 13;
  const uint32_t exp = u & (0x7c00u << 13);
  u += (127 - 15) << 23;
  if (exp == (0x7c00u << 13)) {
    u += (128 - 16) << 23;
  } else if (exp == 0) {
    u = float_to_bits(bits_to_float(u + (1 << 23)) - bits_to_float(113u << 23));
  }
  return bits_to_float(u | ((uint32_t)(v.bits & 0x8000) << 16));
}

// Narrowing from the accumulation type A (float or double) to a storage type S. From double to a 16-bit type the
// value is first rounded to float.
template <typename S> struct Narrow;
template <> struct Narrow<float> {
  static float from(float v) { return v; }
  static float from(double v) { return (float)v; }
};
template <> struct Narrow<double> {
  static double from(double v) { return v; }
  static double from(float v) { return v; }
};
template <> struct Narrow<bf16_t> {
  static bf16_t from(double v) { return from((float)v); }
  static bf16_t from(float v) {  // round to nearest even, NaN stays NaN
    const uint32_t u = float_to_bits(v);
    if ((u & 0x7fffffffu) > 0x7f800000u) return bf16_t{(uint16_t)((u >> 16) | 0x40)};
    return bf16_t{(uint16_t)((u + 0x7fffu + ((u >> 16) & 1)) >> 16)};
  }
};
template <> struct Narrow<f16_t> {
  static f16_t from(double v) { return from((float)v); }
  static f16_t from(float v) {  // round to nearest even (F. Giesen)
    uint32_t u = float_to_bits(v);
    const uint32_t sign = u & 0x80000000u;
    u ^= sign;
    uint32_t o;
    if (u >= (143u << 23)) {
      o = u > 0x7f800000u ? 0x7e00 : 0x7c00;
    } else if (u < (113u << 23)) {
      o = float_to_bits(bits_to_float(u) + 0.5f) - 0x3f000000u;
    } else {
      o = (u + ((uint32_t)(15 - 127) << 23) + 0xfff + ((u >> 13) & 1)) >> 13;
    }
    return f16_t{(uint16_t)(o | (sign >> 16))};
  }
};
template <typename S, typename A> inline S narrow(A v) { return Narrow<S>::from(v); }

template <typename A> constexpr int dtype_of();
template <> constexpr int dtype_of<float>() { return kF32; }
template <> constexpr int dtype_of<double>() { return kF64; }

// A (B, C, H, W) tensor: data pointer, dtype code and strides in elements.
struct View {
  char* data;
  int dtype;
  i64 sb, sc, sh, sw;
};

View make_view(void* data, int dtype, const i64* strides) {
  return View{(char*)data, dtype, strides[0], strides[1], strides[2], strides[3]};
}

// Channel chunks: a GCC/Clang vector of A as wide as the ISA's registers (512 bits with AVX-512, else 256) for each
// full chunk, then the remaining channels one at a time with V = A. The compute templates are written once for
// both; a local V lives in a register, which an array indexed by a runtime width would not. Loads and stores
// go through memcpy (unaligned).
#if defined(__AVX512F__)
#define MC_VECTOR_BYTES 64
#else  // 256-bit chunks: a block's accumulators and taps fit AVX2's 16 registers (a 512-bit vector spills)
#define MC_VECTOR_BYTES 32
#endif
typedef float vec_f32 __attribute__((vector_size(MC_VECTOR_BYTES)));
typedef double vec_f64 __attribute__((vector_size(MC_VECTOR_BYTES)));
template <typename A> struct Vector;
typedef float half_f32 __attribute__((vector_size(MC_VECTOR_BYTES / 2)));  // for remainders of half a vector
typedef double half_f64 __attribute__((vector_size(MC_VECTOR_BYTES / 2)));
template <> struct Vector<float> {
  typedef vec_f32 type;
  typedef half_f32 half;
};
template <> struct Vector<double> {
  typedef vec_f64 type;
  typedef half_f64 half;
};

template <typename V, typename A> MC_INLINE V load(const A* p) {
  V v;
  memcpy(&v, p, sizeof(V));
  return v;
}
template <typename V, typename A> MC_INLINE void store(A* p, V v) { memcpy(p, &v, sizeof(V)); }

template <typename T> struct Tag { typedef T type; };
template <int N> struct Int { static constexpr int value = N; };

// Calls body(Tag<V>, c0) for each chunk of channels starting at c0.
template <typename A, typename Body>
MC_INLINE void over_chunks(i64 C, Body&& body) {
  typedef typename Vector<A>::type V;
  constexpr i64 width = sizeof(V) / sizeof(A);
  i64 c0 = 0;
  for (; c0 + width <= C; c0 += width) body(Tag<V>{}, c0);
  for (; c0 < C; ++c0) body(Tag<A>{}, c0);
}

// Conversions of a run of n values between a storage type S and the accumulation type A. bf16 ↔ fp32 goes through
// integer vectors (a shift one way; round to nearest even, NaN kept, the other), which the compiler does not find
// in the scalar loop.
typedef uint16_t vec_u16 __attribute__((vector_size(MC_VECTOR_BYTES / 2)));
typedef uint32_t vec_u32 __attribute__((vector_size(MC_VECTOR_BYTES)));
constexpr i64 kLanes32 = MC_VECTOR_BYTES / 4;

template <typename A, typename S>
MC_INLINE void widen_run(const S* src, A* dst, i64 n) {
  for (i64 i = 0; i < n; ++i) dst[i] = widen(src[i]);
}
template <>
MC_INLINE void widen_run<float, bf16_t>(const bf16_t* src, float* dst, i64 n) {
  i64 i = 0;
  for (; i + kLanes32 <= n; i += kLanes32) store(dst + i, __builtin_convertvector(load<vec_u16>(src + i), vec_u32) << 16);
  for (; i < n; ++i) dst[i] = widen(src[i]);
}

template <typename S, typename A>
MC_INLINE void narrow_run(const A* src, S* dst, i64 n) {
  for (i64 i = 0; i < n; ++i) dst[i] = narrow<S>(src[i]);
}
template <>
MC_INLINE void narrow_run<bf16_t, float>(const float* src, bf16_t* dst, i64 n) {
  i64 i = 0;
  for (; i + kLanes32 <= n; i += kLanes32) {
    const vec_u32 u = load<vec_u32>(src + i);
    const vec_u32 nan = (vec_u32)((u & 0x7fffffffu) > 0x7f800000u);  // all ones where NaN
    const vec_u32 bits = (nan & ((u >> 16) | 0x40u)) | (~nan & ((u + 0x7fffu + ((u >> 16) & 1u)) >> 16));
    store(dst + i, __builtin_convertvector(bits, vec_u16));
  }
  for (; i < n; ++i) dst[i] = narrow<bf16_t>(src[i]);
}

// PReLU: v if v > 0, else slope·v. On vectors the select is bitwise, through the comparison's all-ones mask (the
// compiler will not vectorise the scalar select, as the product may trap; and GNU vectors' ?: is not portable).
MC_INLINE float prelu(float v, float slope) { return v > 0 ? v : slope * v; }
MC_INLINE double prelu(double v, double slope) { return v > 0 ? v : slope * v; }
template <typename V>
MC_INLINE V prelu(V v, V slope) {
  typedef decltype(v > V{}) Mask;
  const Mask keep = v > V{};
  return (V)((keep & (Mask)v) | (~keep & (Mask)(slope * v)));
}

// Per-channel PReLU slopes of the accumulation type, or nullptr for none, over a channel-contiguous row.
template <typename A>
MC_INLINE void prelu_row(A* row, i64 W, i64 C, const A* slope) {
  over_chunks<A>(C, [&](auto tag, i64 c0) {
    typedef typename decltype(tag)::type V;
    const V sl = load<V>(slope + c0);
    for (i64 x = 0; x < W; ++x) store(row + x * C + c0, prelu(load<V>(row + x * C + c0), sl));
  });
}

// Stores PB output vectors (pixels C apart), each through the PReLU of `slope` if it is not null.
template <typename A, typename V, int PB>
MC_INLINE void store_activated(A* out, i64 C, V (&acc)[PB], const A* slope, i64 c0) {
  if (slope) {
    const V sl = load<V>(slope + c0);
    for (int u = 0; u < PB; ++u) acc[u] = prelu(acc[u], sl);
  }
  for (int u = 0; u < PB; ++u) store(out + u * C, acc[u]);
}

template <typename A, typename S>
void gather_row(const View& v, i64 b, i64 y, i64 W, i64 C, A* dst) {
  const S* src = (const S*)v.data + b * v.sb + y * v.sh;
  if ((C == 1 || v.sc == 1) && (W == 1 || v.sw == C)) {  // channel-contiguous (channels_last): one flat loop
    widen_run<A, S>(src, dst, W * C);
  } else if (v.sw == 1) {
    for (i64 c = 0; c < C; ++c)
      for (i64 x = 0; x < W; ++x) dst[x * C + c] = widen(src[c * v.sc + x]);
  } else {
    for (i64 x = 0; x < W; ++x)
      for (i64 c = 0; c < C; ++c) dst[x * C + c] = widen(src[x * v.sw + c * v.sc]);
  }
}

template <typename A, typename S>
void scatter_row(const View& v, i64 b, i64 y, i64 W, i64 C, const A* src) {
  S* dst = (S*)v.data + b * v.sb + y * v.sh;
  if ((C == 1 || v.sc == 1) && (W == 1 || v.sw == C)) {
    narrow_run<S, A>(src, dst, W * C);
  } else if (v.sw == 1) {
    for (i64 c = 0; c < C; ++c)
      for (i64 x = 0; x < W; ++x) dst[c * v.sc + x] = narrow<S>(src[x * C + c]);
  } else {
    for (i64 x = 0; x < W; ++x)
      for (i64 c = 0; c < C; ++c) dst[x * v.sw + c * v.sc] = narrow<S>(src[x * C + c]);
  }
}

template <typename A>
void load_row(const View& v, i64 b, i64 y, i64 W, i64 C, A* dst) {
  switch (v.dtype) {
    case kF32: gather_row<A, float>(v, b, y, W, C, dst); break;
    case kF64: gather_row<A, double>(v, b, y, W, C, dst); break;
    case kBF16: gather_row<A, bf16_t>(v, b, y, W, C, dst); break;
    default: gather_row<A, f16_t>(v, b, y, W, C, dst); break;
  }
}

template <typename A>
void store_row(const View& v, i64 b, i64 y, i64 W, i64 C, const A* src) {
  switch (v.dtype) {
    case kF32: scatter_row<A, float>(v, b, y, W, C, src); break;
    case kF64: scatter_row<A, double>(v, b, y, W, C, src); break;
    case kBF16: scatter_row<A, bf16_t>(v, b, y, W, C, src); break;
    default: scatter_row<A, f16_t>(v, b, y, W, C, src); break;
  }
}

// Rows are handed to the compute loops as channel-contiguous (W, C) arrays of the accumulation type: straight
// from the tensor when it already is one (channels_last in the accumulation dtype), else through a converted copy.
template <typename A>
bool is_direct(const View& v, i64 W, i64 C) {
  return v.dtype == dtype_of<A>() && (C == 1 || v.sc == 1) && (W == 1 || v.sw == C);
}

// A 1×1 convolution run inside the filter's pass (a fused inverted bottleneck, mc_bottleneck): `in` channels →
// `out`, weight (in, out) — the transposed (out, in) weight, so that a vector of outputs reads contiguous
// weights — and bias (out,), both of the accumulation type. With `pairs` (bf16 inputs on a CPU with AVX512-BF16,
// `in` even and `out` a multiple of 16) it runs on bf16 dot products instead: pairs holds the weight in bf16 as
// (in/2, out, 2), two consecutive inputs' weights side by side, the layout of vdpbf16ps.
template <typename A>
struct Pointwise {
  const A* weight;
  const A* bias;
  i64 in, out;
  const uint16_t* pairs;
};

// Output pixels px … px + PB − 1 of a 1×1 convolution of a channel-contiguous row, G output chunks from c0: bias +
// Σ_i src(p, i)·weight(i, ·), each input value broadcast over a chunk, plus `residual` (laid out as dst) if it is
// not null, through the PReLU of `slope` if it is not null. Per input, G weight vectors and PB broadcasts feed
// G·PB independent multiply-adds, all accumulators in registers.
#if MC_VECTOR_BYTES == 64
constexpr int kTileChunks = 4, kTileAccumulators = 16;  // of AVX-512's 32 registers
#else
constexpr int kTileChunks = 2, kTileAccumulators = 8;  // of AVX2's 16
#endif
// Pixels per tile for G chunks: as many as the accumulators allow (a power of two), so that a narrow output
// (G = 1) still has enough independent multiply-adds in flight.
template <int G>
constexpr int tile_pixels() {
  return G == 1 ? kTileAccumulators : G == 2 ? kTileAccumulators / 2 : 4;
}

template <typename A, typename V, int G, int PB>
MC_INLINE void finish_tile(const Pointwise<A>& pw, V (&acc)[PB][G], const A* residual, const A* slope, i64 px, i64 c0,
                           A* dst) {
  constexpr i64 L = sizeof(V) / sizeof(A);
  for (int g = 0; g < G; ++g) {
    const i64 c = c0 + g * L;
    V column[PB];
    for (int u = 0; u < PB; ++u) {
      column[u] = acc[u][g];
      if (residual) column[u] += load<V>(residual + (px + u) * pw.out + c);
    }
    store_activated(dst + px * pw.out + c, pw.out, column, slope, c);
  }
}

template <typename A, typename V, int G, int PB>
MC_INLINE void pointwise_tile(const Pointwise<A>& pw, const A* src, const A* residual, const A* slope, i64 px, i64 c0,
                              A* dst) {
  constexpr i64 L = sizeof(V) / sizeof(A);
  const i64 in = pw.in, out = pw.out;
  V acc[PB][G];
  for (int g = 0; g < G; ++g) {
    const V bias = load<V>(pw.bias + c0 + g * L);
    for (int u = 0; u < PB; ++u) acc[u][g] = bias;
  }
  const A* pixels = src + px * in;
  for (i64 i = 0; i < in; ++i) {
    V w[G];
    for (int g = 0; g < G; ++g) w[g] = load<V>(pw.weight + i * out + c0 + g * L);
    for (int u = 0; u < PB; ++u) {
      const A v = pixels[u * in + i];
      for (int g = 0; g < G; ++g) acc[u][g] += v * w[g];
    }
  }
  finish_tile<A, V, G, PB>(pw, acc, residual, slope, px, c0, dst);
}

#if defined(__AVX512BF16__)
// The same on bf16 dot products: src is the row in bf16 (two inputs read as one 32-bit value), and each vdpbf16ps
// adds two inputs' products to 16 fp32 accumulators.
template <int G, int PB>
MC_INLINE void pointwise_tile_bf16(const Pointwise<float>& pw, const uint16_t* src, const float* residual,
                                   const float* slope, i64 px, i64 c0, float* dst) {
  const i64 half = pw.in / 2, out = pw.out;
  __m512 acc[PB][G];
  for (int g = 0; g < G; ++g) {
    const __m512 bias = _mm512_loadu_ps(pw.bias + c0 + 16 * g);
    for (int u = 0; u < PB; ++u) acc[u][g] = bias;
  }
  for (i64 p = 0; p < half; ++p) {
    __m512bh w[G];
    for (int g = 0; g < G; ++g) w[g] = (__m512bh)_mm512_loadu_si512(pw.pairs + (p * out + c0 + 16 * g) * 2);
    for (int u = 0; u < PB; ++u) {
      int32_t two;
      memcpy(&two, src + (px + u) * pw.in + 2 * p, 4);
      const __m512bh v = (__m512bh)_mm512_set1_epi32(two);
      for (int g = 0; g < G; ++g) acc[u][g] = _mm512_dpbf16_ps(acc[u][g], v, w[g]);
    }
  }
  vec_f32 done[PB][G];
  memcpy(done, acc, sizeof(done));
  finish_tile<float, vec_f32, G, PB>(pw, done, residual, slope, px, c0, dst);
}
#endif

// Calls tile(Int<G>, Tag<V>, c0) over the output chunks of a row: groups of kTileChunks full vectors, then the
// rest of the full vectors as one group, then half a vector if that much is left, then (V = A) the remaining
// channels one at a time.
template <typename A, typename Tile>
MC_INLINE void over_chunk_groups(i64 C, Tile&& tile) {
  constexpr i64 L = sizeof(typename Vector<A>::type) / sizeof(A);
  i64 c0 = 0;
  typedef Tag<typename Vector<A>::type> Full;
  for (; c0 + kTileChunks * L <= C; c0 += kTileChunks * L) tile(Int<kTileChunks>{}, Full{}, c0);
  switch ((C - c0) / L) {
    case 3: tile(Int<3>{}, Full{}, c0); break;
    case 2: tile(Int<2>{}, Full{}, c0); break;
    case 1: tile(Int<1>{}, Full{}, c0); break;
    default: break;
  }
  c0 += (C - c0) / L * L;
  if (c0 + L / 2 <= C) {
    tile(Int<1>{}, Tag<typename Vector<A>::half>{}, c0);
    c0 += L / 2;
  }
  for (; c0 < C; ++c0) tile(Int<1>{}, Tag<A>{}, c0);
}

// dst (W, out) = the 1×1 convolution of src (W, in) on bf16 dot products (pw.pairs), src in bf16.
template <typename A>
void pointwise_row_bf16(const Pointwise<A>& pw, const uint16_t* src, i64 W, const A* residual, const A* slope,
                        A* dst) {
#if defined(__AVX512BF16__)
  if constexpr (sizeof(A) == 4) {
    over_chunk_groups<float>(pw.out, [&](auto group, auto, i64 c0) {  // out is a multiple of 16: full vectors only
      constexpr int G = decltype(group)::value;
      i64 px = 0;
      constexpr int PB = tile_pixels<G>();
      for (; px + PB <= W; px += PB) pointwise_tile_bf16<G, PB>(pw, src, residual, slope, px, c0, dst);
      for (; px < W; ++px) pointwise_tile_bf16<G, 1>(pw, src, residual, slope, px, c0, dst);
    });
    return;
  }
#endif
  (void)pw, (void)src, (void)W, (void)residual, (void)slope, (void)dst;
}

// dst (W, out) = the 1×1 convolution of src (W, in); `scratch` holds W·in bf16 values for the dot-product path.
template <typename A>
void pointwise_row(const Pointwise<A>& pw, const A* src, i64 W, const A* residual, const A* slope, A* dst,
                   uint16_t* scratch) {
  if (pw.pairs) {
    narrow_run<bf16_t, A>(src, (bf16_t*)scratch, W * pw.in);
    pointwise_row_bf16<A>(pw, scratch, W, residual, slope, dst);
    return;
  }
  over_chunk_groups<A>(pw.out, [&](auto group, auto tag, i64 c0) {
    constexpr int G = decltype(group)::value;
    typedef typename decltype(tag)::type V;
    constexpr int PB = tile_pixels<G>();
    i64 px = 0;
    for (; px + PB <= W; px += PB) pointwise_tile<A, V, G, PB>(pw, src, residual, slope, px, c0, dst);
    for (; px < W; ++px) pointwise_tile<A, V, G, 1>(pw, src, residual, slope, px, c0, dst);
  });
}

// Whether this build has the bf16 dot-product path of Pointwise (see `pairs`).
constexpr int kHasBf16Dot =
#if defined(__AVX512BF16__)
    1;
#else
    0;
#endif

// dst (W, pw.out) = the 1×1 convolution of row y of v (pw.in channels), through the PReLU of `slope` if it is not
// null; the row is read into `scratch` (room for 2·W·pw.in values) unless the dot products can read it in place.
template <typename A>
void pointwise_of_row(const Pointwise<A>& pw, const View& v, i64 b, i64 y, i64 W, const A* slope, A* scratch, A* dst) {
  if (pw.pairs && v.dtype == kBF16 && v.sc == 1 && (W == 1 || v.sw == pw.in)) {
    const uint16_t* x = (const uint16_t*)v.data + b * v.sb + y * v.sh;  // the bf16 row as it is
    pointwise_row_bf16<A>(pw, x, W, nullptr, slope, dst);
    return;
  }
  load_row<A>(v, b, y, W, pw.in, scratch);
  pointwise_row<A>(pw, scratch, W, nullptr, slope, dst, (uint16_t*)(scratch + W * pw.in));
}

// Row y of a filter's input, (W, C) into dst: row y of x (C channels), or with `expand` the 1×1 convolution of
// row y of x (scratch as for pointwise_of_row), then the PReLU of `slope` if it is not null.
template <typename A>
void input_row(const View& v, i64 b, i64 y, i64 W, i64 C, const A* slope, const Pointwise<A>* expand, A* scratch,
               A* dst) {
  if (expand) {
    pointwise_of_row<A>(*expand, v, b, y, W, slope, scratch, dst);
    return;
  }
  load_row<A>(v, b, y, W, C, dst);
  if (slope) prelu_row<A>(dst, W, C, slope);
}

template <typename A>
struct RowSource {  // read-only rows (input_row), cached in `slots` ring entries keyed by (b, y)
  View v;
  i64 H, W, C;
  const A* slope;
  const Pointwise<A>* expand;
  bool direct;
  int slots;
  A* buf;  // the slots, then (with expand) input_row's scratch
  i64 key[3];
  RowSource(const View& view, i64 H_, i64 W_, i64 C_, int slots_, const A* slope_ = nullptr,
            const Pointwise<A>* expand_ = nullptr)
      : v(view), H(H_), W(W_), C(C_), slope(slope_), expand(expand_),
        direct(!slope_ && !expand_ && is_direct<A>(view, W_, C_)), slots(slots_), buf(nullptr) {
    if (!direct) buf = (A*)malloc(sizeof(A) * W * (slots * C + (expand ? 2 * expand->in : 0)));
    for (int s = 0; s < 3; ++s) key[s] = -1;
  }
  ~RowSource() { free(buf); }
  bool ok() const { return direct || buf != nullptr; }
  const A* get(i64 b, i64 y) {  // nullptr outside the image (zero padding; PReLU keeps 0 at 0)
    if (y < 0 || y >= H) return nullptr;
    if (direct) return (const A*)v.data + b * v.sb + y * v.sh;
    const int s = (int)(y % slots);
    if (key[s] != b * H + y) {
      input_row<A>(v, b, y, W, C, slope, expand, buf + slots * W * C, buf + s * W * C);
      key[s] = b * H + y;
    }
    return buf + s * W * C;
  }
};

template <typename A>
struct RowSink {  // write-only rows; with `project`, commit writes project(row) + x (row y of `residual`) instead
  View v;
  i64 W, C;
  const Pointwise<A>* project;
  View residual;
  bool direct;
  A* buf;  // a row of C values, then (with project) a row of x, one of the output and pointwise_row's scratch
  RowSink(const View& view, i64 W_, i64 C_, const Pointwise<A>* project_ = nullptr, const View* residual_ = nullptr)
      : v(view), W(W_), C(C_), project(project_), residual(residual_ ? *residual_ : view),
        direct(!project_ && is_direct<A>(view, W_, C_)), buf(nullptr) {
    if (!direct) buf = (A*)malloc(sizeof(A) * W * (C + (project ? 2 * project->out + C : 0)));
  }
  ~RowSink() { free(buf); }
  bool ok() const { return direct || buf != nullptr; }
  A* row(i64 b, i64 y) { return direct ? (A*)v.data + b * v.sb + y * v.sh : buf; }
  void commit(i64 b, i64 y) {
    if (direct) return;
    if (!project) {
      store_row<A>(v, b, y, W, C, buf);
      return;
    }
    A* x = buf + W * C;
    A* out = x + W * project->out;
    load_row<A>(residual, b, y, W, project->out, x);
    pointwise_row<A>(*project, buf, W, x, nullptr, out, (uint16_t*)(out + W * project->out));
    store_row<A>(v, b, y, W, project->out, out);
  }
};

struct Shape {
  i64 B, C, H, W, h, w;
  int K;
  // The grid as one channel-contiguous tensor of planes (a cell's P·C values: plane t of channel c at t·C + c, the
  // K² taps then the bias; the kernels view is that tensor, the bias view unused) instead of kernels and bias.
  bool as_planes = false;
  i64 planes() const { return (i64)K * K + 1; }  // K² taps and the bias
};

// Calls block(Int<PB>, px) over the run [px, end) of pixels sharing one cell: blocks of 8, then 4, 2 and 1.
template <typename Block>
MC_INLINE void over_blocks(i64 px, i64 end, Block&& block) {
  for (; px + 8 <= end; px += 8) block(Int<8>{}, px);
  if (px + 4 <= end) {
    block(Int<4>{}, px);
    px += 4;
  }
  if (px + 2 <= end) {
    block(Int<2>{}, px);
    px += 2;
  }
  if (px < end) block(Int<1>{}, px);
}

inline i64 min_i64(i64 a, i64 b) { return a < b ? a : b; }

// End of the run of pixels starting at px whose upper cell column is x0[px].
inline i64 run_end(const int32_t* x0, i64 px, i64 W) {
  i64 end = px + 1;
  while (end < W && x0[end] == x0[px]) ++end;
  return end;
}

// One grid cell column j seen from one image row: the grid rows y0, y0 + 1 (p0, p1; planes at t·C, cells
// `next` apart, next = 0 in the last column) blended with ly. plane() gives the kernel value A at the cell
// centre and the step D = A(j + 1) − A(j), so that the kernel at column weight lx is A + lx·D.
template <typename A>
struct Cell {
  const A* p0 = nullptr;
  const A* p1 = nullptr;
  A ly = 0;
  i64 next = 0;
  template <typename V>
  MC_INLINE void plane(i64 off, V& a, V& d) const {
    const V a0 = load<V>(p0 + off);
    a = ly ? a0 + ly * (load<V>(p1 + off) - a0) : a0;  // ly = 0 on the rows through cell centres
    if (next) {
      const V b0 = load<V>(p0 + next + off);
      d = (ly ? b0 + ly * (load<V>(p1 + next + off) - b0) : b0) - a;
    } else {
      d = V{};
    }
  }
};

// Packs grid row y of batch b — kernels (B, C·K², h, w) and bias (B, C, h, w), any strides and dtype — into
// `row`, (w, P, C) in the accumulation type (planes: the K² taps, then the bias), or (unpack) writes such a row
// back into kernels and bias. Channel-contiguous sources (channels_last, or channel slices of one such predictor
// output: a cell's C·K² kernel values in a row) are transposed one cell at a time, (C, K²) → (K², C), in L1;
// any other layout goes through 16×16 (channels × columns) tiles so that both sides stay contiguous.
template <typename A, typename S>
void pack_row(const Shape& s, const View& kv, const View& bv, i64 b, i64 y, A* row, bool unpack) {
  constexpr i64 tile = 16;
  const i64 T = (i64)s.K * s.K, P = T + 1, C = s.C;
  if (s.as_planes) {  // already a cell's packed layout: a conversion only
    const S* src = (const S*)kv.data + b * kv.sb + y * kv.sh;
    for (i64 x = 0; x < s.w; ++x) widen_run<A, S>(src + x * kv.sw, row + x * P * C, P * C);
    return;
  }
  if (!unpack && kv.sc == 1 && bv.sc == 1) {
    const S* ksrc = (const S*)kv.data + b * kv.sb + y * kv.sh;
    const S* bsrc = (const S*)bv.data + b * bv.sb + y * bv.sh;
    for (i64 x = 0; x < s.w; ++x) {
      const S* cell = ksrc + x * kv.sw;
      A* dst = row + x * P * C;
      for (i64 c = 0; c < C; ++c)
        for (i64 t = 0; t < T; ++t) dst[t * C + c] = widen(cell[c * T + t]);
      const S* bias = bsrc + x * bv.sw;
      for (i64 c = 0; c < C; ++c) dst[T * C + c] = widen(bias[c]);
    }
    return;
  }
  A block[tile][tile];
  for (i64 x0 = 0; x0 < s.w; x0 += tile) {
    const i64 nx = s.w - x0 < tile ? s.w - x0 : tile;
    for (i64 c0 = 0; c0 < C; c0 += tile) {
      const i64 nc = C - c0 < tile ? C - c0 : tile;
      for (i64 t = 0; t < P; ++t) {
        const View& v = t < T ? kv : bv;
        S* src = (S*)v.data + b * v.sb + y * v.sh + x0 * v.sw;
        A* dst = row + (x0 * P + t) * C + c0;
        if (unpack) {
          for (i64 x = 0; x < nx; ++x)
            for (i64 c = 0; c < nc; ++c) block[c][x] = dst[x * P * C + c];
          for (i64 c = 0; c < nc; ++c) {
            S* plane = src + (t < T ? (c0 + c) * T + t : c0 + c) * v.sc;
            for (i64 x = 0; x < nx; ++x) plane[x * v.sw] = narrow<S>(block[c][x]);
          }
        } else {
          for (i64 c = 0; c < nc; ++c) {
            const S* plane = src + (t < T ? (c0 + c) * T + t : c0 + c) * v.sc;
            for (i64 x = 0; x < nx; ++x) block[x][c] = widen(plane[x * v.sw]);
          }
          for (i64 x = 0; x < nx; ++x)
            for (i64 c = 0; c < nc; ++c) dst[x * P * C + c] = block[x][c];
        }
      }
    }
  }
}

template <typename A>
void pack_row_any(const Shape& s, const View& kv, const View& bv, i64 b, i64 y, A* row, bool unpack) {
  switch (kv.dtype) {
    case kF32: pack_row<A, float>(s, kv, bv, b, y, row, unpack); break;
    case kF64: pack_row<A, double>(s, kv, bv, b, y, row, unpack); break;
    case kBF16: pack_row<A, bf16_t>(s, kv, bv, b, y, row, unpack); break;
    default: pack_row<A, f16_t>(s, kv, bv, b, y, row, unpack); break;
  }
}

// Packed grid rows on demand, least recently used first out of `slots` (≥ the rows one image row needs). With
// `head`, the grid is not read but computed, a row at a time: the 1×1 convolution `head` of the features kv
// (B, head->in, h, w), whose outputs are the planes in the packed order (plane t of channel c at t·C + c).
template <typename A>
struct PackedRows {
  static constexpr int kMaxSlots = 6;
  const Shape& s;
  View kv, bv;
  int slots;
  const Pointwise<A>* head;
  i64 size, clock;
  A* buf;  // the slots, then (with head) pointwise_of_row's scratch
  i64 key[kMaxSlots], used[kMaxSlots];
  PackedRows(const Shape& shape, const View& k, const View& bias, int slots_, const Pointwise<A>* head_ = nullptr)
      : s(shape), kv(k), bv(bias), slots(slots_), head(head_), size(shape.w * shape.planes() * shape.C), clock(0) {
    buf = (A*)malloc(sizeof(A) * (slots * size + (head ? 2 * shape.w * head->in : 0)));
    for (int i = 0; i < slots; ++i) key[i] = used[i] = -1;
  }
  ~PackedRows() { free(buf); }
  bool ok() const { return buf != nullptr; }
  const A* get(i64 b, i64 y) {
    int slot = 0;
    for (int i = 0; i < slots; ++i) {
      if (key[i] == b * s.h + y) {
        used[i] = ++clock;
        return buf + i * size;
      }
      if (used[i] < used[slot]) slot = i;
    }
    if (head)
      pointwise_of_row<A>(*head, kv, b, y, s.w, nullptr, buf + slots * size, buf + slot * size);
    else
      pack_row_any<A>(s, kv, bv, b, y, buf + slot * size, false);
    key[slot] = b * s.h + y;
    used[slot] = ++clock;
    return buf + slot * size;
  }
};

// The two grid rows around image row y of batch b (its y0, ly from the sampling table).
template <typename A>
struct GridRows {
  const A* p0;
  const A* p1;
  A ly;
  GridRows() : p0(nullptr), p1(nullptr), ly(0) {}
  GridRows(const Shape& s, PackedRows<A>& packed, i64 b, i64 y0, A ly_) : ly(ly_) {
    p0 = packed.get(b, y0);
    p1 = y0 + 1 < s.h ? packed.get(b, y0 + 1) : p0;
  }
  Cell<A> cell(const Shape& s, i64 j) const {
    const i64 PC = s.planes() * s.C;
    return Cell<A>{p0 + j * PC, p1 + j * PC, ly, j + 1 < s.w ? PC : 0};
  }
};

// x at column `col` of a channel-contiguous row, zero outside the image (checked only in EDGE blocks).
template <typename V, bool EDGE, typename A>
MC_INLINE V load_x(const A* row, i64 col, i64 W, i64 C, i64 c0) {
  if (EDGE && (col < 0 || col >= W)) return V{};
  return load<V>(row + col * C + c0);
}

// Output pixels px0 … px0 + PB − 1 of one cell, chunk at c0: bias + Σ_t (A_t + lx·D_t)·x(p + t). One
// interpolation of each plane serves the block, and along each tap row PB + K − 1 loads of x serve PB·K products.
// The output gets the PReLU of `slope` if it is not null.
template <typename A, typename V, int K, int PB, bool EDGE>
MC_INLINE void forward_block(const Shape& s, i64 c0, i64 px0, const Cell<A>& cell, const A* lx,
                             const A* const* xrows, const A* slope, A* out) {
  constexpr int pad = K / 2;
  const i64 C = s.C;
  A l[PB];
  V acc[PB], a, d;
  cell.plane(K * K * C + c0, a, d);
  for (int u = 0; u < PB; ++u) {
    l[u] = lx[px0 + u];
    acc[u] = a + l[u] * d;
  }
  for (int i = 0; i < K; ++i) {
    if (!xrows[i]) continue;
    V xv[PB + K - 1];
    for (int m = 0; m < PB + K - 1; ++m) xv[m] = load_x<V, EDGE>(xrows[i], px0 - pad + m, s.W, C, c0);
    for (int jj = 0; jj < K; ++jj) {
      cell.plane((i * K + jj) * C + c0, a, d);
      for (int u = 0; u < PB; ++u) acc[u] += (a + l[u] * d) * xv[u + jj];
    }
  }
  store_activated(out + px0 * C + c0, C, acc, slope, c0);
}

// grad x from source pixels px0 … px0 + PB − 1 (one cell column) of the K source rows, chunk at c0. x(q) feeds
// output p = q − t, so g(p)·k_t(p) — the kernel at the source pixel p — lands on q = p + jj − pad, which is
// slot u + jj of the window `win` (slot m ↔ q = px0 − pad + m). Complete slots are then stored and the window
// slides by PB.
template <typename A, typename V, int K, int PB>
MC_INLINE void grad_x_block(const Shape& s, i64 c0, i64 px0, const Cell<A>* cells, const A* lx,
                            const A* const* grows, V* win, A* out) {
  constexpr int pad = K / 2, slots = 8 + K - 1;
  const i64 C = s.C;
  A l[PB];
  for (int u = 0; u < PB; ++u) l[u] = lx[px0 + u];
  for (int i = 0; i < K; ++i) {
    if (!grows[i]) continue;
    V g[PB], a, d;
    for (int u = 0; u < PB; ++u) g[u] = load<V>(grows[i] + (px0 + u) * C + c0);
    for (int jj = 0; jj < K; ++jj) {
      cells[i].plane((i * K + jj) * C + c0, a, d);
      for (int u = 0; u < PB; ++u) win[u + jj] += (a + l[u] * d) * g[u];
    }
  }
  for (int m = 0; m < PB; ++m)
    if (px0 - pad + m >= 0) store(out + (px0 - pad + m) * C + c0, win[m]);
  for (int m = 0; m < slots; ++m) win[m] = m + PB < slots ? win[m + PB] : V{};
}

// Grid gradient from pixels px0 … px0 + PB − 1 of one cell, chunk at c0: g·x(p + t) (g alone for the bias
// plane) into the run sums of the cell (r0, weight 1 − lx) and of the next cell (r1, weight lx).
template <typename A, typename V, int K, int PB, bool EDGE>
MC_INLINE void grad_grid_block(const Shape& s, i64 c0, i64 px0, const A* lx, const A* grow,
                               const A* const* xrows, V* r0, V* r1) {
  constexpr int P = K * K + 1, pad = K / 2;
  const i64 C = s.C;
  V g0[PB], g1[PB];
  for (int u = 0; u < PB; ++u) {
    const V g = load<V>(grow + (px0 + u) * C + c0);
    g1[u] = g * lx[px0 + u];
    g0[u] = g - g1[u];
    r0[P - 1] += g0[u];
    r1[P - 1] += g1[u];
  }
  for (int i = 0; i < K; ++i) {
    if (!xrows[i]) continue;
    V xv[PB + K - 1];
    for (int m = 0; m < PB + K - 1; ++m) xv[m] = load_x<V, EDGE>(xrows[i], px0 - pad + m, s.W, C, c0);
    for (int jj = 0; jj < K; ++jj)
      for (int u = 0; u < PB; ++u) {
        r0[i * K + jj] += g0[u] * xv[u + jj];
        r1[i * K + jj] += g1[u] * xv[u + jj];
      }
  }
}

template <typename A, int K>
int forward_rows(const Shape& s, const View& xv, const View& kv, const View& bv, const View& ov, const int32_t* y0,
                 const A* ly, const int32_t* x0, const A* lx, const A* slope_in, const A* slope_out,
                 const Pointwise<A>* expand, const Pointwise<A>* project, const Pointwise<A>* head, i64 begin,
                 i64 end) {
  constexpr int pad = K / 2;
  RowSource<A> xs(xv, s.H, s.W, s.C, K, slope_in, expand);
  RowSink<A> os(ov, s.W, s.C, project, &xv);
  PackedRows<A> packed(s, kv, bv, 2, head);
  if (!xs.ok() || !os.ok() || !packed.ok()) return 1;
  for (i64 r = begin; r < end; ++r) {
    const i64 b = r / s.H, y = r % s.H;
    const GridRows<A> rows(s, packed, b, y0[y], ly[y]);
    const A* xrows[K];
    for (int i = 0; i < K; ++i) xrows[i] = xs.get(b, y + i - pad);
    A* out = os.row(b, y);
    for (i64 px = 0; px < s.W;) {
      const i64 stop = run_end(x0, px, s.W);
      Cell<A> cell = rows.cell(s, x0[px]);
      if (stop == px + 1 && lx[px] == 0) cell.next = 0;  // one pixel on its cell's centre (a grid as fine as x)
      over_blocks(px, stop, [&](auto pb, i64 p) {
        constexpr int PB = decltype(pb)::value;
        const bool edge = p < pad || p + PB > s.W - pad;
        over_chunks<A>(s.C, [&](auto tag, i64 c0) {
          typedef typename decltype(tag)::type V;
          if (edge) forward_block<A, V, K, PB, true>(s, c0, p, cell, lx, xrows, slope_out, out);
          else forward_block<A, V, K, PB, false>(s, c0, p, cell, lx, xrows, slope_out, out);
        });
      });
      px = stop;
    }
    os.commit(b, y);
  }
  return 0;
}

// A 1×1 grid is one kernel for the whole image: a depthwise convolution. Its rows of x go into buffers with K/2
// zero columns on either side (a zero row outside the image), so that the loops below test no edges, and each
// chunk of channels keeps its K² taps and bias in registers while it sweeps a row in blocks of kDepthwiseBlock
// pixels (8 with 32 vector registers, 4 with AVX2's 16). The products and sums of forward_block, in its order.
#if MC_VECTOR_BYTES == 64
constexpr int kDepthwiseBlock = 8;
#else
constexpr int kDepthwiseBlock = 4;
#endif

template <typename A, typename V, int K, int PB>
MC_INLINE void depthwise_block(i64 C, i64 c0, i64 px, const A* const* rows, const V* taps, const V& bias,
                               const A* slope, A* out) {
  V acc[PB];
  for (int u = 0; u < PB; ++u) acc[u] = bias;
  for (int i = 0; i < K; ++i) {
    V xv[PB + K - 1];
    for (int m = 0; m < PB + K - 1; ++m) xv[m] = load<V>(rows[i] + (px + m) * C + c0);  // padded: column px + m − K/2
    for (int jj = 0; jj < K; ++jj)
      for (int u = 0; u < PB; ++u) acc[u] += taps[i * K + jj] * xv[u + jj];
  }
  store_activated(out + px * C + c0, C, acc, slope, c0);
}

template <typename A, int K>
int depthwise_rows(const Shape& s, const View& xv, const View& kv, const View& bv, const View& ov, const A* slope_in,
                   const A* slope_out, const Pointwise<A>* expand, const Pointwise<A>* project,
                   const Pointwise<A>* head, i64 begin, i64 end) {
  constexpr int pad = K / 2;
  const i64 W = s.W, C = s.C, row_size = (W + 2 * pad) * C;
  PackedRows<A> packed(s, kv, bv, 1, head);
  RowSink<A> os(ov, W, C, project, &xv);
  // K ring slots, then the zero row, then (with expand) input_row's scratch
  A* buf = (A*)calloc((size_t)((K + 1) * row_size + (expand ? 2 * W * expand->in : 0)), sizeof(A));
  if (!packed.ok() || !os.ok() || !buf) {
    free(buf);
    return 1;
  }
  i64 key[K];
  for (int i = 0; i < K; ++i) key[i] = -1;
  for (i64 r = begin; r < end; ++r) {
    const i64 b = r / s.H, y = r % s.H;
    const A* grid = packed.get(b, 0);  // (P, C): the K² taps, then the bias
    const A* rows[K];
    for (int i = 0; i < K; ++i) {
      const i64 yy = y + i - pad;
      if (yy < 0 || yy >= s.H) {
        rows[i] = buf + K * row_size;
        continue;
      }
      A* slot = buf + (yy % K) * row_size;
      if (key[yy % K] != b * s.H + yy) {
        input_row<A>(xv, b, yy, W, C, slope_in, expand, buf + (K + 1) * row_size, slot + pad * C);
        key[yy % K] = b * s.H + yy;
      }
      rows[i] = slot;
    }
    A* out = os.row(b, y);
    over_chunks<A>(C, [&](auto tag, i64 c0) {
      typedef typename decltype(tag)::type V;
      V taps[K * K];
      for (int t = 0; t < K * K; ++t) taps[t] = load<V>(grid + t * C + c0);
      const V bias = load<V>(grid + K * K * C + c0);
      i64 px = 0;
      for (; px + kDepthwiseBlock <= W; px += kDepthwiseBlock)
        depthwise_block<A, V, K, kDepthwiseBlock>(C, c0, px, rows, taps, bias, slope_out, out);
      for (; px < W; ++px) depthwise_block<A, V, K, 1>(C, c0, px, rows, taps, bias, slope_out, out);
    });
    os.commit(b, y);
  }
  free(buf);
  return 0;
}

// PReLU over rows [begin, end) of (B·H): src → dst, any layouts and storage types.
template <typename A>
int prelu_rows(const Shape& s, const View& sv, const View& dv, const A* slope, i64 begin, i64 end) {
  RowSource<A> src(sv, s.H, s.W, s.C, 1, slope);
  RowSink<A> dst(dv, s.W, s.C);
  if (!src.ok() || !dst.ok()) return 1;
  for (i64 r = begin; r < end; ++r) {
    const i64 b = r / s.H, y = r % s.H;
    memcpy(dst.row(b, y), src.get(b, y), sizeof(A) * s.W * s.C);
    dst.commit(b, y);
  }
  return 0;
}

// PReLU then k×k average pooling (ceil mode: edge windows clipped, averaged over what they cover), over output
// rows [begin, end) of (B·h): src (B, C, H, W) → dst (B, C, h, w), h = ⌈H/k⌉, w = ⌈W/k⌉ (s.h, s.w; k = s.K).
// The activated map is never written: a MalleConv's kernel predictor reads it only through this pooling.
template <typename A>
int prelu_pool_rows(const Shape& s, const View& sv, const View& dv, const A* slope, const Pointwise<A>* expand,
                    i64 begin, i64 end) {
  const i64 k = s.K, C = s.C;
  RowSource<A> src(sv, s.H, s.W, C, 1, slope, expand);
  RowSink<A> dst(dv, s.w, C);
  if (!src.ok() || !dst.ok()) return 1;
  for (i64 r = begin; r < end; ++r) {
    const i64 b = r / s.h, oy = r % s.h, y_end = min_i64(s.H, (oy + 1) * k);
    A* out = dst.row(b, oy);
    for (i64 i = 0; i < s.w * C; ++i) out[i] = 0;
    for (i64 y = oy * k; y < y_end; ++y) {
      const A* row = src.get(b, y);
      over_chunks<A>(C, [&](auto tag, i64 c0) {
        typedef typename decltype(tag)::type V;
        for (i64 ox = 0; ox < s.w; ++ox) {
          V sum = load<V>(out + ox * C + c0);
          const i64 x_end = min_i64(s.W, (ox + 1) * k);
          for (i64 x = ox * k; x < x_end; ++x) sum += load<V>(row + x * C + c0);
          store(out + ox * C + c0, sum);
        }
      });
    }
    const i64 rows = y_end - oy * k;
    for (i64 ox = 0; ox < s.w; ++ox) {
      const A scale = (A)1 / (A)(rows * (min_i64(s.W, (ox + 1) * k) - ox * k));
      for (i64 c = 0; c < C; ++c) out[ox * C + c] *= scale;
    }
    dst.commit(b, oy);
  }
  return 0;
}

// Rows [begin, end) of (B·H) of cat(f, up(g)): f (B, Cf, H, W) and g (B, C, h, w) → out (B, Cf + C, H, W), up the
// bilinear interpolation to H × W with half-pixel centres (the grid's sampling tables; s.C = C, s.h × s.w = g's
// size). Each row: the two rows of g around it blended with ly, then each pixel between two cells with lx.
template <typename A>
int upsample_cat_rows(const Shape& s, i64 Cf, const View& fv, const View& gv, const View& ov, const int32_t* y0,
                      const A* ly, const int32_t* x0, const A* lx, i64 begin, i64 end) {
  const i64 W = s.W, C = s.C, Co = Cf + C;
  RowSource<A> fs(fv, s.H, W, Cf, 1);
  RowSource<A> gs(gv, s.h, s.w, C, 2);
  RowSink<A> os(ov, W, Co);
  A* blend = (A*)malloc(sizeof(A) * s.w * C);
  if (!fs.ok() || !gs.ok() || !os.ok() || !blend) {
    free(blend);
    return 1;
  }
  for (i64 r = begin; r < end; ++r) {
    const i64 b = r / s.H, y = r % s.H, j0 = y0[y];
    const A* g0 = gs.get(b, j0);
    const A* g1 = j0 + 1 < s.h ? gs.get(b, j0 + 1) : g0;
    const A wy = ly[y];
    over_chunks<A>(C, [&](auto tag, i64 c0) {
      typedef typename decltype(tag)::type V;
      for (i64 j = 0; j < s.w; ++j) {
        const V a = load<V>(g0 + j * C + c0);
        store(blend + j * C + c0, a + wy * (load<V>(g1 + j * C + c0) - a));
      }
    });
    const A* f = fs.get(b, y);
    A* out = os.row(b, y);
    for (i64 x = 0; x < W; ++x) memcpy(out + x * Co, f + x * Cf, sizeof(A) * Cf);
    over_chunks<A>(C, [&](auto tag, i64 c0) {
      typedef typename decltype(tag)::type V;
      for (i64 x = 0; x < W; ++x) {
        const i64 j = x0[x], next = j + 1 < s.w ? j + 1 : j;
        const V a = load<V>(blend + j * C + c0);
        store(out + x * Co + Cf + c0, a + lx[x] * (load<V>(blend + next * C + c0) - a));
      }
    });
    os.commit(b, y);
  }
  free(blend);
  return 0;
}

template <typename A, int K>
int grad_x_rows(const Shape& s, const View& gv, const View& kv, const View& bv, const View& dv, const int32_t* y0,
                const A* ly, const int32_t* x0, const A* lx, i64 begin, i64 end) {
  constexpr int pad = K / 2;
  RowSource<A> gs(gv, s.H, s.W, s.C, K);
  RowSink<A> ds(dv, s.W, s.C);
  PackedRows<A> packed(s, kv, bv, 2 * K);
  if (!gs.ok() || !ds.ok() || !packed.ok()) return 1;
  for (i64 r = begin; r < end; ++r) {
    const i64 b = r / s.H, qy = r % s.H;
    const A* grows[K];
    GridRows<A> rows[K];
    for (int i = 0; i < K; ++i) {
      const i64 py = qy - i + pad;  // source row of tap row i
      grows[i] = gs.get(b, py);
      if (grows[i]) rows[i] = GridRows<A>(s, packed, b, y0[py], ly[py]);
    }
    A* out = ds.row(b, qy);
    over_chunks<A>(s.C, [&](auto tag, i64 c0) {
      typedef typename decltype(tag)::type V;
      V win[8 + K - 1];
      for (V& v : win) v = V{};
      for (i64 px = 0; px < s.W;) {
        const i64 stop = run_end(x0, px, s.W);
        Cell<A> cells[K];
        for (int i = 0; i < K; ++i)
          if (grows[i]) cells[i] = rows[i].cell(s, x0[px]);
        over_blocks(px, stop, [&](auto pb, i64 p) {
          grad_x_block<A, V, K, decltype(pb)::value>(s, c0, p, cells, lx, grows, win, out);
        });
        px = stop;
      }
      for (int m = 0; m < pad; ++m) store(out + (s.W - pad + m) * s.C + c0, win[m]);
    });
    ds.commit(b, qy);
  }
  return 0;
}

// Grid gradient for the row groups phase, phase + 2, … numbered [begin, end) over (batch, group). Group gy holds
// the image rows whose upper cell row is gy (rows row_start[gy] … row_start[gy + 1] − 1) and writes only to
// cell rows gy and gy + 1, so the groups of one phase never write to the same cell row.
template <typename A, int K>
int grad_grid_groups(const Shape& s, const View& gv, const View& xv, A* dgrid, const int32_t* row_start,
                     const A* ly, const int32_t* x0, const A* lx, int phase, i64 begin, i64 end) {
  constexpr int P = K * K + 1, pad = K / 2;
  const i64 PC = P * s.C, per_batch = (s.h - phase + 1) / 2;
  RowSource<A> gs(gv, s.H, s.W, s.C, 1);
  RowSource<A> xs(xv, s.H, s.W, s.C, K);
  if (!gs.ok() || !xs.ok()) return 1;
  for (i64 item = begin; item < end; ++item) {
    const i64 b = item / per_batch, gy = phase + 2 * (item % per_batch);
    A* d0 = dgrid + (b * s.h + gy) * s.w * PC;
    A* d1 = gy + 1 < s.h ? d0 + s.w * PC : nullptr;
    for (i64 y = row_start[gy]; y < row_start[gy + 1]; ++y) {
      const A* grow = gs.get(b, y);
      const A* xrows[K];
      for (int i = 0; i < K; ++i) xrows[i] = xs.get(b, y + i - pad);
      const A wy1 = ly[y], wy0 = 1 - wy1;
      over_chunks<A>(s.C, [&](auto tag, i64 c0) {
        typedef typename decltype(tag)::type V;
        for (i64 px = 0; px < s.W;) {
          const i64 stop = run_end(x0, px, s.W), j = x0[px];
          V r0[P], r1[P];
          for (int t = 0; t < P; ++t) r0[t] = r1[t] = V{};
          for (; px + 2 <= stop; px += 2) {
            if (px < pad || px + 2 > s.W - pad) grad_grid_block<A, V, K, 2, true>(s, c0, px, lx, grow, xrows, r0, r1);
            else grad_grid_block<A, V, K, 2, false>(s, c0, px, lx, grow, xrows, r0, r1);
          }
          for (; px < stop; ++px) grad_grid_block<A, V, K, 1, true>(s, c0, px, lx, grow, xrows, r0, r1);
          for (int t = 0; t < P; ++t) {  // add the run sums into cells j, j + 1 of grid rows gy, gy + 1
            A* a = d0 + j * PC + t * s.C + c0;
            store(a, load<V>(a) + wy0 * r0[t]);
            if (d1) store(a + s.w * PC, load<V>(a + s.w * PC) + wy1 * r0[t]);
            if (j + 1 == s.w) continue;  // lx = 0 in the last cell, so r1 is zero there
            store(a + PC, load<V>(a + PC) + wy0 * r1[t]);
            if (d1) store(a + s.w * PC + PC, load<V>(a + s.w * PC + PC) + wy1 * r1[t]);
          }
        }
      });
    }
  }
  return 0;
}

// Writes the grid gradient (B, h, w, P, C) back into kernels and bias gradients, grid rows [begin, end).
template <typename A>
int unpack_rows(const Shape& s, const View& kv, const View& bv, A* grid, i64 begin, i64 end) {
  const i64 row = s.w * s.planes() * s.C;
  for (i64 r = begin; r < end; ++r) pack_row_any<A>(s, kv, bv, r / s.h, r % s.h, grid + r * row, true);
  return 0;
}

// Threads. Built with OpenMP (and told by mc_set_threads_inside that its OpenMP runtime is PyTorch's), an entry
// point splits its rows [begin, end) into one contiguous range per thread of PyTorch's pool: the threads that a
// preceding oneDNN or ATen call leaves spinning take them at once, where threads of another pool would compete
// with the spinning ones for the cores. Otherwise the caller splits the rows over its own threads.
int threads_inside = 0;
constexpr i64 kMinWorkPerThread = 1 << 16;  // output values; below this a thread costs more than it saves

template <typename Rows>
int over_threads(i64 begin, i64 end, i64 work_per_row, Rows&& rows) {
#ifdef _OPENMP
  const i64 items = end - begin;
  i64 threads = omp_get_max_threads();
  if (threads > items) threads = items;
  if (threads > items * work_per_row / kMinWorkPerThread) threads = items * work_per_row / kMinWorkPerThread;
  if (threads_inside && threads > 1) {
    int code = 0;
#pragma omp parallel num_threads((int)threads) reduction(| : code)
    {
      const i64 n = omp_get_num_threads(), t = omp_get_thread_num();
      code |= rows(begin + items * t / n, begin + items * (t + 1) / n);
    }
    return code;
  }
#else
  (void)work_per_row;
#endif
  return rows(begin, end);
}

// The forward filter over rows [begin, end) of (B·H), split over threads: the depthwise row loop for a 1×1 grid,
// else the grid's; with expand and project, a whole inverted bottleneck (x → expand → filter → project, + x); with
// head, the grid computed from features (see PackedRows).
template <typename A>
int filter_rows(const Shape& s, const View& xv, const View& kv, const View& bv, const View& ov, const int32_t* y0,
                const A* ly, const int32_t* x0, const A* lx, const A* slope_in, const A* slope_out,
                const Pointwise<A>* expand, const Pointwise<A>* project, const Pointwise<A>* head, i64 begin,
                i64 end) {
  const bool flat = s.h == 1 && s.w == 1;
  const A* si = slope_in;
  const A* so = slope_out;
  return over_threads(begin, end, s.W * s.C, [&](i64 f, i64 l) {
    if (flat)
      return s.K == 3 ? depthwise_rows<A, 3>(s, xv, kv, bv, ov, si, so, expand, project, head, f, l)
                      : depthwise_rows<A, 1>(s, xv, kv, bv, ov, si, so, expand, project, head, f, l);
    return s.K == 3 ? forward_rows<A, 3>(s, xv, kv, bv, ov, y0, ly, x0, lx, si, so, expand, project, head, f, l)
                    : forward_rows<A, 1>(s, xv, kv, bv, ov, y0, ly, x0, lx, si, so, expand, project, head, f, l);
  });
}

Shape make_shape(const i64* shape) {
  return Shape{shape[0], shape[1], shape[2], shape[3], shape[4], shape[5], (int)shape[6]};
}

}  // namespace

// The two row filters (forward: x → out; grad_x: ∂L/∂out → ∂L/∂x) share one signature: a source feature map,
// the kernels and bias, a target, and the sampling tables.
#define MC_FILTER_EXPORT(A, SUFFIX, NAME, ROWS)                                                                  \
  extern "C" int mc_##NAME##_##SUFFIX(const i64* shape, void* src, int sd, const i64* ss, void* k, int kd,       \
                                      const i64* ks, void* bias, int bd, const i64* bs, void* dst, int dd,        \
                                      const i64* ds, const int32_t* y0, const A* ly, const int32_t* x0,            \
                                      const A* lx, i64 begin, i64 end) {                                         \
    const Shape s = make_shape(shape);                                                                            \
    const View sv = make_view(src, sd, ss), kv = make_view(k, kd, ks), bv = make_view(bias, bd, bs);             \
    const View dv = make_view(dst, dd, ds);                                                                       \
    return s.K == 3 ? ROWS<A, 3>(s, sv, kv, bv, dv, y0, ly, x0, lx, begin, end)                                  \
                    : ROWS<A, 1>(s, sv, kv, bv, dv, y0, ly, x0, lx, begin, end);                                 \
  }

// The forward pass also takes optional per-channel PReLU slopes (nullptr: none) applied to x before the filter
// and to its output.
#define MC_EXPORT(A, SUFFIX)                                                                                      \
  extern "C" int mc_forward_##SUFFIX(const i64* shape, void* x, int xd, const i64* xs, void* k, int kd,            \
                                     const i64* ks, void* bias, int bd, const i64* bs, void* out, int od,          \
                                     const i64* os, const int32_t* y0, const A* ly, const int32_t* x0,             \
                                     const A* lx, const A* slope_in, const A* slope_out, i64 begin, i64 end) {     \
    const Shape s = make_shape(shape);                                                                            \
    const View xv = make_view(x, xd, xs), kv = make_view(k, kd, ks), bv = make_view(bias, bd, bs);               \
    const View ov = make_view(out, od, os);                                                                       \
    return filter_rows<A>(s, xv, kv, bv, ov, y0, ly, x0, lx, slope_in, slope_out, nullptr, nullptr, nullptr, begin, \
                          end);                                                                                   \
  }                                                                                                                \
  extern "C" int mc_bottleneck_##SUFFIX(const i64* shape, void* x, int xd, const i64* xs, void* grid, int gd,      \
                                        const i64* gs, void* out, int od, const i64* os, const int32_t* y0,         \
                                        const A* ly, const int32_t* x0, const A* lx, const A* slope_in,             \
                                        const A* slope_out, const A* expand_weight, const A* expand_bias,           \
                                        const uint16_t* expand_pairs, const A* project_weight,                      \
                                        const A* project_bias, const uint16_t* project_pairs, i64 in_channels,      \
                                        const A* head_weight, const A* head_bias, const uint16_t* head_pairs,      \
                                        i64 features, i64 begin, i64 end) {                                        \
    Shape s = make_shape(shape);                                                                                   \
    s.as_planes = true;                                                                                            \
    const View xv = make_view(x, xd, xs), kv = make_view(grid, gd, gs), bv = kv;                                  \
    const View ov = make_view(out, od, os);                                                                       \
    const Pointwise<A> expand{expand_weight, expand_bias, in_channels, s.C, expand_pairs};                        \
    const Pointwise<A> project{project_weight, project_bias, s.C, in_channels, project_pairs};                    \
    const Pointwise<A> head{head_weight, head_bias, features, s.planes() * s.C, head_pairs};                       \
    const Pointwise<A>* from = head_weight ? &head : nullptr;                                                      \
    return filter_rows<A>(s, xv, kv, bv, ov, y0, ly, x0, lx, slope_in, slope_out, &expand, &project, from, begin, \
                          end);                                                                                   \
  }                                                                                                                \
  extern "C" int mc_expand_pool_##SUFFIX(const i64* shape, void* src, int sd, const i64* ss, void* dst, int dd,    \
                                         const i64* ds, const A* slope, const A* expand_weight,                    \
                                         const A* expand_bias, const uint16_t* expand_pairs, i64 in_channels,      \
                                         i64 begin, i64 end) {                                                     \
    const Shape s = make_shape(shape);                                                                             \
    const View sv = make_view(src, sd, ss), dv = make_view(dst, dd, ds);                                          \
    const Pointwise<A> expand{expand_weight, expand_bias, in_channels, s.C, expand_pairs};                        \
    return over_threads(begin, end, s.K * s.W * s.C, [&](i64 first, i64 last) {                                  \
      return prelu_pool_rows<A>(s, sv, dv, slope, &expand, first, last);                                          \
    });                                                                                                            \
  }                                                                                                                \
  extern "C" int mc_prelu_##SUFFIX(const i64* shape, void* src, int sd, const i64* ss, void* dst, int dd,          \
                                   const i64* ds, const A* slope, i64 begin, i64 end) {                            \
    const Shape s = make_shape(shape);                                                                             \
    const View sv = make_view(src, sd, ss), dv = make_view(dst, dd, ds);                                          \
    return over_threads(begin, end, s.W * s.C,                                                                    \
                        [&](i64 first, i64 last) { return prelu_rows<A>(s, sv, dv, slope, first, last); });       \
  }                                                                                                                \
  extern "C" int mc_prelu_pool_##SUFFIX(const i64* shape, void* src, int sd, const i64* ss, void* dst, int dd,     \
                                        const i64* ds, const A* slope, i64 begin, i64 end) {                       \
    const Shape s = make_shape(shape);                                                                             \
    const View sv = make_view(src, sd, ss), dv = make_view(dst, dd, ds);                                          \
    return over_threads(begin, end, s.K * s.W * s.C,                                                              \
                        [&](i64 b0, i64 b1) { return prelu_pool_rows<A>(s, sv, dv, slope, nullptr, b0, b1); });      \
  }                                                                                                                \
  extern "C" int mc_upsample_cat_##SUFFIX(const i64* shape, i64 f_channels, void* f, int fd, const i64* fs,       \
                                          void* g, int gd, const i64* gs, void* out, int od, const i64* os,         \
                                          const int32_t* y0, const A* ly, const int32_t* x0, const A* lx,           \
                                          i64 begin, i64 end) {                                                    \
    const Shape s = make_shape(shape);                                                                             \
    const View fv = make_view(f, fd, fs), gv = make_view(g, gd, gs), ov = make_view(out, od, os);                 \
    return over_threads(begin, end, s.W * (f_channels + s.C), [&](i64 b0, i64 b1) {                                \
      return upsample_cat_rows<A>(s, f_channels, fv, gv, ov, y0, ly, x0, lx, b0, b1);                              \
    });                                                                                                            \
  }                                                                                                                \
  MC_FILTER_EXPORT(A, SUFFIX, grad_x, grad_x_rows)                                                                \
  extern "C" int mc_grad_grid_##SUFFIX(const i64* shape, void* g, int gd, const i64* gs, void* x, int xd,         \
                                       const i64* xs, A* dgrid, const int32_t* row_start, const A* ly,             \
                                       const int32_t* x0, const A* lx, int phase, i64 begin, i64 end) {           \
    const Shape s = make_shape(shape);                                                                             \
    const View gv = make_view(g, gd, gs), xv = make_view(x, xd, xs);                                              \
    return s.K == 3 ? grad_grid_groups<A, 3>(s, gv, xv, dgrid, row_start, ly, x0, lx, phase, begin, end)          \
                    : grad_grid_groups<A, 1>(s, gv, xv, dgrid, row_start, ly, x0, lx, phase, begin, end);         \
  }                                                                                                                \
  extern "C" int mc_unpack_grid_##SUFFIX(const i64* shape, void* k, int kd, const i64* ks, void* bias, int bd,    \
                                         const i64* bs, A* grid, i64 begin, i64 end) {                             \
    return unpack_rows<A>(make_shape(shape), make_view(k, kd, ks), make_view(bias, bd, bs), grid, begin, end);    \
  }

MC_EXPORT(float, f32)
MC_EXPORT(double, f64)

// Whether this build can run a Pointwise on bf16 dot products (then mc_bottleneck_f32 and mc_expand_pool_f32 take
// weight pairs).
extern "C" int mc_has_bf16_dot() { return kHasBf16Dot; }

// Tells an OpenMP build whether to split rows over OpenMP threads itself (see over_threads): only when its OpenMP
// runtime is PyTorch's. Returns the setting in force (always 0 without OpenMP).
extern "C" int mc_set_threads_inside(int inside) {
#ifdef _OPENMP
  threads_inside = inside;
#else
  (void)inside;
#endif
  return threads_inside;
}
