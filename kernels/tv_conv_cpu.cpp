// Translation-variant (per-position depthwise) convolution on the CPU (restorekit.ops.tv_conv).
//
// Layouts (prepared by restorekit/ops/_tv_cpu.py, all contiguous):
//   x       (B, H, W, C)                channels_last feature map
//   weight  (B_w, H_out, W_out, T, C)   T = K² taps, row-major in the K×K window; B_w = 1 (shared) or B
//   out     (B, H_out, W_out, C)        channels_last output
//   g       (B, H_out, W_out, C)        ∂L/∂out, channels_last
// shape = {B, H, W, C, K, S, H_out, W_out, B_w}; R = K / 2, w_b = weight[0] when B_w = 1, else weight[b].
//
//   out[b, p, c]      = Σ_t w_b[p, t, c] · x[b, S·p + t − R, c]                               (zero padding)
//   ∂x[b, q, c]       = Σ_t g[b, p, c] · w_b[p, t, c]  over the taps with S·p = q − t + R for an output p
//   ∂w[p, t, c]       = Σ_{b sharing w} g[b, p, c] · x[b, S·p + t − R, c]
//
// ∂x is gathered: for each input pixel q and tap t, the output p = (q − t + R) / S exists only when the division
// is exact (stride 2: half the taps in each direction) and p lies in the output; no write conflicts. ∂w sums
// over the batch inside the call that owns the weight row (shared weights), in batch order: deterministic.
// Every function handles rows [begin, end) of its output (B·H_out, B·H or B_w·H_out rows), so threads split
// the work without sharing an output row; no buffers. Every inner loop is an element-wise multiply-add over
// contiguous channels, so it vectorises without -ffast-math (no reduction to reassociate).

#include <algorithm>
#include <cstdint>

namespace {

struct Shape {
    int64_t B, H, W, C, K, S, Ho, Wo, Bw, R, taps;
    explicit Shape(const int64_t* s)
        : B(s[0]), H(s[1]), W(s[2]), C(s[3]), K(s[4]), S(s[5]), Ho(s[6]), Wo(s[7]), Bw(s[8]), R(s[4] / 2),
          taps(s[4] * s[4]) {}
};

template <typename T>
inline void multiply_add(T* __restrict acc, const T* __restrict a, const T* __restrict b, int64_t n) {
    for (int64_t c = 0; c < n; ++c) acc[c] += a[c] * b[c];
}

template <typename T>
void forward(const int64_t* shape, const T* __restrict x, const T* __restrict weight, T* __restrict out,
             int64_t begin, int64_t end) {
    const Shape s(shape);
    for (int64_t row = begin; row < end; ++row) {  // rows of B·H_out
        const int64_t b = row / s.Ho, y = row % s.Ho, bw = s.Bw == 1 ? 0 : b;
        for (int64_t xo = 0; xo < s.Wo; ++xo) {
            T* o = out + ((b * s.Ho + y) * s.Wo + xo) * s.C;
            const T* w = weight + ((bw * s.Ho + y) * s.Wo + xo) * s.taps * s.C;
            std::fill(o, o + s.C, T(0));
            for (int64_t i = 0; i < s.K; ++i) {
                const int64_t sy = y * s.S + i - s.R;
                if (sy < 0 || sy >= s.H) continue;
                for (int64_t j = 0; j < s.K; ++j) {
                    const int64_t sx = xo * s.S + j - s.R;
                    if (sx < 0 || sx >= s.W) continue;
                    multiply_add(o, w + (i * s.K + j) * s.C, x + ((b * s.H + sy) * s.W + sx) * s.C, s.C);
                }
            }
        }
    }
}

// The output coordinate whose tap `offset` reads input coordinate q, or −1 when there is none.
inline int64_t source(int64_t q, int64_t offset, const Shape& s, int64_t size) {
    const int64_t n = q + s.R - offset;
    if (n < 0 || n % s.S != 0) return -1;
    const int64_t p = n / s.S;
    return p < size ? p : -1;
}

template <typename T>
void grad_x(const int64_t* shape, const T* __restrict weight, const T* __restrict grad, T* __restrict grad_x,
            int64_t begin, int64_t end) {
    const Shape s(shape);
    for (int64_t row = begin; row < end; ++row) {  // rows of B·H
        const int64_t b = row / s.H, qy = row % s.H, bw = s.Bw == 1 ? 0 : b;
        for (int64_t qx = 0; qx < s.W; ++qx) {
            T* gx = grad_x + ((b * s.H + qy) * s.W + qx) * s.C;
            std::fill(gx, gx + s.C, T(0));
            for (int64_t i = 0; i < s.K; ++i) {
                const int64_t py = source(qy, i, s, s.Ho);
                if (py < 0) continue;
                for (int64_t j = 0; j < s.K; ++j) {
                    const int64_t px = source(qx, j, s, s.Wo);
                    if (px < 0) continue;
                    const T* w = weight + (((bw * s.Ho + py) * s.Wo + px) * s.taps + i * s.K + j) * s.C;
                    multiply_add(gx, w, grad + ((b * s.Ho + py) * s.Wo + px) * s.C, s.C);
                }
            }
        }
    }
}

template <typename T>
void grad_weight(const int64_t* shape, const T* __restrict x, const T* __restrict grad, T* __restrict grad_weight,
                 int64_t begin, int64_t end) {
    const Shape s(shape);
    const int64_t images = s.Bw == 1 ? s.B : 1;  // the images that share one weight map
    for (int64_t row = begin; row < end; ++row) {  // rows of B_w·H_out
        const int64_t bw = row / s.Ho, y = row % s.Ho;
        for (int64_t xo = 0; xo < s.Wo; ++xo) {
            T* gw = grad_weight + ((bw * s.Ho + y) * s.Wo + xo) * s.taps * s.C;
            std::fill(gw, gw + s.taps * s.C, T(0));
            for (int64_t k = 0; k < images; ++k) {
                const int64_t b = s.Bw == 1 ? k : bw;
                const T* g = grad + ((b * s.Ho + y) * s.Wo + xo) * s.C;
                for (int64_t i = 0; i < s.K; ++i) {
                    const int64_t sy = y * s.S + i - s.R;
                    if (sy < 0 || sy >= s.H) continue;
                    for (int64_t j = 0; j < s.K; ++j) {
                        const int64_t sx = xo * s.S + j - s.R;
                        if (sx < 0 || sx >= s.W) continue;
                        multiply_add(gw + (i * s.K + j) * s.C, g, x + ((b * s.H + sy) * s.W + sx) * s.C, s.C);
                    }
                }
            }
        }
    }
}

}  // namespace

// Nothing here allocates or throws, so every function returns 0 (the calling convention of restorekit's kernels).
extern "C" {

int tv_forward_f32(const int64_t* s, const float* x, const float* w, float* o, int64_t b, int64_t e) {
    forward(s, x, w, o, b, e);
    return 0;
}
int tv_forward_f64(const int64_t* s, const double* x, const double* w, double* o, int64_t b, int64_t e) {
    forward(s, x, w, o, b, e);
    return 0;
}
int tv_grad_x_f32(const int64_t* s, const float* w, const float* g, float* gx, int64_t b, int64_t e) {
    grad_x(s, w, g, gx, b, e);
    return 0;
}
int tv_grad_x_f64(const int64_t* s, const double* w, const double* g, double* gx, int64_t b, int64_t e) {
    grad_x(s, w, g, gx, b, e);
    return 0;
}
int tv_grad_weight_f32(const int64_t* s, const float* x, const float* g, float* gw, int64_t b, int64_t e) {
    grad_weight(s, x, g, gw, b, e);
    return 0;
}
int tv_grad_weight_f64(const int64_t* s, const double* x, const double* g, double* gw, int64_t b, int64_t e) {
    grad_weight(s, x, g, gw, b, e);
    return 0;
}

}  // extern "C"
