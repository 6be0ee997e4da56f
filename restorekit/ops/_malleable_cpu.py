"""Fast CPU malleable convolution: a small C++ kernel compiled on first use and run on a pool of threads.

Maths. Bilinear slicing with half-pixel centres is separable. Per image row ``y`` a table gives the upper grid
row ``y0(y)`` and the weight ``ly(y)`` of row ``y0 + 1`` (0 in the last grid row, whose neighbour is itself);
per column, ``x0(x)`` and ``lx(x)`` (:func:`_sampling_table`, exact integer arithmetic). Along an image row the
pixels come in runs sharing the cell column ``j = x0``; for each of the ``P = K² + 1`` planes (the K² taps,
then the bias) of such a cell, seen from row ``y``,

    A_t = k_t[y0, j] + ly·(k_t[y0 + 1, j] − k_t[y0, j]),    D_t = A_t(j + 1) − A_t(j)   (0 in the last column),

so the kernel at a pixel of the run is ``k̂_t = A_t + lx·D_t`` and

    out(p) = k̂_bias(p) + Σ_t k̂_t(p)·x(p + t)   (zero padding).

A block of up to 8 pixels of a run shares one computation of each ``A_t, D_t`` (four grid loads), and along
each tap row ``8 + K − 1`` loads of ``x`` serve the ``8·K`` products; per pixel that is one multiply-add to
interpolate and one to filter per tap (``2K² + 2`` against ``K²`` for a plain depthwise convolution), vectorised
over 16 channels, reading ``x`` once and writing ``out`` once. The full-resolution kernel map never exists,
not even one row of it.

Backward, with ``g = ∂L/∂out``:

* ``∂L/∂x(q) = Σ_t k̂_t(q − t)·g(q − t)``: ``x(q)`` feeds output ``p = q − t`` through tap ``t`` of the kernel
  sliced at ``p`` — the source pixel's cell and weights, not ``q``'s. Sweeping the source pixels ``p`` of the
  K source rows in blocks of one run, the K taps of a tap row share ``p``'s cell; tap ``(i, j)`` lands on
  column ``p + j − K//2``, held in a sliding window of accumulators. It costs what the forward costs.
* ``∂L/∂k_t[cy, cx] = Σ_p φ_cy(y)·φ_cx(x)·g(p)·x(p + t)`` (``g(p)`` alone for the bias plane), the adjoint of
  the slicing: over a run, ``g·x`` summed in registers with weights ``1 − lx`` (cell ``j``) and ``lx``
  (cell ``j + 1``), then added into grid rows ``y0`` and ``y0 + 1`` with weights ``1 − ly`` and ``ly``.

Reduction choice (grid gradient): no atomics and no per-thread copies of the grid. Image rows are grouped by
``y0``; group ``gy`` writes only grid rows ``gy`` and ``gy + 1``, so all even groups run in parallel, then all
odd groups (two phases). Every cell is accumulated by one thread in a fixed order, in fp32 (fp64 for fp64), so
the result is deterministic, and the extra memory is the fp32 grid itself.

Layout and dtypes. The kernels and bias, with any strides and dtype (e.g. channel slices of one predictor
output), are read a grid row at a time: each thread packs the grid rows its image rows need into
``(w, P, C)`` buffers of the accumulation type, kept in a small least-recently-used set (2 rows forward, 2K
backward), so the forward pass allocates no grid at all; the grid gradient is accumulated in one
``(B, h, w, P, C)`` buffer (``P/s²`` of the image's size for a grid ``s`` times coarser: 0.16 at ``s = 8``,
``K = 3``) and unpacked into the kernel and bias gradients. The compute loops see channel-contiguous
``(W, C)`` rows: a channels_last fp32 (fp64) tensor is used in place; any other layout or dtype (NCHW,
strided, bf16, fp16) goes through a converted row buffer per thread, so the extra memory is
``O(threads·K·W·C)`` forward. Image rows are split into one contiguous range per
``torch.get_num_threads()`` Python threads; ``ctypes`` releases the GIL during each call.

Build. The C++ source below (no PyTorch headers, a few seconds to compile) is built once per source, compiler,
flags and PyTorch's CPU capability into ``$RESTOREKIT_CACHE_DIR`` (default ``$XDG_CACHE_HOME/restorekit`` or
``~/.cache/restorekit``) and loaded with :mod:`ctypes`. Without a working compiler :func:`available` is false
and ``ops.malleable_conv`` falls back to the reference.

Why this formulation (2 cores, C = 32, 1 thread CPU time unless noted): the reference tap loop is 80× a
channels_last depthwise convolution at 256² and 60× at 512²; ``torch.compile`` of the upsample-and-multiply
formulation took 16 s of CPU to compile and then ran at 17× the depthwise convolution (512², 2 threads:
inductor gathers the four neighbours per tap and does not vectorise them); this kernel runs at 1.3–1.4×.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

_SOURCE = r"""
// Malleable convolution on CPU: forward, grad x and grad of the low-resolution grid (see _malleable_cpu.py).
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef int64_t i64;

namespace {

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

template <typename S> inline S narrow(double v);
template <> inline float narrow<float>(double v) { return (float)v; }
template <> inline double narrow<double>(double v) { return v; }
template <> inline bf16_t narrow<bf16_t>(double v) {  // round to nearest even, NaN stays NaN
  const uint32_t u = float_to_bits((float)v);
  if ((u & 0x7fffffffu) > 0x7f800000u) return bf16_t{(uint16_t)((u >> 16) | 0x40)};
  return bf16_t{(uint16_t)((u + 0x7fffu + ((u >> 16) & 1)) >> 16)};
}
template <> inline f16_t narrow<f16_t>(double v) {  // round to nearest even (F. Giesen)
  uint32_t u = float_to_bits((float)v);
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

template <typename A, typename S>
void gather_row(const View& v, i64 b, i64 y, i64 W, i64 C, A* dst) {
  const S* src = (const S*)v.data + b * v.sb + y * v.sh;
  if (v.sw == 1) {
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
  if (v.sw == 1) {
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

template <typename A>
struct RowSource {  // read-only rows, cached in `slots` ring entries keyed by (b, y)
  View v;
  i64 H, W, C;
  bool direct;
  int slots;
  A* buf;
  i64 key[3];
  RowSource(const View& view, i64 H_, i64 W_, i64 C_, int slots_)
      : v(view), H(H_), W(W_), C(C_), direct(is_direct<A>(view, W_, C_)), slots(slots_), buf(nullptr) {
    if (!direct) buf = (A*)malloc(sizeof(A) * slots * W * C);
    for (int s = 0; s < 3; ++s) key[s] = -1;
  }
  ~RowSource() { free(buf); }
  bool ok() const { return direct || buf != nullptr; }
  const A* get(i64 b, i64 y) {  // nullptr outside the image (zero padding)
    if (y < 0 || y >= H) return nullptr;
    if (direct) return (const A*)v.data + b * v.sb + y * v.sh;
    const int s = (int)(y % slots);
    if (key[s] != b * H + y) {
      load_row<A>(v, b, y, W, C, buf + s * W * C);
      key[s] = b * H + y;
    }
    return buf + s * W * C;
  }
};

template <typename A>
struct RowSink {  // write-only rows
  View v;
  i64 W, C;
  bool direct;
  A* buf;
  RowSink(const View& view, i64 W_, i64 C_) : v(view), W(W_), C(C_), direct(is_direct<A>(view, W_, C_)), buf(nullptr) {
    if (!direct) buf = (A*)malloc(sizeof(A) * W * C);
  }
  ~RowSink() { free(buf); }
  bool ok() const { return direct || buf != nullptr; }
  A* row(i64 b, i64 y) { return direct ? (A*)v.data + b * v.sb + y * v.sh : buf; }
  void commit(i64 b, i64 y) {
    if (!direct) store_row<A>(v, b, y, W, C, buf);
  }
};

struct Shape {
  i64 B, C, H, W, h, w;
  int K;
  i64 planes() const { return (i64)K * K + 1; }  // K² taps and the bias
};

// Channel chunks: a 512-bit GCC/Clang vector of A (split by the compiler where the ISA is narrower) for each
// full chunk, then the remaining channels one at a time with V = A. The compute templates are written once for
// both; a local V lives in a register, which an array indexed by a runtime width would not. Loads and stores
// go through memcpy (unaligned).
typedef float vec_f32 __attribute__((vector_size(64)));
typedef double vec_f64 __attribute__((vector_size(64)));
template <typename A> struct Vector;
template <> struct Vector<float> { typedef vec_f32 type; };
template <> struct Vector<double> { typedef vec_f64 type; };

#define MC_INLINE inline __attribute__((always_inline))

template <typename V, typename A> MC_INLINE V load(const A* p) {
  V v;
  memcpy(&v, p, sizeof(V));
  return v;
}
template <typename V, typename A> MC_INLINE void store(A* p, V v) { memcpy(p, &v, sizeof(V)); }

template <typename T> struct Tag { typedef T type; };

// Calls body(Tag<V>, c0) for each chunk of channels starting at c0.
template <typename A, typename Body>
MC_INLINE void over_chunks(i64 C, Body&& body) {
  typedef typename Vector<A>::type V;
  constexpr i64 width = sizeof(V) / sizeof(A);
  i64 c0 = 0;
  for (; c0 + width <= C; c0 += width) body(Tag<V>{}, c0);
  for (; c0 < C; ++c0) body(Tag<A>{}, c0);
}

// Calls block(Int<PB>, px) over the run [px, end) of pixels sharing one cell: blocks of 8, then 4, then 1.
template <int PB> struct Int { static constexpr int value = PB; };
template <typename Block>
MC_INLINE void over_blocks(i64 px, i64 end, Block&& block) {
  for (; px + 8 <= end; px += 8) block(Int<8>{}, px);
  if (px + 4 <= end) {
    block(Int<4>{}, px);
    px += 4;
  }
  for (; px < end; ++px) block(Int<1>{}, px);
}

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
    a = a0 + ly * (load<V>(p1 + off) - a0);
    if (next) {
      const V b0 = load<V>(p0 + next + off);
      d = b0 + ly * (load<V>(p1 + next + off) - b0) - a;
    } else {
      d = V{};
    }
  }
};

// Packs grid row y of batch b — kernels (B, C·K², h, w) and bias (B, C, h, w), any strides and dtype — into
// `row`, (w, P, C) in the accumulation type (planes: the K² taps, then the bias), or (unpack) writes such a row
// back into kernels and bias. 16×16 (channels × columns) tiles go through L1 so both sides stay contiguous.
template <typename A, typename S>
void pack_row(const Shape& s, const View& kv, const View& bv, i64 b, i64 y, A* row, bool unpack) {
  constexpr i64 tile = 16;
  const i64 T = (i64)s.K * s.K, P = T + 1, C = s.C;
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

// Packed grid rows on demand, least recently used first out of `slots` (≥ the rows one image row needs).
template <typename A>
struct PackedRows {
  static constexpr int kMaxSlots = 6;
  const Shape& s;
  View kv, bv;
  int slots;
  i64 size, clock;
  A* buf;
  i64 key[kMaxSlots], used[kMaxSlots];
  PackedRows(const Shape& shape, const View& k, const View& bias, int slots_)
      : s(shape), kv(k), bv(bias), slots(slots_), size(shape.w * shape.planes() * shape.C), clock(0) {
    buf = (A*)malloc(sizeof(A) * slots * size);
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
template <typename A, typename V, int K, int PB, bool EDGE>
MC_INLINE void forward_block(const Shape& s, i64 c0, i64 px0, const Cell<A>& cell, const A* lx,
                             const A* const* xrows, A* out) {
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
  for (int u = 0; u < PB; ++u) store(out + (px0 + u) * C + c0, acc[u]);
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
                 const A* ly, const int32_t* x0, const A* lx, i64 begin, i64 end) {
  constexpr int pad = K / 2;
  RowSource<A> xs(xv, s.H, s.W, s.C, K);
  RowSink<A> os(ov, s.W, s.C);
  PackedRows<A> packed(s, kv, bv, 2);
  if (!xs.ok() || !os.ok() || !packed.ok()) return 1;
  for (i64 r = begin; r < end; ++r) {
    const i64 b = r / s.H, y = r % s.H;
    const GridRows<A> rows(s, packed, b, y0[y], ly[y]);
    const A* xrows[K];
    for (int i = 0; i < K; ++i) xrows[i] = xs.get(b, y + i - pad);
    A* out = os.row(b, y);
    for (i64 px = 0; px < s.W;) {
      const i64 stop = run_end(x0, px, s.W);
      const Cell<A> cell = rows.cell(s, x0[px]);
      over_blocks(px, stop, [&](auto pb, i64 p) {
        constexpr int PB = decltype(pb)::value;
        const bool edge = p < pad || p + PB > s.W - pad;
        over_chunks<A>(s.C, [&](auto tag, i64 c0) {
          typedef typename decltype(tag)::type V;
          if (edge) forward_block<A, V, K, PB, true>(s, c0, p, cell, lx, xrows, out);
          else forward_block<A, V, K, PB, false>(s, c0, p, cell, lx, xrows, out);
        });
      });
      px = stop;
    }
    os.commit(b, y);
  }
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

#define MC_EXPORT(A, SUFFIX)                                                                                      \
  MC_FILTER_EXPORT(A, SUFFIX, forward, forward_rows)                                                              \
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
"""

_DTYPE_CODES = {torch.float32: 0, torch.float64: 1, torch.bfloat16: 2, torch.float16: 3}
DTYPES = tuple(_DTYPE_CODES)
_MIN_WORK_PER_THREAD = 1 << 16  # output values; below this a thread costs more than it saves
_POOL: ThreadPoolExecutor | None = None


def available() -> bool:
    """Whether the CPU kernel is built (or can be built now) and loaded."""
    return _library() is not None


def malleable_conv_cpu(x: torch.Tensor, kernels: torch.Tensor, bias: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Malleable convolution with the compiled CPU kernel (validated inputs; see ``ops.malleable_conv``).

    Args:
        x: Feature map, ``(B, C, H, W)``, any strides, fp32/fp64/bf16/fp16.
        kernels: Low-resolution kernels, ``(B, C·K², h, w)``, same dtype.
        bias: Low-resolution biases, ``(B, C, h, w)``, same dtype.
        kernel_size: K ∈ {1, 3}.

    Returns:
        ``(B, C, H, W)`` in ``x``'s dtype and memory format; differentiable in all three tensors.
    """
    return _MalleableConvCPU.apply(x, kernels, bias, kernel_size)


class _MalleableConvCPU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, kernels, bias, kernel_size):
        ctx.save_for_backward(x, kernels, bias)
        ctx.kernel_size = kernel_size
        out = torch.empty_like(x)
        _filter("forward", x, kernels, bias, kernel_size, x, out)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        x, kernels, bias = ctx.saved_tensors
        kernel_size = ctx.kernel_size
        need_x, need_kernels, need_bias = ctx.needs_input_grad[:3]
        grad_x = grad_kernels = grad_bias = None
        if need_x:
            grad_x = torch.empty_like(x)
            _filter("grad_x", x, kernels, bias, kernel_size, grad_out, grad_x)
        if need_kernels or need_bias:
            grad_kernels, grad_bias = _grad_grid(x, kernels, bias, kernel_size, grad_out)
        return grad_x, grad_kernels, grad_bias, None


def _accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _shape(x: torch.Tensor, bias: torch.Tensor, kernel_size: int) -> ctypes.Array:
    return _int64s(*x.shape, *bias.shape[-2:], kernel_size)


@functools.lru_cache(maxsize=64)
def _sampling_table(size: int, grid_size: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Along one axis: each pixel's upper cell and next-cell weight, and where each cell's pixels start.

    Pixel ``i`` samples the grid at ``(i + ½)·grid_size/size − ½`` clamped at 0 (``align_corners=False``), the
    exact fraction ``n / 2·size`` with ``n = (2i + 1)·grid_size − size``: integer arithmetic, as in the Triton
    kernels. Past the last centre the neighbour is the last cell itself, so its weight is 0.

    Returns:
        ``first`` (int32, ``(size,)``), ``weight`` (``dtype``, ``(size,)``) and ``starts`` (int32,
        ``(grid_size + 1,)``): the pixels whose upper cell is ``c`` are ``starts[c]`` … ``starts[c + 1] − 1``.
    """
    numerator = ((2 * torch.arange(size) + 1) * grid_size - size).clamp(min=0)
    first = (numerator // (2 * size)).clamp(max=grid_size - 1)
    weight = (numerator - first * 2 * size).to(torch.float64) / (2 * size)
    weight = torch.where(first < grid_size - 1, weight, 0.0).to(dtype)
    starts = torch.searchsorted(first, torch.arange(grid_size + 1))
    return first.to(torch.int32), weight, starts.to(torch.int32)


def _filter(
    kind: str,
    x: torch.Tensor,
    kernels: torch.Tensor,
    bias: torch.Tensor,
    kernel_size: int,
    source: torch.Tensor,
    target: torch.Tensor,
) -> None:
    """Row-parallel ``forward`` (source x → target out) or ``grad_x`` (source ∂L/∂out → target ∂L/∂x)."""
    batch, channels, height, width = x.shape
    rows, cols = bias.shape[-2:]
    dtype = _accumulation_dtype(x.dtype)
    y0, ly, _ = _sampling_table(height, rows, dtype)
    x0, lx, _ = _sampling_table(width, cols, dtype)
    fixed = (_shape(x, bias, kernel_size), *_view(source), *_view(kernels), *_view(bias), *_view(target))
    fixed += (y0.data_ptr(), ly.data_ptr(), x0.data_ptr(), lx.data_ptr())
    _parallel(_function(kind, dtype), fixed, batch * height, width * channels)


def _grad_grid(
    x: torch.Tensor, kernels: torch.Tensor, bias: torch.Tensor, kernel_size: int, grad_out: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of the kernels ``(B, C·K², h, w)`` and bias ``(B, C, h, w)``, in two deterministic phases."""
    batch, channels, height, width = x.shape
    rows, cols = bias.shape[-2:]
    dtype = _accumulation_dtype(x.dtype)
    grid = torch.zeros(batch, rows, cols, kernel_size**2 + 1, channels, dtype=dtype)
    _, ly, starts = _sampling_table(height, rows, dtype)
    x0, lx, _ = _sampling_table(width, cols, dtype)
    shape = _shape(x, bias, kernel_size)
    for phase in (0, 1):
        fixed = (shape, *_view(grad_out), *_view(x), grid.data_ptr())
        fixed += (starts.data_ptr(), ly.data_ptr(), x0.data_ptr(), lx.data_ptr(), phase)
        groups = (rows - phase + 1) // 2
        _parallel(_function("grad_grid", dtype), fixed, batch * groups, height * width * channels // rows)
    grad_kernels, grad_bias = torch.empty_like(kernels), torch.empty_like(bias)
    fixed = (shape, *_view(grad_kernels), *_view(grad_bias), grid.data_ptr())
    _parallel(_function("unpack_grid", dtype), fixed, batch * rows, cols * channels * (kernel_size**2 + 1))
    return grad_kernels, grad_bias


_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}


def _function(kind: str, dtype: torch.dtype) -> Callable[..., int]:
    return getattr(_library(), f"mc_{kind}_{_SUFFIX[dtype]}")


def _int64s(*values: int) -> ctypes.Array:
    return (ctypes.c_int64 * len(values))(*values)


def _view(tensor: torch.Tensor) -> tuple[int, int, ctypes.Array]:
    return tensor.data_ptr(), _DTYPE_CODES[tensor.dtype], _int64s(*tensor.stride())


def _parallel(function: Callable[..., int], fixed: tuple, items: int, work_per_item: int) -> None:
    """Call ``function(*fixed, begin, end)`` over ``[0, items)`` split into one contiguous range per thread."""
    threads = max(1, min(torch.get_num_threads(), items, items * work_per_item // _MIN_WORK_PER_THREAD))
    bounds = [(items * i // threads, items * (i + 1) // threads) for i in range(threads)]
    if threads == 1:
        codes = [function(*fixed, 0, items)]
    else:
        codes = list(_pool().map(lambda span: function(*fixed, *span), bounds))
    if any(codes):
        raise MemoryError("malleable_conv: the CPU kernel could not allocate its row buffers")


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="malleable_conv")
    return _POOL


def _forget_pool() -> None:
    """A forked child inherits the pool object but not its threads."""
    global _POOL
    _POOL = None


os.register_at_fork(after_in_child=_forget_pool)


@functools.cache
def _library() -> ctypes.CDLL | None:
    try:
        library = ctypes.CDLL(str(_build()))
    except (OSError, subprocess.SubprocessError) as exc:
        message = f"malleable_conv: the CPU kernel could not be built ({exc}); using the reference"
        warnings.warn(message, RuntimeWarning, stacklevel=2)
        return None
    pointer, integer, int64 = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64
    view = [pointer, integer, pointer]
    tables = [pointer] * 4
    for suffix in _SUFFIX.values():
        for kind in ("forward", "grad_x"):
            function = getattr(library, f"mc_{kind}_{suffix}")
            function.argtypes = [pointer, *view, *view, *view, *view, *tables, int64, int64]
            function.restype = integer
        function = getattr(library, f"mc_grad_grid_{suffix}")
        function.argtypes = [pointer, *view, *view, pointer, *tables, integer, int64, int64]
        function.restype = integer
        function = getattr(library, f"mc_unpack_grid_{suffix}")
        function.argtypes = [pointer, *view, *view, pointer, int64, int64]
        function.restype = integer
    return library


def _isa_flags() -> list[str]:
    """Vector ISA flags for what PyTorch detected on this CPU (so a cached build never meets a CPU without it)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return []
    capability = torch.backends.cpu.get_cpu_capability()
    if capability.startswith("AVX512"):
        return ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx2", "-mfma", "-mprefer-vector-width=512"]
    if capability == "AVX2":
        return ["-mavx2", "-mfma"]
    return []


def _cache_dir() -> Path:
    root = os.environ.get("RESTOREKIT_CACHE_DIR")
    if not root:
        root = str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "restorekit")
    return Path(root) / "kernels"


def _build() -> Path:
    """Compile ``_SOURCE`` into the cache (once per source, compiler, flags and CPU capability); return the path."""
    compiler = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    if not compiler:
        raise OSError("no C++ compiler found (install g++ or set $CXX)")
    flags = ["-O3", "-std=c++17", "-shared", "-fPIC", *_isa_flags()]
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True, check=True).stdout
    digest = hashlib.sha256("\0".join([_SOURCE, compiler, version, *flags]).encode()).hexdigest()[:16]
    target = _cache_dir() / f"malleable_conv_cpu-{digest}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    print(f"restorekit: compiling the CPU kernel, once (cached in {target.parent})", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        source, library = Path(tmp) / "malleable_conv_cpu.cpp", Path(tmp) / "library.so"
        source.write_text(_SOURCE)
        done = subprocess.run([compiler, *flags, str(source), "-o", str(library)], capture_output=True, text=True)
        if done.returncode:
            raise OSError(f"{compiler} failed: {done.stderr.strip()[-2000:]}")
        os.replace(library, target)  # atomic: concurrent builders race harmlessly
    return target
