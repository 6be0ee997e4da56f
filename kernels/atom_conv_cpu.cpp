// Atom convolution on the CPU: per-pixel atoms shared by the channels (restorekit.ops.atom_conv).
//
// Layouts (prepared by restorekit/ops/_atom_cpu.py, all contiguous):
//   x      (B, H, W, C)       channels_last feature map
//   atoms  (B, H, W, T, M)    T = K² taps, row-major in the K×K window; M atoms per pixel
//   out    (B, H, W, C, M)    responses, channel c·M + m (channels_last view of (B, C·M, H, W))
//   g      (B, H, W, M, C)    ∂L/∂out, transposed so that the backward loops run over contiguous channels
//
//   out[p, c, m]  = Σ_t atoms[p, t, m] · x[p + t, c]                     (zero padding)
//   ∂x[q, c]      = Σ_t Σ_m g[q − t, c, m] · atoms[q − t, t, m]         (gathered: no write conflicts)
//   ∂atoms[p,t,m] = Σ_c g[p, c, m] · x[p + t, c]
//
// Every function handles the image rows [begin, end) of the B·H rows, so threads split the work without
// sharing an output row; each reads its inputs once per tap and writes each output value once. The extra
// memory is one pixel's responses (C·M values) per call. Every inner loop runs over contiguous channels
// (sums over channels in interleaved partial sums), so it vectorises without -ffast-math.

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace {

template <typename T>
void forward(const int64_t* shape, const T* __restrict x, const T* __restrict atoms, T* __restrict out,
             int64_t begin, int64_t end) {
    const int64_t H = shape[1], W = shape[2], C = shape[3], M = shape[4], K = shape[5], R = K / 2, taps = K * K;
    std::vector<T> acc(M * C);  // [m][c]: the inner loop runs over contiguous channels
    for (int64_t row = begin; row < end; ++row) {
        const int64_t b = row / H, y = row % H;
        for (int64_t xx = 0; xx < W; ++xx) {
            const int64_t p = (b * H + y) * W + xx;
            const T* a = atoms + p * taps * M;
            std::fill(acc.begin(), acc.end(), T(0));
            for (int64_t i = 0; i < K; ++i) {
                const int64_t sy = y + i - R;
                if (sy < 0 || sy >= H) continue;
                for (int64_t j = 0; j < K; ++j) {
                    const int64_t sx = xx + j - R;
                    if (sx < 0 || sx >= W) continue;
                    const T* xs = x + ((b * H + sy) * W + sx) * C;
                    const T* at = a + (i * K + j) * M;
                    for (int64_t m = 0; m < M; ++m) {
                        const T weight = at[m];
                        T* __restrict row_acc = acc.data() + m * C;
                        for (int64_t c = 0; c < C; ++c) row_acc[c] += weight * xs[c];
                    }
                }
            }
            T* o = out + p * C * M;
            for (int64_t m = 0; m < M; ++m)
                for (int64_t c = 0; c < C; ++c) o[c * M + m] = acc[m * C + c];
        }
    }
}

// Σ_c a[c]·b[c] in 16 interleaved partial sums, so the compiler vectorises it without reassociating floats.
template <typename T>
inline T dot(const T* __restrict a, const T* __restrict b, int64_t n) {
    constexpr int64_t L = 16;
    T part[L] = {};
    int64_t c = 0;
    for (; c + L <= n; c += L)
        for (int64_t l = 0; l < L; ++l) part[l] += a[c + l] * b[c + l];
    T sum = 0;
    for (int64_t l = 0; l < L; ++l) sum += part[l];
    for (; c < n; ++c) sum += a[c] * b[c];
    return sum;
}

// grad is ∂L/∂out transposed to (B, H, W, M, C), so both loops below run over contiguous channels.
template <typename T>
void grad_atoms(const int64_t* shape, const T* __restrict x, const T* __restrict grad, T* __restrict grad_atoms,
                int64_t begin, int64_t end) {
    const int64_t H = shape[1], W = shape[2], C = shape[3], M = shape[4], K = shape[5], R = K / 2, taps = K * K;
    for (int64_t row = begin; row < end; ++row) {
        const int64_t b = row / H, y = row % H;
        for (int64_t xx = 0; xx < W; ++xx) {
            const int64_t p = (b * H + y) * W + xx;
            const T* g = grad + p * M * C;
            T* ga = grad_atoms + p * taps * M;
            for (int64_t i = 0; i < K; ++i) {
                const int64_t sy = y + i - R;
                for (int64_t j = 0; j < K; ++j) {
                    const int64_t sx = xx + j - R;
                    T* gat = ga + (i * K + j) * M;
                    const bool inside = sy >= 0 && sy < H && sx >= 0 && sx < W;
                    const T* xs = x + ((b * H + sy) * W + sx) * C;
                    for (int64_t m = 0; m < M; ++m) gat[m] = inside ? dot(g + m * C, xs, C) : T(0);
                }
            }
        }
    }
}

template <typename T>
void grad_x(const int64_t* shape, const T* __restrict atoms, const T* __restrict grad, T* __restrict grad_x,
            int64_t begin, int64_t end) {
    const int64_t H = shape[1], W = shape[2], C = shape[3], M = shape[4], K = shape[5], R = K / 2, taps = K * K;
    for (int64_t row = begin; row < end; ++row) {
        const int64_t b = row / H, y = row % H;
        for (int64_t xx = 0; xx < W; ++xx) {
            T* __restrict gx = grad_x + ((b * H + y) * W + xx) * C;
            std::fill(gx, gx + C, T(0));
            // x(q) fed output p = q − t through tap t of p's atoms.
            for (int64_t i = 0; i < K; ++i) {
                const int64_t py = y - (i - R);
                if (py < 0 || py >= H) continue;
                for (int64_t j = 0; j < K; ++j) {
                    const int64_t px = xx - (j - R);
                    if (px < 0 || px >= W) continue;
                    const int64_t p = (b * H + py) * W + px;
                    const T* at = atoms + (p * taps + i * K + j) * M;
                    for (int64_t m = 0; m < M; ++m) {
                        const T weight = at[m];
                        const T* __restrict gm = grad + (p * M + m) * C;
                        for (int64_t c = 0; c < C; ++c) gx[c] += weight * gm[c];
                    }
                }
            }
        }
    }
}

// A buffer that cannot be allocated is reported as 1, never thrown across the C boundary.
template <typename F>
int guarded(F&& work) {
    try {
        work();
        return 0;
    } catch (...) {
        return 1;
    }
}

}  // namespace

extern "C" {

int ac_forward_f32(const int64_t* s, const float* x, const float* a, float* o, int64_t b, int64_t e) {
    return guarded([&] { forward(s, x, a, o, b, e); });
}
int ac_forward_f64(const int64_t* s, const double* x, const double* a, double* o, int64_t b, int64_t e) {
    return guarded([&] { forward(s, x, a, o, b, e); });
}
int ac_grad_atoms_f32(const int64_t* s, const float* x, const float* g, float* ga, int64_t b, int64_t e) {
    return guarded([&] { grad_atoms(s, x, g, ga, b, e); });
}
int ac_grad_atoms_f64(const int64_t* s, const double* x, const double* g, double* ga, int64_t b, int64_t e) {
    return guarded([&] { grad_atoms(s, x, g, ga, b, e); });
}
int ac_grad_x_f32(const int64_t* s, const float* a, const float* g, float* gx, int64_t b, int64_t e) {
    return guarded([&] { grad_x(s, a, g, gx, b, e); });
}
int ac_grad_x_f64(const int64_t* s, const double* a, const double* g, double* gx, int64_t b, int64_t e) {
    return guarded([&] { grad_x(s, a, g, gx, b, e); });
}

}  // extern "C"
