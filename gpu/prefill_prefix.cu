// kvfp8 — chunked prefill over a cached prefix on tensor cores (CUDA, sm_80+).
//
// One CTA (4 warps) per (tile of query tokens of one sequence, KV head).  Its 64
// rows are (query token, query head of the KV head's group) pairs, 64 / group
// tokens per tile, so every K/V tile brought into shared memory serves the whole
// GQA group.  The context is walked in tiles of 64 keys (32 for head size 256):
//   1. cp.async brings the next tile's raw K and V rows (through the block table)
//      into shared memory while the current one is computed (two stages);
//   2. FP8 caches: the 128 threads dequantize the raw tile ONCE into an MT tile
//      (model-dtype: round_MT(decode * scale) in float32; uniform: the exact decode,
//      scales folded into the scores and the output); 16-bit caches are used as
//      loaded;
//   3. each warp computes S = Q K^T for its 16 rows (ldmatrix + mma.m16n8k16, float32
//      accumulators), the causal mask (a query at position i sees keys j <= i), an
//      online softmax in float32, and O += P V with P split into hi + lo MT parts.
// Shared memory rows are padded by 16 bytes (no ldmatrix bank conflicts).
#include <math.h>

#include "kvfp8_dev.cuh"
#include "kvfp8_kernels.h"
#include "kvfp8_mma.cuh"

namespace kvfp8_gpu {

int prefill_tile_tokens(int group) { return group > 0 && group <= 64 ? 64 / group : 1; }

#if defined(KVFP8_GPU_CUDA)

namespace {

constexpr int kRows = 64;

struct PrefillParams {
    AttnArgs a;
    const int *items;
    int group, tq;
};

template <int D, int KIND>
struct PrefillShape {
    static constexpr int KT = D <= 128 ? 64 : 32; // keys per tile
    static constexpr int STR = D + 8;             // MT elements per shared-memory row
    static constexpr int ES = KIND == KV_16BIT ? 2 : 1;
    static constexpr size_t Q_BYTES = (size_t)kRows * STR * 2;
    static constexpr size_t T_BYTES = (size_t)KT * STR * 2; // one MT tile (K or V)
    static constexpr size_t RAW_BYTES = (size_t)KT * D;     // one FP8 tile
    static constexpr size_t SMEM =
        KIND == KV_16BIT ? Q_BYTES + 4 * T_BYTES : Q_BYTES + 2 * T_BYTES + 4 * RAW_BYTES;
};

template <int D, int KIND, int MT>
__global__ void __launch_bounds__(128) prefill_mma_kernel(const __grid_constant__ PrefillParams P) {
    using S = PrefillShape<D, KIND>;
    constexpr int KT = S::KT, STR = S::STR;
    constexpr float PSCALE = MT == 1 ? 4096.0f : 1.0f;
    extern __shared__ __align__(16) uint8_t psm[];
    uint16_t *sQ = (uint16_t *)psm;
    uint8_t *tiles = psm + S::Q_BYTES;

    const AttnArgs &a = P.a;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
    const int kvh = blockIdx.y;
    const int seq = P.items[2 * blockIdx.x], t0 = P.items[2 * blockIdx.x + 1];
    const int q_begin = a.query_start_loc[seq], q_len = a.query_start_loc[seq + 1] - q_begin;
    const int len = a.seq_lens[seq], first_new = len - q_len;
    const int G = P.group;
    const int tok_last = min(t0 + P.tq, q_len) - 1;
    const int pos_max = first_new + tok_last;
    const int ntiles = pos_max / KT + 1;
    const int si = a.per_head_scales ? kvh : 0;
    const bool fold = a.read == KVFP8_READ_UNIFORM && KIND != KV_16BIT;
    const float ks = a.scales[si], vs = a.scales[256 + si];
    const float dsk = (KIND == KV_16BIT || fold) ? 1.0f : ks, dsv = (KIND == KV_16BIT || fold) ? 1.0f : vs;
    const float sc = a.softmax_scale * 1.44269504088896340736f * (fold ? ks : 1.0f);
    const float vfold = fold ? vs : 1.0f;
    const size_t tok_stride = (size_t)a.num_kv_heads * D * S::ES;
    const uint8_t *kbase = a.key_cache + (size_t)kvh * D * S::ES;
    const uint8_t *vbase = a.value_cache + (size_t)kvh * D * S::ES;
    const int *btab = a.block_table + (size_t)seq * a.max_blocks_per_seq;
    const int bs = a.block_size;

    // raw tile j -> stage (cp.async; keys past pos_max are zero-filled)
    auto issue_tile = [&](int j, int stage) {
        constexpr int CPR = D * S::ES / 16; // 16-byte chunks per row
        for (int i = tid; i < 2 * KT * CPR; i += 128) {
            const int which = i / (KT * CPR), rem = i % (KT * CPR), row = rem / CPR, c = rem % CPR;
            const int key = j * KT + row;
            const bool valid = key <= pos_max;
            const uint8_t *base = which ? vbase : kbase;
            const uint8_t *src =
                valid ? base + ((size_t)btab[key / bs] * bs + key % bs) * tok_stride + (size_t)c * 16 : base;
            uint8_t *dst;
            if (KIND == KV_16BIT)
                dst = tiles + (size_t)(2 * stage + which) * S::T_BYTES + (size_t)row * STR * 2 + (size_t)c * 16;
            else
                dst = tiles + 2 * S::T_BYTES + (size_t)(2 * stage + which) * S::RAW_BYTES + (size_t)row * D +
                      (size_t)c * 16;
            cp_async16(dst, src, valid ? 16 : 0);
        }
        cp_async_commit();
    };

    issue_tile(0, 0);

    // Q rows -> shared memory as MT (exact: the backend checked)
    for (int i = tid; i < kRows * (D / 4); i += 128) {
        const int r = i / (D / 4), d = (i % (D / 4)) * 4;
        const int tok = t0 + r / G;
        float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
        if (r / G < P.tq && tok < q_len)
            v = *(const float4 *)(a.query + ((size_t)(q_begin + tok) * a.num_q_heads + (size_t)(kvh * G + r % G)) * D +
                                  d);
        uint2 w;
        w.x = pack2<MT>(v.x, v.y), w.y = pack2<MT>(v.z, v.w);
        *(uint2 *)(sQ + (size_t)r * STR + d) = w;
    }

    // this thread's two rows
    const int ra = warp * 16 + g, rb = ra + 8;
    const int toka = t0 + ra / G, tokb = t0 + rb / G;
    const int pos_a = (ra / G < P.tq && toka < q_len) ? first_new + toka : -1;
    const int pos_b = (rb / G < P.tq && tokb < q_len) ? first_new + tokb : -1;

    float o[D / 8][4];
#pragma unroll
    for (int i = 0; i < D / 8; i++)
        o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
    float m_a = -INFINITY, m_b = -INFINITY, l_a = 0.0f, l_b = 0.0f;

    for (int j = 0; j < ntiles; j++) {
        const int stage = j & 1;
        if (j + 1 < ntiles) {
            issue_tile(j + 1, stage ^ 1);
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        const uint16_t *sK, *sV;
        if (KIND == KV_16BIT) {
            sK = (const uint16_t *)(tiles + (size_t)(2 * stage) * S::T_BYTES);
            sV = (const uint16_t *)(tiles + (size_t)(2 * stage + 1) * S::T_BYTES);
        } else {
            // dequantize the raw tile once, into the shared MT tile
            uint16_t *dK = (uint16_t *)tiles, *dV = (uint16_t *)(tiles + S::T_BYTES);
            const uint8_t *raw = tiles + 2 * S::T_BYTES + (size_t)(2 * stage) * S::RAW_BYTES;
            constexpr int CPR = D / 16;
            for (int i = tid; i < 2 * KT * CPR; i += 128) {
                const int which = i / (KT * CPR), rem = i % (KT * CPR), row = rem / CPR, c = rem % CPR;
                const uint4 x = *(const uint4 *)(raw + (size_t)which * S::RAW_BYTES + (size_t)row * D + (size_t)c * 16);
                const float ds = which ? dsv : dsk;
                const uint32_t w[4] = {x.x, x.y, x.z, x.w};
                uint32_t out[8];
#pragma unroll
                for (int u = 0; u < 4; u++) {
                    out[2 * u] = fp8x2_to_mt<KIND, MT>(w[u] & 0xFFFF, ds);
                    out[2 * u + 1] = fp8x2_to_mt<KIND, MT>(w[u] >> 16, ds);
                }
                uint16_t *dst = (which ? dV : dK) + (size_t)row * STR + (size_t)c * 16;
                *(uint4 *)dst = make_uint4(out[0], out[1], out[2], out[3]);
                *(uint4 *)(dst + 8) = make_uint4(out[4], out[5], out[6], out[7]);
            }
            __syncthreads();
            sK = dK, sV = dV;
        }

        // S = Q K^T for this warp's 16 rows
        float s[KT / 8][4];
#pragma unroll
        for (int nt = 0; nt < KT / 8; nt++)
            s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
#pragma unroll
        for (int k2 = 0; k2 < D / 32; k2++) {
            uint32_t qa[2][4];
#pragma unroll
            for (int h = 0; h < 2; h++)
                ldmatrix_x4(qa[h][0], qa[h][1], qa[h][2], qa[h][3],
                            sQ + (size_t)(warp * 16 + (lane & 15)) * STR + (2 * k2 + h) * 16 + (lane >> 4) * 8);
#pragma unroll
            for (int nt = 0; nt < KT / 8; nt++) {
                uint32_t b0, b1, b2, b3;
                ldmatrix_x4(b0, b1, b2, b3, sK + (size_t)(nt * 8 + (lane & 7)) * STR + k2 * 32 + (lane >> 3) * 8);
                mma16816<MT>(s[nt], qa[0][0], qa[0][1], qa[0][2], qa[0][3], b0, b1);
                mma16816<MT>(s[nt], qa[1][0], qa[1][1], qa[1][2], qa[1][3], b2, b3);
            }
        }
        // causal mask, online softmax (rows ra: s[][0..1], rb: s[][2..3])
        const int key0 = j * KT + 2 * t;
        float mx_a = -INFINITY, mx_b = -INFINITY;
#pragma unroll
        for (int nt = 0; nt < KT / 8; nt++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
                const int key = key0 + nt * 8 + e;
                s[nt][e] = key <= pos_a ? s[nt][e] * sc : -INFINITY;
                s[nt][2 + e] = key <= pos_b ? s[nt][2 + e] * sc : -INFINITY;
                mx_a = fmaxf(mx_a, s[nt][e]);
                mx_b = fmaxf(mx_b, s[nt][2 + e]);
            }
#pragma unroll
        for (int off = 1; off < 4; off <<= 1) {
            mx_a = fmaxf(mx_a, __shfl_xor_sync(0xffffffffu, mx_a, off));
            mx_b = fmaxf(mx_b, __shfl_xor_sync(0xffffffffu, mx_b, off));
        }
        const float mn_a = fmaxf(m_a, mx_a), mn_b = fmaxf(m_b, mx_b);
        const float mu_a = mn_a == -INFINITY ? 0.0f : mn_a, mu_b = mn_b == -INFINITY ? 0.0f : mn_b;
        const float al_a = exp2f(m_a - mu_a), al_b = exp2f(m_b - mu_b);
        m_a = mn_a, m_b = mn_b;
        float sum_a = 0.0f, sum_b = 0.0f;
#pragma unroll
        for (int nt = 0; nt < KT / 8; nt++) {
            s[nt][0] = exp2f(s[nt][0] - mu_a), s[nt][1] = exp2f(s[nt][1] - mu_a);
            s[nt][2] = exp2f(s[nt][2] - mu_b), s[nt][3] = exp2f(s[nt][3] - mu_b);
            sum_a += s[nt][0] + s[nt][1];
            sum_b += s[nt][2] + s[nt][3];
        }
        l_a = l_a * al_a + sum_a;
        l_b = l_b * al_b + sum_b;
#pragma unroll
        for (int i = 0; i < D / 8; i++)
            o[i][0] *= al_a, o[i][1] *= al_a, o[i][2] *= al_b, o[i][3] *= al_b;

        // O += P V, P = hi + lo
#pragma unroll
        for (int kk = 0; kk < KT / 16; kk++) {
            uint32_t ph[4], pl[4];
#pragma unroll
            for (int u = 0; u < 4; u++) {
                const float x0 = s[2 * kk + (u >> 1)][(u & 1) * 2] * PSCALE;
                const float x1 = s[2 * kk + (u >> 1)][(u & 1) * 2 + 1] * PSCALE;
                ph[u] = pack2<MT>(x0, x1);
                const float2 hv = unpack2<MT>(ph[u]);
                pl[u] = pack2<MT>(x0 - hv.x, x1 - hv.y);
            }
            // A fragment order: a0 (row g, keys 0-7 of the k-step), a1 (row g+8), a2 (row g,
            // keys 8-15), a3 (row g+8, keys 8-15): u = (n-tile half) * 2 + (row half)
            const uint32_t A0 = ph[0], A1 = ph[1], A2 = ph[2], A3 = ph[3];
            const uint32_t B0 = pl[0], B1 = pl[1], B2 = pl[2], B3 = pl[3];
#pragma unroll
            for (int d2 = 0; d2 < D / 16; d2++) {
                uint32_t r0, r1, r2, r3;
                ldmatrix_x4_trans(r0, r1, r2, r3,
                                  sV + (size_t)(kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * STR + d2 * 16 +
                                      (lane >> 4) * 8);
                mma16816<MT>(o[2 * d2], A0, A1, A2, A3, r0, r1);
                mma16816<MT>(o[2 * d2], B0, B1, B2, B3, r0, r1);
                mma16816<MT>(o[2 * d2 + 1], A0, A1, A2, A3, r2, r3);
                mma16816<MT>(o[2 * d2 + 1], B0, B1, B2, B3, r2, r3);
            }
        }
        __syncthreads(); // the tiles are rewritten next
    }

#pragma unroll
    for (int off = 1; off < 4; off <<= 1) {
        l_a += __shfl_xor_sync(0xffffffffu, l_a, off);
        l_b += __shfl_xor_sync(0xffffffffu, l_b, off);
    }
    const float fa = vfold / PSCALE / l_a, fb = vfold / PSCALE / l_b;
    if (pos_a >= 0) {
        float *out = a.out + ((size_t)(q_begin + toka) * a.num_q_heads + (size_t)(kvh * G + ra % G)) * D;
#pragma unroll
        for (int i = 0; i < D / 8; i++)
            *(float2 *)(out + i * 8 + 2 * t) = make_float2(o[i][0] * fa, o[i][1] * fa);
    }
    if (pos_b >= 0) {
        float *out = a.out + ((size_t)(q_begin + tokb) * a.num_q_heads + (size_t)(kvh * G + rb % G)) * D;
#pragma unroll
        for (int i = 0; i < D / 8; i++)
            *(float2 *)(out + i * 8 + 2 * t) = make_float2(o[i][2] * fb, o[i][3] * fb);
    }
}

template <int D, int KIND, int MT>
cudaError_t launch_prefill(const PrefillParams &P, int n_items, cudaStream_t stream) {
    constexpr size_t smem = PrefillShape<D, KIND>::SMEM;
    static bool configured = false;
    if (!configured) {
        const cudaError_t e =
            cudaFuncSetAttribute(prefill_mma_kernel<D, KIND, MT>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        if (e != cudaSuccess)
            return e;
        configured = true;
    }
    prefill_mma_kernel<D, KIND, MT><<<dim3((unsigned)n_items, (unsigned)P.a.num_kv_heads), 128, smem, stream>>>(P);
    return cudaGetLastError();
}

template <int KIND, int MT>
cudaError_t launch_prefill_d(const PrefillParams &P, int n_items, cudaStream_t stream) {
    switch (P.a.head_size) {
    case 64: return launch_prefill<64, KIND, MT>(P, n_items, stream);
    case 128: return launch_prefill<128, KIND, MT>(P, n_items, stream);
    case 256: return launch_prefill<256, KIND, MT>(P, n_items, stream);
    }
    return cudaErrorInvalidValue;
}

} // namespace

#endif // KVFP8_GPU_CUDA

cudaError_t prefill_mma(const AttnArgs &a, const int *items, int n_items, cudaStream_t stream) {
#if defined(KVFP8_GPU_CUDA)
    if (n_items <= 0)
        return cudaSuccess;
    const char *why;
    if (!attention_mma_ok(a, 1, &why))
        return cudaErrorInvalidValue;
    PrefillParams P;
    P.a = a;
    P.items = items;
    P.group = a.num_q_heads / a.num_kv_heads;
    P.tq = prefill_tile_tokens(P.group);
    const int kind = !a.storage.is_fp8 ? KV_16BIT : a.storage.fp8.format == KVFP8_E4M3FN ? KV_E4M3 : KV_E5M2;
    const int mt = a.model_dtype == KVFP8_DTYPE_F16 ? 1 : 0;
    switch (kind * 2 + mt) {
    case KV_E4M3 * 2 + 0: return launch_prefill_d<KV_E4M3, 0>(P, n_items, stream);
    case KV_E4M3 * 2 + 1: return launch_prefill_d<KV_E4M3, 1>(P, n_items, stream);
    case KV_E5M2 * 2 + 0: return launch_prefill_d<KV_E5M2, 0>(P, n_items, stream);
    case KV_E5M2 * 2 + 1: return launch_prefill_d<KV_E5M2, 1>(P, n_items, stream);
    case KV_16BIT * 2 + 0: return launch_prefill_d<KV_16BIT, 0>(P, n_items, stream);
    case KV_16BIT * 2 + 1: return launch_prefill_d<KV_16BIT, 1>(P, n_items, stream);
    }
    return cudaErrorInvalidValue;
#else
    (void)a, (void)items, (void)n_items, (void)stream;
    return cudaErrorInvalidValue;
#endif
}

} // namespace kvfp8_gpu
