// kvfp8 — paged attention: the tensor-core decode kernel (split-KV, GQA) and the
// portable fallback kernel that implements every case of the reference.
//
// decode_mma (CUDA, sm_80+; E4M3/E5M2 conversions in hardware on sm_89+):
//   one CTA (4 warps, or 8 in two bench variants) per (split of the context, KV head,
//   group of <= 8 query heads of that KV head, sequence).  Each KV byte of the split is
//   loaded once, by one thread, with 16-byte loads, and serves every query head of the
//   group.  Two formulations on mma.m16n8k16: S^T = K Q^T (16 tokens x 8 heads; K is
//   the A operand straight from registers: the head dimension is permuted so that each
//   thread's fragment is the 16-byte run it loaded, and Q is loaded in the same
//   permutation; P^T then moves between lanes with 8 shuffles per 16 tokens), or
//   S = Q K^T (the queries as A, the same K registers as B: its C fragments are the B
//   fragments of P^T, no shuffles; compute_tiles_qa).  Then O^T += V^T P^T (V^T from
//   registers, bytes transposed with PRMT).  Online softmax in float32 (exp2 with
//   log2(e) folded into the score scale); warps of a CTA combine through shared memory;
//   the splits of one (sequence, KV head) are combined by the last CTA to finish (a
//   counter per unit, reset by that CTA).  Each warp keeps the next step's loads in
//   flight while it computes the current one; the default and the variants the bench
//   sweeps are listed at launch_decode.
// attention_generic (CUDA and HIP): one CTA per (query token, query head), float32,
//   two passes per 128 keys; every read semantics, sliding window, soft cap, every
//   storage.  Slow on purpose-simple; the backend uses it for what the tensor-core
//   kernels do not cover, and HIP builds use it for everything.
#include <math.h>

#include <algorithm>

#include "kvfp8_dev.cuh"
#include "kvfp8_kernels.h"
#include "kvfp8_mma.cuh"

namespace kvfp8_gpu {

// ==== the portable kernel ==================================================================

namespace {

constexpr int kGenThreads = 128;
constexpr int kGenMaxDims = 4; // head_size <= 512

__device__ __forceinline__ float generic_kv(const AttnArgs &a, int is_value, int seq, int j, int kvh, int d,
                                            int first_new, int q_begin, bool fold) {
    const int D = a.head_size;
    if (a.read == KVFP8_READ_MIXED && j >= first_new) {
        const float *src = is_value ? a.new_value : a.new_key;
        const size_t t = (size_t)(q_begin + (j - first_new));
        return src[(t * (size_t)a.num_kv_heads + (size_t)kvh) * (size_t)D + (size_t)d];
    }
    const int block = a.block_table[(size_t)seq * a.max_blocks_per_seq + j / a.block_size];
    const size_t slot = (size_t)block * (size_t)a.block_size + (size_t)(j % a.block_size);
    const size_t at = (slot * (size_t)a.num_kv_heads + (size_t)kvh) * (size_t)D + (size_t)d;
    const uint8_t *cache = is_value ? a.value_cache : a.key_cache;
    if (a.storage.is_fp8) {
        const float dec = fp8_decode(a.storage.fp8.format, cache[at]);
        if (fold)
            return dec; // uniform: the exact decoded value, the scale folded outside
        const int si = a.per_head_scales ? kvh : 0;
        const float x = dec != dec ? dec : dec * a.scales[(is_value ? 256 : 0) + si];
        return round_to_model(a.model_dtype, x);
    }
    switch (a.storage.dtype) {
    case KVFP8_DTYPE_F16: return f16_to_f32(((const uint16_t *)cache)[at]);
    case KVFP8_DTYPE_BF16: return bf16_to_f32(((const uint16_t *)cache)[at]);
    case KVFP8_DTYPE_F32: break;
    }
    return ((const float *)cache)[at];
}

__device__ __forceinline__ float block_reduce(float v, float *red, bool is_max) {
    const int tid = threadIdx.x;
    red[tid] = v;
    __syncthreads();
    for (int s = kGenThreads / 2; s > 0; s >>= 1) {
        if (tid < s)
            red[tid] = is_max ? fmaxf(red[tid], red[tid + s]) : red[tid] + red[tid + s];
        __syncthreads();
    }
    const float r = red[0];
    __syncthreads();
    return r;
}

__global__ void __launch_bounds__(kGenThreads)
    attention_generic_kernel(AttnArgs a, const int *token_seq, const int *token_list) {
    extern __shared__ float gsm[];
    const int D = a.head_size;
    float *sq = gsm;             // [D]
    float *sp = sq + D;          // [kGenThreads]
    float *red = sp + kGenThreads;
    const int token = token_list[blockIdx.x], h = blockIdx.y, tid = threadIdx.x;
    const int seq = token_seq[token];
    const int q_begin = a.query_start_loc[seq], q_len = a.query_start_loc[seq + 1] - q_begin;
    const int len = a.seq_lens[seq];
    const int first_new = len - q_len;
    const int pos = first_new + (token - q_begin);
    const int first = a.sliding_window > 0 ? max(0, pos - a.sliding_window + 1) : 0;
    const int group = a.num_q_heads / a.num_kv_heads, kvh = h / group;
    const bool fold = a.read == KVFP8_READ_UNIFORM && a.storage.is_fp8;
    const int si = a.per_head_scales ? kvh : 0;
    const float kfold = fold ? a.scales[si] : 1.0f, vfold = fold ? a.scales[256 + si] : 1.0f;
    const float *q = a.query + ((size_t)token * a.num_q_heads + h) * (size_t)D;
    for (int d = tid; d < D; d += kGenThreads)
        sq[d] = q[d];
    __syncthreads();
    float m = -INFINITY, l = 0.0f, acc[kGenMaxDims];
#pragma unroll
    for (int i = 0; i < kGenMaxDims; i++)
        acc[i] = 0.0f;
    for (int j0 = first; j0 <= pos; j0 += kGenThreads) {
        const int j = j0 + tid;
        float s = -INFINITY;
        if (j <= pos) {
            float dot = 0.0f;
            for (int d = 0; d < D; d++)
                dot = fmaf(sq[d], generic_kv(a, 0, seq, j, kvh, d, first_new, q_begin, fold), dot);
            s = dot * kfold * a.softmax_scale;
            if (a.soft_cap > 0)
                s = a.soft_cap * tanhf(s / a.soft_cap);
        }
        const float cm = block_reduce(s, red, true);
        const float m_new = fmaxf(m, cm);
        const float alpha = m == -INFINITY ? 0.0f : expf(m - m_new);
        const float p = j <= pos ? expf(s - m_new) : 0.0f;
        sp[tid] = p;
        const float ps = block_reduce(p, red, false); // also orders sp[] for the loop below
        l = l * alpha + ps;
        const int cnt = min(kGenThreads, pos - j0 + 1);
#pragma unroll
        for (int i = 0; i < kGenMaxDims; i++) {
            const int d = tid + i * kGenThreads;
            if (d < D) {
                float o = acc[i] * alpha;
                for (int jj = 0; jj < cnt; jj++)
                    o = fmaf(sp[jj], generic_kv(a, 1, seq, j0 + jj, kvh, d, first_new, q_begin, fold), o);
                acc[i] = o;
            }
        }
        m = m_new;
        __syncthreads(); // sp[] is rewritten by the next round
    }
    float *out = a.out + ((size_t)token * a.num_q_heads + h) * (size_t)D;
#pragma unroll
    for (int i = 0; i < kGenMaxDims; i++) {
        const int d = tid + i * kGenThreads;
        if (d < D)
            out[d] = acc[i] / l * vfold;
    }
}

} // namespace

cudaError_t attention_generic(const AttnArgs &a, const int *token_seq, const int *token_list, int num_tokens,
                              cudaStream_t stream) {
    if (num_tokens <= 0)
        return cudaSuccess;
    if (a.head_size > kGenThreads * kGenMaxDims)
        return cudaErrorInvalidValue;
    const size_t smem = sizeof(float) * ((size_t)a.head_size + 2 * kGenThreads);
    attention_generic_kernel<<<dim3((unsigned)num_tokens, (unsigned)a.num_q_heads), kGenThreads, smem, stream>>>(
        a, token_seq, token_list);
    return cudaGetLastError();
}

// ==== the tensor-core decode kernel =========================================================

#if defined(KVFP8_GPU_CUDA)

namespace {

constexpr int kMaxSplits = 256;

struct DecodeParams {
    AttnArgs a;
    const int *seq_ids;
    int split_len, max_splits, ngroups, group;
    float *ws_o;  // [unit][max_splits][8][D]
    float *ws_ml; // [unit][max_splits][8][2]
    int *ws_cnt;  // [unit]
    bool pdl;     // launched as a programmatic dependent launch (launch_decode_kernel)
};

// The decode timeline (a diagnostic build only: nvcc -DKVFP8_DECODE_TRACE; bench_gpu
// --timeline prints it): thread 0 of each CTA stamps %globaltimer at the points of
// kDecodeTraceMarks.  Each stamp takes a value of the work before it as an input, so
// it cannot be issued before that work's data has arrived.
#if defined(KVFP8_DECODE_TRACE)
__device__ unsigned long long g_decode_trace[kDecodeTraceCtas][kDecodeTraceMarks];
__device__ __forceinline__ void trace_mark(int mark, uint32_t after) {
    if (threadIdx.x != 0)
        return;
    const unsigned cta = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    unsigned long long now;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now) : "r"(after) : "memory");
    if (cta < (unsigned)kDecodeTraceCtas)
        g_decode_trace[cta][mark] = now;
}
#define KVFP8_TRACE(mark, after) trace_mark(mark, (uint32_t)(after))
#else
#define KVFP8_TRACE(mark, after) ((void)0)
#endif

template <int D, int KIND>
struct DecodeShape {
    static constexpr int ES = KIND == KV_16BIT ? 2 : 1; // bytes per element
    static constexpr int L = D * ES / 64;               // 16-byte K loads per token per thread
    static constexpr int KW = D * ES / 16;              // K words per token per thread
    static constexpr int VW = D * ES / 32;              // V words per token per thread
    static constexpr int KS = D / 16;                   // k-steps of QK = m-tiles of PV
};

template <int D, int KIND>
struct Chunk {
    uint32_t k[2][DecodeShape<D, KIND>::KW];
    uint32_t v[4][DecodeShape<D, KIND>::VW];
};

__device__ __forceinline__ uint4 ldg16(const uint8_t *p) { return __ldg((const uint4 *)p); }
__device__ __forceinline__ uint2 ldg8(const uint8_t *p) { return __ldg((const uint2 *)p); }

// The sequence's last chunk: tokens past its end are zeros (their bytes are whatever
// the block holds).
template <int D, int KIND>
__device__ __forceinline__ void zero_past_end(Chunk<D, KIND> &c, int g, int t, int valid_tokens) {
    using S = DecodeShape<D, KIND>;
    if (valid_tokens < 16) {
#pragma unroll
        for (int i = 0; i < 2; i++)
            if (g + 8 * i >= valid_tokens)
#pragma unroll
                for (int w = 0; w < S::KW; w++)
                    c.k[i][w] = 0;
#pragma unroll
        for (int i = 0; i < 4; i++)
            if (2 * t + (i & 1) + (i >> 1) * 8 >= valid_tokens)
#pragma unroll
                for (int w = 0; w < S::VW; w++)
                    c.v[i][w] = 0;
    }
}

// One warp's 16-token chunk: lane (g, t) loads the K rows of tokens g and g + 8 (16
// bytes at t * 16 + 64 l) and the V bytes g * (VW * 4)... of tokens 2t, 2t + 1, 2t + 8,
// 2t + 9.  One 64-bit product per chunk; the lane offsets are 32-bit (a chunk spans
// 16 token rows, under 2 MB for every shape the kernels accept).
template <int D, int KIND>
__device__ __forceinline__ void load_chunk(Chunk<D, KIND> &c, const uint8_t *kbase, const uint8_t *vbase,
                                           uint32_t tok_stride, size_t slot0, int g, int t, int valid_tokens) {
    using S = DecodeShape<D, KIND>;
    const size_t at = slot0 * tok_stride;
    const uint8_t *kc = kbase + at, *vc = vbase + at;
#pragma unroll
    for (int i = 0; i < 2; i++) {
        const uint8_t *p = kc + ((uint32_t)(g + 8 * i) * tok_stride + (uint32_t)t * 16);
#pragma unroll
        for (int l = 0; l < S::L; l++) {
            const uint4 x = ldg16(p + l * 64);
            c.k[i][4 * l] = x.x, c.k[i][4 * l + 1] = x.y, c.k[i][4 * l + 2] = x.z, c.k[i][4 * l + 3] = x.w;
        }
    }
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const int T = 2 * t + (i & 1) + (i >> 1) * 8;
        const uint8_t *p = vc + ((uint32_t)T * tok_stride + (uint32_t)g * (S::VW * 4));
        if (S::VW >= 4) {
#pragma unroll
            for (int u = 0; u < S::VW / 4; u++) {
                const uint4 x = ldg16(p + 16 * u);
                c.v[i][4 * u] = x.x, c.v[i][4 * u + 1] = x.y, c.v[i][4 * u + 2] = x.z, c.v[i][4 * u + 3] = x.w;
            }
        } else {
            const uint2 x = ldg8(p);
            c.v[i][0] = x.x, c.v[i][1] = x.y;
        }
    }
    zero_past_end<D, KIND>(c, g, t, valid_tokens);
}

template <int D, int KIND, int MT>
struct WarpState {
    float o[D / 16][4];
    float m0, m1, l0, l1;
};

// K step kk of a chunk as MT pairs: lo0/hi0 from token g's word, lo1/hi1 from token
// g + 8's (the A fragment of S^T = K Q^T, or the B fragments of S = Q K^T).
template <int D, int KIND, int MT>
__device__ __forceinline__ void k_pairs(const Chunk<D, KIND> &c, int kk, float dsk, uint32_t &lo0, uint32_t &hi0,
                                        uint32_t &lo1, uint32_t &hi1) {
    if (KIND == KV_16BIT) {
        lo0 = c.k[0][2 * kk], hi0 = c.k[0][2 * kk + 1], lo1 = c.k[1][2 * kk], hi1 = c.k[1][2 * kk + 1];
    } else if (MT == 2) { // exact E4M3 values, scales folded
        e4m3x4_to_f16x2x2_exact(c.k[0][kk], lo0, hi0);
        e4m3x4_to_f16x2x2_exact(c.k[1][kk], lo1, hi1);
    } else {
        const uint32_t w0 = c.k[0][kk], w1 = c.k[1][kk];
        lo0 = fp8x2_to_mt<KIND, MT>(w0 & 0xFFFF, dsk), hi0 = fp8x2_to_mt<KIND, MT>(w0 >> 16, dsk);
        lo1 = fp8x2_to_mt<KIND, MT>(w1 & 0xFFFF, dsk), hi1 = fp8x2_to_mt<KIND, MT>(w1 >> 16, dsk);
    }
}

// O^T += V^T P^T for one chunk: m-tile i holds dims g * (D / 8) + 2i (rows g) and + 1
// (rows g + 8); V^T's fragments are the chunk's V bytes transposed with PRMT; P^T is
// given as hi + lo B fragments (tokens 2t, 2t + 1 in b0, 2t + 8, 2t + 9 in b1).
template <int D, int KIND, int MT>
__device__ __forceinline__ void pv_chunk(float (&o)[D / 16][4], const Chunk<D, KIND> &c, float dsv, uint32_t bh0,
                                         uint32_t bh1, uint32_t bl0, uint32_t bl1) {
    using S = DecodeShape<D, KIND>;
#pragma unroll
    for (int i = 0; i < S::KS; i++) {
        uint32_t a0, a1, a2, a3;
        if (KIND == KV_16BIT) {
            a0 = __byte_perm(c.v[0][i], c.v[1][i], 0x5410), a1 = __byte_perm(c.v[0][i], c.v[1][i], 0x7632);
            a2 = __byte_perm(c.v[2][i], c.v[3][i], 0x5410), a3 = __byte_perm(c.v[2][i], c.v[3][i], 0x7632);
        } else {
            const uint32_t sel2 = (i & 1) ? 0x7362u : 0x5140u;
            const uint32_t u01 = __byte_perm(c.v[0][i >> 1], c.v[1][i >> 1], sel2);
            const uint32_t u23 = __byte_perm(c.v[2][i >> 1], c.v[3][i >> 1], sel2);
            if (MT == 2) {
                e4m3x4_to_f16x2x2_exact(u01, a0, a1);
                e4m3x4_to_f16x2x2_exact(u23, a2, a3);
            } else {
                a0 = fp8x2_to_mt<KIND, MT>(u01 & 0xFFFF, dsv), a1 = fp8x2_to_mt<KIND, MT>(u01 >> 16, dsv);
                a2 = fp8x2_to_mt<KIND, MT>(u23 & 0xFFFF, dsv), a3 = fp8x2_to_mt<KIND, MT>(u23 >> 16, dsv);
            }
        }
        mma16816<MT>(o[i], a0, a1, a2, a3, bh0, bh1);
        mma16816<MT>(o[i], a0, a1, a2, a3, bl0, bl1);
    }
}

// P = hi + lo in MT (hi = round(P), lo = round(P - hi)): P.V at float32-level accuracy.
template <int MT>
__device__ __forceinline__ void split_p(float p0, float p1, uint32_t &hi, uint32_t &lo) {
    hi = pack2<MT>(p0, p1);
    const float2 h = unpack2<MT>(hi);
    lo = pack2<MT>(p0 - h.x, p1 - h.y);
}

// 2^x on the MUFU unit; inputs below -126 give 0 (probabilities that small are below
// float32 resolution of the sum they join), -inf gives 0.
__device__ __forceinline__ float ex2_ftz(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

// One online-softmax step over NT 16-token tiles (NT = 2, a bench variant: the
// step's fixed costs, the max and sum reductions, the rescale of O and their
// latency, are paid once per 32 tokens, and the tiles' MMA chains interleave).
template <int D, int KIND, int MT, int NT>
__device__ __forceinline__ void compute_tiles(WarpState<D, KIND, MT> &st, const Chunk<D, KIND> (&c)[NT],
                                              const uint32_t (&qf)[D / 16][2], const int (&valid_tokens)[NT],
                                              float sc0, float sc1, float dsk, float dsv, int g, int t) {
    using S = DecodeShape<D, KIND>;
    constexpr float PSCALE = MT != 0 ? 4096.0f : 1.0f; // keeps small f16 probabilities normal
    // two accumulators per tile (even and odd k-steps): shorter chains of dependent MMAs
    float s[NT][4], s_odd[NT][4];
#pragma unroll
    for (int n = 0; n < NT; n++)
#pragma unroll
        for (int r = 0; r < 4; r++)
            s[n][r] = 0.0f, s_odd[n][r] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < S::KS; kk++) {
#pragma unroll
        for (int n = 0; n < NT; n++) {
            uint32_t a0, a1, a2, a3;
            k_pairs<D, KIND, MT>(c[n], kk, dsk, a0, a2, a1, a3);
            mma16816<MT>((kk & 1) ? s_odd[n] : s[n], a0, a1, a2, a3, qf[kk][0], qf[kk][1]);
        }
    }
    // s[n][0]: token g of tile n, head 2t; [1]: token g, head 2t+1; [2], [3]: token g+8
    float x[NT][4];
    float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
    for (int n = 0; n < NT; n++) {
        const bool v0 = g < valid_tokens[n], v1 = g + 8 < valid_tokens[n];
        x[n][0] = v0 ? (s[n][0] + s_odd[n][0]) * sc0 : -INFINITY;
        x[n][1] = v0 ? (s[n][1] + s_odd[n][1]) * sc1 : -INFINITY;
        x[n][2] = v1 ? (s[n][2] + s_odd[n][2]) * sc0 : -INFINITY;
        x[n][3] = v1 ? (s[n][3] + s_odd[n][3]) * sc1 : -INFINITY;
        mx0 = fmaxf(mx0, fmaxf(x[n][0], x[n][2]));
        mx1 = fmaxf(mx1, fmaxf(x[n][1], x[n][3]));
    }
#pragma unroll
    for (int off = 4; off < 32; off <<= 1) {
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, off));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, off));
    }
    const float mn0 = fmaxf(st.m0, mx0), mn1 = fmaxf(st.m1, mx1); // finite: token 0 of a step is valid
    const float al0 = exp2f(st.m0 - mn0), al1 = exp2f(st.m1 - mn1);
    float p[NT][4];
    float ps0 = 0.0f, ps1 = 0.0f;
#pragma unroll
    for (int n = 0; n < NT; n++) {
        p[n][0] = exp2f(x[n][0] - mn0), p[n][1] = exp2f(x[n][1] - mn1);
        p[n][2] = exp2f(x[n][2] - mn0), p[n][3] = exp2f(x[n][3] - mn1);
        ps0 += p[n][0] + p[n][2], ps1 += p[n][1] + p[n][3];
    }
    st.l0 = st.l0 * al0 + ps0;
    st.l1 = st.l1 * al1 + ps1;
    st.m0 = mn0, st.m1 = mn1;
    // Once the running maxima settle, most steps leave them unchanged and the factors
    // are exactly 1: skipping the rescale then changes no bit of the result.
    if (__any_sync(0xffffffffu, al0 != 1.0f || al1 != 1.0f)) {
#pragma unroll
        for (int i = 0; i < S::KS; i++)
            st.o[i][0] *= al0, st.o[i][1] *= al1, st.o[i][2] *= al0, st.o[i][3] *= al1;
    }
    const int srcA = 8 * t + (g >> 1), srcB = srcA + 4;
    const uint32_t sel = (g & 1) ? 0x7632u : 0x5410u;
#pragma unroll
    for (int n = 0; n < NT; n++) {
        // P = hi + lo in MT; each lane then fetches the P^T fragment it needs
        uint32_t hi0, lo0, hi1, lo1;
        split_p<MT>(p[n][0] * PSCALE, p[n][1] * PSCALE, hi0, lo0);
        split_p<MT>(p[n][2] * PSCALE, p[n][3] * PSCALE, hi1, lo1);
        const uint32_t bh0 =
            __byte_perm(__shfl_sync(0xffffffffu, hi0, srcA), __shfl_sync(0xffffffffu, hi0, srcB), sel);
        const uint32_t bh1 =
            __byte_perm(__shfl_sync(0xffffffffu, hi1, srcA), __shfl_sync(0xffffffffu, hi1, srcB), sel);
        const uint32_t bl0 =
            __byte_perm(__shfl_sync(0xffffffffu, lo0, srcA), __shfl_sync(0xffffffffu, lo0, srcB), sel);
        const uint32_t bl1 =
            __byte_perm(__shfl_sync(0xffffffffu, lo1, srcA), __shfl_sync(0xffffffffu, lo1, srcB), sel);
        pv_chunk<D, KIND, MT>(st.o, c[n], dsv, bh0, bh1, bl0, bl1);
    }
}

// The queries-as-A formulation (QA variants): S = Q K^T on two m16n8k16 tiles per 16
// tokens (rows: the up to 8 query heads, the upper 8 rows zero; columns: tokens g and
// g + 8 of the chunk, from the same K loads).  Lane (g, t) then holds the scores of
// query head g for tokens 2t, 2t + 1 (first tile) and 2t + 8, 2t + 9 (second): exactly
// the B fragment P^T of O^T += V^T P^T, so P stays in its lanes (no shuffles), the
// maximum over tokens is two shuffles within the quad, and each lane keeps its own
// share of the sum until the end.  Twice the QK MMAs (the tensor pipe is idle enough).
template <int D>
struct WarpStateQA {
    float o[D / 16][4];
    float m; // query head g's running maximum (scaled scores, log2 domain)
    float l; // this lane's share of head g's sum of probabilities (times PSCALE)
};

template <int D, int KIND, int MT, int NT>
__device__ __forceinline__ void compute_tiles_qa(WarpStateQA<D> &st, const Chunk<D, KIND> (&c)[NT],
                                                 const uint32_t (&qf)[D / 16][2], const int (&valid_tokens)[NT],
                                                 float scg, float dsk, float dsv, int t) {
    using S = DecodeShape<D, KIND>;
    constexpr float LOG2_PSCALE = MT != 0 ? 12.0f : 0.0f; // PSCALE = 4096 keeps small f16 probabilities normal
    // one accumulator per 8-token half: the two halves are already two chains (the
    // registers go to more warps or chunks in flight)
    float s[NT][2][4];
#pragma unroll
    for (int n = 0; n < NT; n++)
#pragma unroll
        for (int h = 0; h < 2; h++)
#pragma unroll
            for (int r = 0; r < 4; r++)
                s[n][h][r] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < S::KS; kk++) {
#pragma unroll
        for (int n = 0; n < NT; n++) {
            uint32_t lo0, hi0, lo1, hi1;
            k_pairs<D, KIND, MT>(c[n], kk, dsk, lo0, hi0, lo1, hi1);
            mma16816<MT>(s[n][0], qf[kk][0], 0u, qf[kk][1], 0u, lo0, hi0);
            mma16816<MT>(s[n][1], qf[kk][0], 0u, qf[kk][1], 0u, lo1, hi1);
        }
    }
    // x[n][h][e]: head g, token 8h + 2t + e of tile n (raw dot products; scg > 0)
    float x[NT][2][2];
    float mx = -INFINITY;
#pragma unroll
    for (int n = 0; n < NT; n++)
#pragma unroll
        for (int h = 0; h < 2; h++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
                const bool ok = 8 * h + 2 * t + e < valid_tokens[n];
                x[n][h][e] = ok ? s[n][h][e] : -INFINITY;
                mx = fmaxf(mx, x[n][h][e]);
            }
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
    const float mn = fmaxf(st.m, mx * scg); // finite: token 0 of a step is valid
    const float al = ex2_ftz(st.m - mn);
    const float mb = LOG2_PSCALE - mn;
    float p[NT][2][2];
    float ps = 0.0f;
#pragma unroll
    for (int n = 0; n < NT; n++)
#pragma unroll
        for (int h = 0; h < 2; h++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
                p[n][h][e] = ex2_ftz(fmaf(x[n][h][e], scg, mb));
                ps += p[n][h][e];
            }
    st.l = st.l * al + ps;
    st.m = mn;
    // skipped when no maximum moved: the factors are then exactly 1 (no bit changes)
    if (__any_sync(0xffffffffu, al != 1.0f)) {
        // O^T's columns are heads 2t and 2t + 1: their factors live in lanes 8t, 8t + 4
        const float al0 = __shfl_sync(0xffffffffu, al, 8 * t), al1 = __shfl_sync(0xffffffffu, al, 8 * t + 4);
#pragma unroll
        for (int i = 0; i < S::KS; i++)
            st.o[i][0] *= al0, st.o[i][1] *= al1, st.o[i][2] *= al0, st.o[i][3] *= al1;
    }
#pragma unroll
    for (int n = 0; n < NT; n++) {
        uint32_t hi0, lo0, hi1, lo1;
        split_p<MT>(p[n][0][0], p[n][0][1], hi0, lo0);
        split_p<MT>(p[n][1][0], p[n][1][1], hi1, lo1);
        pv_chunk<D, KIND, MT>(st.o, c[n], dsv, hi0, hi1, lo0, lo1);
    }
}

// The CTA's shared memory: the warps' partial results and the split combine.
template <int D, int W>
struct DecodeSmem {
    float o[W][8][D];
    float m[W][8], l[W][8];
    float w[8][kMaxSplits];
    float L[8];
    int last;
};

// NBUF: steps in flight per warp; NT: 16-token chunks per step (one online-softmax
// update); MINB: CTAs per multiprocessor the register allocation must allow.
// W: warps per CTA (8: twice the warps per multiprocessor when the grid is small, D <=
// 128 for the static shared memory); QA: the queries-as-A formulation (compute_tiles_qa).
// (Prefetching later steps into L2 with cp.async.bulk.prefetch, 1-4 steps ahead, was
// measured 40% slower and removed; so was an L2 prefetch of each warp's first four
// chunks before the query setup, 1-10% slower with prefetch.global.L2 or
// cp.async.bulk.prefetch: the first step's data arrived later, not sooner.)
template <int D, int KIND, int MT, int NBUF, int MINB, int NT, int W, bool QA>
__global__ void __launch_bounds__(W * 32, MINB) decode_mma_kernel(const __grid_constant__ DecodeParams P) {
    using S = DecodeShape<D, KIND>;
    static_assert(W == 4 || (W == 8 && D <= 128), "8-warp CTAs: head size <= 128 (static shared memory)");
    constexpr float PSCALE = MT != 0 ? 4096.0f : 1.0f;
    __shared__ DecodeSmem<D, W> sm;
    auto &sm_o = sm.o;
    auto &sm_m = sm.m;
    auto &sm_l = sm.l;
    auto &s_w = sm.w;
    auto &s_L = sm.L;
    int &s_last = sm.last;

    const AttnArgs &a = P.a;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
    const int split = blockIdx.x;
    KVFP8_TRACE(0, split);
    // Under a programmatic dependent launch this CTA may be resident before the
    // previous kernel of the stream has finished: wait for it before any read (the
    // queries, the cache, the split counters may be its output), then let the next
    // kernel be scheduled, so that its start-up overlaps this grid's tail.
    if (P.pdl) {
        pdl_wait();
        pdl_allow_next();
    }
    KVFP8_TRACE(7, split);
    const int kvh = blockIdx.y / P.ngroups, grp = blockIdx.y % P.ngroups;
    const int seq = P.seq_ids[blockIdx.z];
    const int len = a.seq_lens[seq];
    const int nsplit = (len + P.split_len - 1) / P.split_len;
    if (split >= nsplit)
        return;
    const int token = a.query_start_loc[seq];
    const int h0 = kvh * P.group + grp * 8;
    const int nh = min(8, P.group - grp * 8);
    const int si = a.per_head_scales ? kvh : 0;
    const bool fold = a.read == KVFP8_READ_UNIFORM && KIND != KV_16BIT;
    const float ks = a.scales[si], vs = a.scales[256 + si];
    const float dsk = (KIND == KV_16BIT || fold) ? 1.0f : ks, dsv = (KIND == KV_16BIT || fold) ? 1.0f : vs;
    const float sc = a.softmax_scale * 1.44269504088896340736f * (fold ? ks : 1.0f);
    const float vfold = fold ? vs : 1.0f;
    float sc0 = sc, sc1 = sc, scg = sc; // scg: QA's scale of head g's scores

    const int tok_begin = split * P.split_len;
    const int tok_end = min(len, tok_begin + P.split_len);
    const int c_first = tok_begin / 16 + warp, c_end = (tok_end + 15) / 16;
    const int n_my = c_first < c_end ? (c_end - c_first + W - 1) / W : 0;
    const uint32_t tok_stride = (uint32_t)a.num_kv_heads * D * S::ES;
    const uint8_t *kbase = a.key_cache + (size_t)kvh * D * S::ES;
    const uint8_t *vbase = a.value_cache + (size_t)kvh * D * S::ES;
    const int *btab = a.block_table + (size_t)seq * a.max_blocks_per_seq;
    const int bs = a.block_size;

    // Block-table entries of the next 32 chunks, one per lane, fetched by shuffle: a
    // global load per chunk puts its latency in front of the chunk's loads.  Measured
    // (bench/results/gpu-kernels-*.md): a gain for 16-bit caches (BF16 decode 94% ->
    // 97.5% of copy), a 7% loss for FP8, which therefore reads the table directly (the
    // compiler hoists those loads ahead on its own).
    // (A plain division: replacing it by a shift chosen at run time, for power-of-two
    // block sizes, made model-dtype decode 15% slower, measured.)
    auto slot_direct = [&](int i) {
        const int tb = (c_first + i * W) * 16;
        return (size_t)btab[tb / bs] * bs + tb % bs;
    };
    int tab_window = -1, tab_entry = 0;
    auto slot_of = [&](int i) {
        if ((i >> 5) != tab_window) { // warp-uniform
            tab_window = i >> 5;
            const int il = (tab_window << 5) + lane;
            tab_entry = il < n_my ? btab[(c_first + il * W) * 16 / bs] : 0;
        }
        const int block = __shfl_sync(0xffffffffu, tab_entry, i & 31);
        const int tb = (c_first + i * W) * 16;
        return (size_t)block * bs + tb % bs;
    };
    auto slot_reg = [&](int i) { return KIND == KV_16BIT ? slot_of(i) : slot_direct(i); };
    // NBUF steps of NT chunks in flight in registers (NT = 2: 32-token steps, both
    // chunks' loads issued together, 8 KB per warp as one 16-bit chunk).
    Chunk<D, KIND> buf[NBUF][NT];
    int vbuf[NBUF][NT];
    const int n_steps = (n_my + NT - 1) / NT;
    auto load_step = [&](int step, Chunk<D, KIND>(&c)[NT], int(&v)[NT]) {
#pragma unroll
        for (int k = 0; k < NT; k++) {
            const int i = NT * step + k;
            if (i < n_my) {
                v[k] = len - (c_first + i * W) * 16;
                load_chunk<D, KIND>(c[k], kbase, vbase, tok_stride, slot_reg(i), g, t, v[k]);
            } else {
                v[k] = 0;
                zero_past_end<D, KIND>(c[k], g, t, 0); // all zeros, all masked
            }
        }
    };
    // Q^T fragments, in the permuted head dimension of the K loads
    uint32_t qf[S::KS][2];
    {
        const bool qvalid = g < nh;
        const float *qrow = a.query + ((size_t)token * a.num_q_heads + (size_t)(h0 + (qvalid ? g : 0))) * D;
        constexpr int E = 16 / S::ES;
        float4 qv[S::KS];
        float qmax = 0.0f;
#pragma unroll
        for (int kk = 0; kk < S::KS; kk++) {
            const int e = 4 * kk, dim = (e / E) * 4 * E + t * E + e % E;
            qv[kk] = qvalid ? *(const float4 *)(qrow + dim) : make_float4(0.f, 0.f, 0.f, 0.f);
            qmax = fmaxf(qmax, fmaxf(fmaxf(fabsf(qv[kk].x), fabsf(qv[kk].y)), fmaxf(fabsf(qv[kk].z), fabsf(qv[kk].w))));
        }
        float qs = 1.0f;
        if (MT == 2) {
            // the row's power-of-two scale (queries_f16_rows): its four lanes agree
            qmax = fmaxf(qmax, __shfl_xor_sync(0xffffffffu, qmax, 1));
            qmax = fmaxf(qmax, __shfl_xor_sync(0xffffffffu, qmax, 2));
            const int ex = (int)(__float_as_uint(qmax) >> 23) & 0xFF;
            const int sh = max(-126, min(126, ex ? 141 - ex : 0));
            qs = __uint_as_float((uint32_t)(sh + 127) << 23);
            const float inv = __uint_as_float((uint32_t)(127 - sh) << 23);
            // scores of heads 2t and 2t+1 (rows of lanes 8t and 8t+4) are scaled back
            sc0 = sc * __shfl_sync(0xffffffffu, inv, 8 * t);
            sc1 = sc * __shfl_sync(0xffffffffu, inv, 8 * t + 4);
            scg = sc * inv;
        }
#pragma unroll
        for (int kk = 0; kk < S::KS; kk++) {
            const float4 v = qv[kk];
            qf[kk][0] = pack2<MT>(v.x * qs, v.y * qs), qf[kk][1] = pack2<MT>(v.z * qs, v.w * qs);
        }
    }
    KVFP8_TRACE(1, qf[S::KS - 1][1]);

    // the first loads (NBUF = 1 then loads the next step after each compute); issuing
    // them before the query setup above made model-dtype decode 11% slower, measured
#pragma unroll
    for (int b = 0; b < (NBUF > 1 ? NBUF - 1 : 1); b++)
        if (b < n_steps)
            load_step(b, buf[b], vbuf[b]);
    WarpState<D, KIND, MT> st;
#pragma unroll
    for (int i = 0; i < S::KS; i++)
        st.o[i][0] = st.o[i][1] = st.o[i][2] = st.o[i][3] = 0.0f;
    st.m0 = st.m1 = -INFINITY;
    st.l0 = st.l1 = 0.0f;
    WarpStateQA<D> sq; // the QA variants' state (the other one is dead code there, and this one here)
#pragma unroll
    for (int i = 0; i < S::KS; i++)
        sq.o[i][0] = sq.o[i][1] = sq.o[i][2] = sq.o[i][3] = 0.0f;
    sq.m = -INFINITY;
    sq.l = 0.0f;

    for (int it = 0; it < n_steps; it += NBUF) {
#pragma unroll
        for (int b = 0; b < NBUF; b++) {
            const int step = it + b;
            if (step < n_steps) {
                if (NBUF > 1 && step + NBUF - 1 < n_steps)
                    load_step(step + NBUF - 1, buf[(b + NBUF - 1) % NBUF], vbuf[(b + NBUF - 1) % NBUF]);
                if constexpr (QA)
                    compute_tiles_qa<D, KIND, MT, NT>(sq, buf[b], qf, vbuf[b], scg, dsk, dsv, t);
                else
                    compute_tiles<D, KIND, MT, NT>(st, buf[b], qf, vbuf[b], sc0, sc1, dsk, dsv, g, t);
                if (NBUF == 1 && step + 1 < n_steps)
                    load_step(step + 1, buf[0], vbuf[0]);
                if (step == 0)
                    KVFP8_TRACE(2, __float_as_uint(QA ? sq.m : st.m0));
            }
        }
    }
    KVFP8_TRACE(3, __float_as_uint(QA ? sq.o[0][0] : st.o[0][0]));

    // per-warp results -> shared memory (both formulations leave O^T in the same
    // fragments: dims g * (D / 8) + 2i and + 1, heads 2t and 2t + 1)
    if constexpr (QA) {
        sq.l += __shfl_xor_sync(0xffffffffu, sq.l, 1);
        sq.l += __shfl_xor_sync(0xffffffffu, sq.l, 2);
#pragma unroll
        for (int i = 0; i < S::KS; i++) {
            const int dim = g * (D / 8) + 2 * i;
            *(float2 *)&sm_o[warp][2 * t][dim] = make_float2(sq.o[i][0], sq.o[i][2]);
            *(float2 *)&sm_o[warp][2 * t + 1][dim] = make_float2(sq.o[i][1], sq.o[i][3]);
        }
        if (t == 0) // the sum carries PSCALE, like O; the combine below expects it without
            sm_m[warp][g] = sq.m, sm_l[warp][g] = sq.l * (1.0f / PSCALE);
    } else {
#pragma unroll
        for (int off = 4; off < 32; off <<= 1) {
            st.l0 += __shfl_xor_sync(0xffffffffu, st.l0, off);
            st.l1 += __shfl_xor_sync(0xffffffffu, st.l1, off);
        }
#pragma unroll
        for (int i = 0; i < S::KS; i++) {
            const int dim = g * (D / 8) + 2 * i;
            *(float2 *)&sm_o[warp][2 * t][dim] = make_float2(st.o[i][0], st.o[i][2]);
            *(float2 *)&sm_o[warp][2 * t + 1][dim] = make_float2(st.o[i][1], st.o[i][3]);
        }
        if (g == 0) {
            sm_m[warp][2 * t] = st.m0, sm_m[warp][2 * t + 1] = st.m1;
            sm_l[warp][2 * t] = st.l0, sm_l[warp][2 * t + 1] = st.l1;
        }
    }
    __syncthreads();
    KVFP8_TRACE(4, 0);

    const int unit = (blockIdx.z * a.num_kv_heads + kvh) * P.ngroups + grp;
    for (int idx = tid; idx < nh * D; idx += W * 32) {
        const int n = idx / D, d = idx % D;
        float M = -INFINITY;
#pragma unroll
        for (int w = 0; w < W; w++)
            M = fmaxf(M, sm_m[w][n]);
        float O = 0.0f, Lsum = 0.0f;
#pragma unroll
        for (int w = 0; w < W; w++) {
            const float f = sm_m[w][n] == -INFINITY ? 0.0f : exp2f(sm_m[w][n] - M);
            O += f * sm_o[w][n][d];
            Lsum += f * sm_l[w][n];
        }
        if (nsplit == 1) {
            a.out[((size_t)token * a.num_q_heads + (size_t)(h0 + n)) * D + d] = O / Lsum * (vfold / PSCALE);
        } else {
            const size_t at = ((size_t)unit * P.max_splits + split) * 8 + n;
            P.ws_o[at * D + d] = O;
            if (d == 0)
                P.ws_ml[2 * at] = M, P.ws_ml[2 * at + 1] = Lsum;
        }
    }
    if (nsplit == 1) {
        KVFP8_TRACE(5, 0);
        return;
    }

    // split-KV: the last CTA of this unit combines every split
    __threadfence();
    __syncthreads();
    if (tid == 0)
        s_last = atomicAdd(&P.ws_cnt[unit], 1) == nsplit - 1;
    __syncthreads();
    KVFP8_TRACE(5, s_last);
    if (!s_last)
        return;
    __threadfence();
    // Every load of a phase is issued before the first is used (one L2 round trip per
    // phase instead of one per split): this CTA runs after all the others, so its
    // latency adds to the kernel's.
    const size_t base = (size_t)unit * P.max_splits;
    static_assert(kMaxSplits <= 8 * 32, "the (M, L) pairs: 8 per lane");
    for (int n = warp; n < nh; n += W) {
        float Mv[8], Lv[8];
        float M = -INFINITY;
#pragma unroll
        for (int k = 0; k < 8; k++) {
            const int sp = lane + 32 * k;
            const float2 ml = sp < nsplit ? __ldcg((const float2 *)&P.ws_ml[2 * ((base + sp) * 8 + n)])
                                          : make_float2(-INFINITY, 0.0f);
            Mv[k] = ml.x, Lv[k] = ml.y;
            M = fmaxf(M, ml.x);
        }
#pragma unroll
        for (int off = 16; off > 0; off >>= 1)
            M = fmaxf(M, __shfl_xor_sync(0xffffffffu, M, off));
        float Lsum = 0.0f;
#pragma unroll
        for (int k = 0; k < 8; k++) {
            const int sp = lane + 32 * k;
            if (sp < nsplit) {
                const float f = exp2f(Mv[k] - M);
                s_w[n][sp] = f;
                Lsum += f * Lv[k];
            }
        }
#pragma unroll
        for (int off = 16; off > 0; off >>= 1)
            Lsum += __shfl_xor_sync(0xffffffffu, Lsum, off);
        if (lane == 0)
            s_L[n] = Lsum;
    }
    __syncthreads();
    // float4 per thread per split; sixteen splits in flight
    for (int idx = tid; idx < nh * D / 4; idx += W * 32) {
        const int n = idx / (D / 4), d4 = idx % (D / 4);
        float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
        for (int sp = 0; sp < nsplit; sp += 16) {
            float4 x[16];
#pragma unroll
            for (int u = 0; u < 16; u++)
                x[u] = sp + u < nsplit ? __ldcg((const float4 *)&P.ws_o[((base + sp + u) * 8 + n) * D] + d4)
                                       : make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
            for (int u = 0; u < 16; u++) {
                const float f = sp + u < nsplit ? s_w[n][sp + u] : 0.0f;
                acc.x += f * x[u].x, acc.y += f * x[u].y, acc.z += f * x[u].z, acc.w += f * x[u].w;
            }
        }
        const float r = vfold / PSCALE / s_L[n];
        *((float4 *)&a.out[((size_t)token * a.num_q_heads + (size_t)(h0 + n)) * D] + d4) =
            make_float4(acc.x * r, acc.y * r, acc.z * r, acc.w * r);
    }
    if (tid == 0)
        P.ws_cnt[unit] = 0; // ready for the next launch
    __syncthreads();
    KVFP8_TRACE(6, 0);
}

// Whether the last decode launch of this thread was a programmatic dependent launch
// (decode_last_launch_pdl, for gpu/test_gpu).
thread_local bool g_last_launch_pdl = false;

// An attribute of the current device, cached per device; `fallback` when unknown.
template <cudaDeviceAttr ATTR>
int device_attribute(int fallback) {
    static int cached[64];
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64)
        return fallback;
    if (!cached[dev] && cudaDeviceGetAttribute(&cached[dev], ATTR, dev) != cudaSuccess)
        return fallback;
    return cached[dev];
}
int multiprocessors() { return device_attribute<cudaDevAttrMultiProcessorCount>(132); }
// programmatic dependent launch needs compute capability 9 or later
int compute_major() { return device_attribute<cudaDevAttrComputeCapabilityMajor>(0); }

template <int D, int KIND, int MT, int NBUF, int MINB, int NT = 1, int W = 4, bool QA = false>
cudaError_t launch_decode_kernel(const DecodeParams &P, dim3 grid, cudaStream_t stream) {
    // Programmatic dependent launch only when the grid is exactly one full wave (every
    // CTA slot of the machine taken, none waiting): CTAs launched early take whatever
    // slots are free while the previous kernel runs, which undoes the even,
    // breadth-first placement of a grid smaller than the machine, and unbalances the
    // first wave of a larger one.  Measured on the H200 (bench/results/gpu-kernels-
    // *.md): with it, FP8 model-dtype at 264 CTAs on 3 slots per multiprocessor 15-23%
    // slower, at 1024 CTAs 2-3% slower; one full wave (1 x 32768, 264 CTAs on 2 slots)
    // 2-3% faster.
    auto kernel = decode_mma_kernel<D, KIND, MT, NBUF, MINB, NT, W, QA>;
    static int occupancy[64];
    int dev = 0;
    DecodeParams Q = P;
    Q.pdl = P.pdl && cudaGetDevice(&dev) == cudaSuccess && dev >= 0 && dev < 64;
    if (Q.pdl && !occupancy[dev] &&
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occupancy[dev], kernel, W * 32, 0) != cudaSuccess)
        return cudaGetLastError();
    Q.pdl = Q.pdl && (long long)grid.x * grid.y * grid.z == (long long)occupancy[dev] * multiprocessors();
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = dim3(W * 32);
    cfg.stream = stream;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = attr;
    cfg.numAttrs = Q.pdl ? 1 : 0;
    g_last_launch_pdl = Q.pdl;
    return cudaLaunchKernelEx(&cfg, kernel, Q);
}

// The pipeline variants of E4M3 caches at head size 128 (bf16 models and `uniform`
// reads), by decode_mma's nbuf; 0 is the default.  The bench sweeps them at its shapes
// and gpu/test_gpu checks each against the generic kernel.
const char *const kDecodeVariantNames[] = {
    nullptr,
    nullptr,
    "S^T=KQ^T, 1 chunk ahead, 2 CTAs/SM",                 // 2
    "S^T=KQ^T, 32-token steps, 1 deep",                   // 3
    "S^T=KQ^T, 32-token steps, 2 deep",                   // 4
    "S=QK^T, 1 chunk ahead, 3 CTAs/SM",                   // 5
    "S=QK^T, 32-token steps, 2 deep",                     // 6
    "S^T=KQ^T, 64-token steps, 1 deep",                   // 7
    "S=QK^T, 64-token steps, 1 deep",                     // 8
    "S=QK^T, 48-token steps, 1 deep",                     // 9
    "S^T=KQ^T, 48-token steps, 1 deep",                   // 10
    "S=QK^T, 32-token steps, 1 deep, 8 warps x 2 CTAs",   // 11
    "S^T=KQ^T, 32-token steps, 1 deep, 8 warps x 2 CTAs", // 12
    "S=QK^T, 32-token steps, 1 deep",                     // 13
};
constexpr int kDecodeVariants = (int)(sizeof kDecodeVariantNames / sizeof kDecodeVariantNames[0]);

// The `uniform` default for e4m3fn at head size 128, measured on the H200
// (bench/results/gpu-kernels-*.md): when the grid fits one wave at 2 CTAs per
// multiprocessor, queries as A with 32-token steps 2 deep (v6: up to 16 KB of loads in
// flight per warp; 255 registers); otherwise 32-token steps 1 deep at 3 CTAs per
// multiprocessor (v3).  (Under model-dtype reads the per-element scaling makes both
// slower than that path's default: 2643 vs 3037 GB/s at 32 x 4096.)
int uniform_default_variant(long long ctas, int sms) { return ctas <= 2LL * sms ? 6 : 3; }

// The pipeline of each case, as measured on the H200 (bench/results/gpu-kernels-*.md):
// the next step's loads in registers while the current one is computed.  Rings of
// cp.async stages in shared memory (2-6 stages, 16- or 32-token steps, whole-line
// copies) were measured 10-15% slower at every shape and were removed (their code: git
// history of this file, commit 629e53f).

template <int D, int KIND, int MT>
cudaError_t launch_decode(const DecodeParams &P, dim3 grid, cudaStream_t stream, int nbuf) {
    if constexpr (KIND == KV_16BIT) {
        if constexpr (D == 128 && MT == 0) {
            if (nbuf == 2) // 2 chunks deep
                return launch_decode_kernel<D, KIND, MT, 2, 1>(P, grid, stream);
        }
        constexpr int NBUF = D * 2 <= 128 ? 2 : 1; // chunks in flight per warp
        return launch_decode_kernel<D, KIND, MT, NBUF, 1>(P, grid, stream);
    } else {
        if constexpr (D == 128 && MT != 1 && KIND == KV_E4M3) {
            if (MT == 2 && nbuf == 0)
                nbuf = uniform_default_variant((long long)grid.x * grid.y * grid.z, multiprocessors());
            switch (nbuf) {
            case 2: return launch_decode_kernel<D, KIND, MT, 2, 1>(P, grid, stream);
            case 3: return launch_decode_kernel<D, KIND, MT, 1, 3, 2>(P, grid, stream);
            case 4: return launch_decode_kernel<D, KIND, MT, 2, 2, 2>(P, grid, stream);
            case 5: return launch_decode_kernel<D, KIND, MT, 2, 3, 1, 4, true>(P, grid, stream);
            case 6: return launch_decode_kernel<D, KIND, MT, 2, 2, 2, 4, true>(P, grid, stream);
            case 7: return launch_decode_kernel<D, KIND, MT, 1, 2, 4>(P, grid, stream);
            case 8: return launch_decode_kernel<D, KIND, MT, 1, 2, 4, 4, true>(P, grid, stream);
            case 9: return launch_decode_kernel<D, KIND, MT, 1, 2, 3, 4, true>(P, grid, stream);
            case 10: return launch_decode_kernel<D, KIND, MT, 1, 2, 3>(P, grid, stream);
            case 11: return launch_decode_kernel<D, KIND, MT, 1, 2, 2, 8, true>(P, grid, stream);
            case 12: return launch_decode_kernel<D, KIND, MT, 1, 2, 2, 8, false>(P, grid, stream);
            case 13: return launch_decode_kernel<D, KIND, MT, 1, 3, 2, 4, true>(P, grid, stream);
            }
        }
        // FP8 bytes per token: half of the 16-bit case, so two chunks fit the registers
        constexpr int NBUF = D <= 128 ? 2 : 1;
        constexpr int MINB = D <= 128 ? 3 : 1;
        return launch_decode_kernel<D, KIND, MT, NBUF, MINB>(P, grid, stream);
    }
}

template <int KIND, int MT>
cudaError_t launch_decode_d(const DecodeParams &P, dim3 grid, cudaStream_t stream, int nbuf) {
    switch (P.a.head_size) {
    case 64: return launch_decode<64, KIND, MT>(P, grid, stream, nbuf);
    case 128: return launch_decode<128, KIND, MT>(P, grid, stream, nbuf);
    case 256: return launch_decode<256, KIND, MT>(P, grid, stream, nbuf);
    }
    return cudaErrorInvalidValue;
}

int kv_kind(const AttnArgs &a) {
    if (!a.storage.is_fp8)
        return KV_16BIT;
    return a.storage.fp8.format == KVFP8_E4M3FN ? KV_E4M3 : KV_E5M2;
}

} // namespace

#endif // KVFP8_GPU_CUDA

bool attention_mma_ok(const AttnArgs &a, int prefill, const char **why) {
    const char *w = nullptr;
#if !defined(KVFP8_GPU_CUDA)
    w = "the tensor-core kernels are CUDA-only";
#endif
    const int group = a.num_kv_heads > 0 ? a.num_q_heads / a.num_kv_heads : 0;
    if (!w && a.model_dtype != KVFP8_DTYPE_BF16 && a.model_dtype != KVFP8_DTYPE_F16)
        w = "model dtype is not bf16 or f16";
    else if (!w && a.read != KVFP8_READ_MODEL_DTYPE && a.read != KVFP8_READ_UNIFORM)
        w = "read semantics other than model-dtype or uniform";
    else if (!w && (a.sliding_window > 0 || a.soft_cap > 0))
        w = "sliding window or soft cap";
    else if (!w && a.head_size != 64 && a.head_size != 128 && a.head_size != 256)
        w = "head size not 64, 128 or 256";
    else if (!w && (a.block_size <= 0 || a.block_size % 16))
        w = "block size not a multiple of 16";
    else if (!w && a.storage.is_fp8 && a.storage.fp8.format != KVFP8_E4M3FN && a.storage.fp8.format != KVFP8_E5M2)
        w = "FP8 format other than e4m3fn or e5m2";
    else if (!w && !a.storage.is_fp8 && a.storage.dtype != a.model_dtype)
        w = "16-bit cache of another dtype than the model's";
    else if (!w && prefill && (group <= 0 || 64 % group))
        w = "query heads per KV head do not divide 64";
    if (why)
        *why = w;
    return w == nullptr;
}

int decode_trace_read(unsigned long long (*marks)[kDecodeTraceMarks]) {
#if defined(KVFP8_GPU_CUDA) && defined(KVFP8_DECODE_TRACE)
    if (!marks)
        return kDecodeTraceCtas; // only the question whether this build traces
    if (cudaMemcpyFromSymbol(marks, g_decode_trace, sizeof g_decode_trace) != cudaSuccess)
        return -1;
    return kDecodeTraceCtas;
#else
    (void)marks;
    return 0;
#endif
}

bool decode_last_launch_pdl() {
#if defined(KVFP8_GPU_CUDA)
    return g_last_launch_pdl;
#else
    return false;
#endif
}

int decode_default_variant(const AttnArgs &a, int n_decode, int max_len, int split_len) {
#if defined(KVFP8_GPU_CUDA)
    if (!attention_mma_ok(a, 0, nullptr) || split_len <= 0 || a.head_size != 128 || kv_kind(a) != KV_E4M3 ||
        a.read != KVFP8_READ_UNIFORM || !a.q_f16_rows)
        return 0;
    const long long ctas = (long long)((max_len + split_len - 1) / split_len) * a.num_kv_heads *
                           ((a.num_q_heads / a.num_kv_heads + 7) / 8) * n_decode;
    return uniform_default_variant(ctas, multiprocessors());
#else
    (void)a, (void)n_decode, (void)max_len, (void)split_len;
    return 0;
#endif
}

const char *decode_variant_name(int nbuf) {
#if defined(KVFP8_GPU_CUDA)
    return nbuf > 0 && nbuf < kDecodeVariants ? kDecodeVariantNames[nbuf] : nullptr;
#else
    (void)nbuf;
    return nullptr;
#endif
}

size_t decode_workspace_bytes(int n_decode, int num_kv_heads, int group, int head_size, int max_splits) {
    const size_t units = (size_t)n_decode * (size_t)num_kv_heads * (size_t)((group + 7) / 8);
    return units * (size_t)max_splits * 8 * ((size_t)head_size + 2) * sizeof(float) + units * sizeof(int) + 256;
}

int decode_default_split(int n_decode, int max_len, int num_kv_heads, int group, int num_sms) {
    // Measured on the H200 (bench/results/gpu-kernels-*.md): every split costs (its
    // CTA reloads the queries, writes a partial result, and the last CTA combines
    // them), and with 1.5 CTAs per multiprocessor or more the machine is already
    // busy.  So: no split when the (sequence, KV head, head group) units alone give
    // that many CTAs; otherwise at most 2 CTAs per multiprocessor in all, one wave of
    // the kernels that hold 2 (a second, partial wave cost 25-30%: 8 x 8192 BF16 at 5
    // splits, 320 CTAs on 132 multiprocessors).
    const int units = n_decode * num_kv_heads * ((group + 7) / 8);
    int best = 1;
    if (2 * units < 3 * num_sms)
        best = std::max(1, 2 * num_sms / units);
    const int max_by_len = (max_len + 255) / 256; // at least 256 tokens per split
    best = std::max(1, std::min(std::min(best, max_by_len), 256));
    int split_len = (max_len + best - 1) / best;
    split_len = (split_len + 15) / 16 * 16;
    if (split_len < 16)
        split_len = 16;
    return split_len;
}

cudaError_t decode_mma(const AttnArgs &a, const int *seq_ids, int n_decode, int max_len, int split_len,
                       void *workspace, cudaStream_t stream, int nbuf, unsigned flags) {
#if defined(KVFP8_GPU_CUDA)
    if (n_decode <= 0)
        return cudaSuccess;
    const char *why;
    if (!attention_mma_ok(a, 0, &why) || split_len <= 0 || split_len % 16)
        return cudaErrorInvalidValue;
    const int group = a.num_q_heads / a.num_kv_heads;
    DecodeParams P;
    P.a = a;
    P.seq_ids = seq_ids;
    P.split_len = split_len;
    P.max_splits = (max_len + split_len - 1) / split_len;
    if (P.max_splits > kMaxSplits)
        return cudaErrorInvalidValue;
    P.ngroups = (group + 7) / 8;
    P.group = group;
    P.pdl = (flags & KVFP8_DECODE_NO_PDL) == 0 && compute_major() >= 9;
    const size_t units = (size_t)n_decode * (size_t)a.num_kv_heads * (size_t)P.ngroups;
    P.ws_o = (float *)workspace;
    P.ws_ml = P.ws_o + units * (size_t)P.max_splits * 8 * (size_t)a.head_size;
    P.ws_cnt = (int *)(P.ws_ml + units * (size_t)P.max_splits * 8 * 2);
    const dim3 grid((unsigned)P.max_splits, (unsigned)(a.num_kv_heads * P.ngroups), (unsigned)n_decode);
    const int mt = a.model_dtype == KVFP8_DTYPE_F16 ? 1 : 0;
    if (kv_kind(a) == KV_E4M3 && a.read == KVFP8_READ_UNIFORM && a.q_f16_rows)
        return launch_decode_d<KV_E4M3, 2>(P, grid, stream, nbuf);
    switch (kv_kind(a) * 2 + mt) {
    case KV_E4M3 * 2 + 0: return launch_decode_d<KV_E4M3, 0>(P, grid, stream, nbuf);
    case KV_E4M3 * 2 + 1: return launch_decode_d<KV_E4M3, 1>(P, grid, stream, nbuf);
    case KV_E5M2 * 2 + 0: return launch_decode_d<KV_E5M2, 0>(P, grid, stream, nbuf);
    case KV_E5M2 * 2 + 1: return launch_decode_d<KV_E5M2, 1>(P, grid, stream, nbuf);
    case KV_16BIT * 2 + 0: return launch_decode_d<KV_16BIT, 0>(P, grid, stream, nbuf);
    case KV_16BIT * 2 + 1: return launch_decode_d<KV_16BIT, 1>(P, grid, stream, nbuf);
    }
    return cudaErrorInvalidValue;
#else
    (void)a, (void)seq_ids, (void)n_decode, (void)max_len, (void)split_len, (void)workspace, (void)stream, (void)nbuf,
        (void)flags;
    return cudaErrorInvalidValue;
#endif
}

} // namespace kvfp8_gpu
