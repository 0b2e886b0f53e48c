// kvfp8 — the KV-cache kernels' host interface: the cache write, paged decode
// attention (split-KV, GQA, tensor cores), chunked prefill over a cached prefix
// (tensor cores, each K/V tile dequantized once into shared memory), a portable
// fallback attention kernel, and buffer encode/decode.  Used by the `cuda` backend
// (gpu/backend_cuda.cu), the correctness harness (gpu/test_gpu.cu) and the bench
// (gpu/bench_gpu.cu).  docs/gpu.md says what each kernel does and where it runs.
//
// Every pointer in these structs is a DEVICE pointer; the launchers only enqueue
// work on `stream` and return the launch's error.  The semantics are the
// reference's (include/kvfp8/kv_cache.h, attention.h).
#ifndef KVFP8_KERNELS_H
#define KVFP8_KERNELS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kvfp8_gpu_compat.h"
#include "kvfp8/attention.h"
#include "kvfp8/fp8.h"
#include "kvfp8/kv_cache.h"

namespace kvfp8_gpu {

// ---- FP8 buffers ---------------------------------------------------------------------

// out[i] = kvfp8_fp8_encode_scaled_ref(r, src, in[i], scale) for any rules table.
cudaError_t encode_buffer(const kvfp8_fp8_rules &r, kvfp8_source src, const void *in, uint8_t *out, size_t n,
                          float scale, cudaStream_t stream);
// out[i] = kvfp8_fp8_dequant(f, in[i], scale).
cudaError_t decode_buffer(kvfp8_format f, const uint8_t *in, float *out, size_t n, float scale,
                          cudaStream_t stream);

// ---- cache write (vLLM's reshape_and_cache_flash) ---------------------------------------

struct CacheWriteArgs {
    const void *key, *value;      // [num_tokens][num_heads][head_size] of `src`
    const int64_t *slot_mapping;  // [num_tokens]; < 0: padding.  Validated by the caller.
    int64_t num_tokens;
    uint8_t *key_cache, *value_cache;
    int num_heads, head_size;
    kvfp8_kv_storage storage;
    kvfp8_source src;
    const float *scales;          // [2][256]: k scales then v scales (index 0 when per tensor)
    int per_head;                 // scale_count == num_heads > 1
};

// Which kernel cache_write() runs: the vectorized one (16-byte accesses, the
// target's hardware E4M3 conversion) when the rules table is the one that
// conversion implements and the shapes/pointers allow 16-byte accesses; the
// generic one (any rules table, any storage) otherwise.
bool cache_write_is_fast(const CacheWriteArgs &a);
// variant: the vectorized kernel's shape (threads per CTA, vectors per thread), 0 for
// the default; the bench times every one and gpu/test_gpu checks every one.  Named by
// cache_write_variant_name (nullptr: no such variant).
const char *cache_write_variant_name(int variant);
cudaError_t cache_write(const CacheWriteArgs &a, cudaStream_t stream, int variant = 0);

// ---- attention --------------------------------------------------------------------------

struct AttnArgs {
    const uint8_t *key_cache, *value_cache;
    const int *block_table;   // [num_seqs][max_blocks_per_seq]
    int max_blocks_per_seq;
    const int *seq_lens;      // [num_seqs]
    const int *query_start_loc; // [num_seqs + 1]
    const float *query;       // [num_tokens][num_q_heads][head_size]
    float *out;               // [num_tokens][num_q_heads][head_size]
    const float *new_key, *new_value; // mixed reads only
    const float *scales;      // [2][256] as in CacheWriteArgs
    int per_head_scales;
    int num_seqs, num_q_heads, num_kv_heads, head_size, block_size;
    float softmax_scale;
    int sliding_window;
    float soft_cap;
    kvfp8_read_semantics read;
    kvfp8_model_dtype model_dtype;
    kvfp8_kv_storage storage;
    // Set by the caller when queries_f16_rows() holds for the queries: the decode
    // kernel may then run an e4m3fn cache under `uniform` reads on float16 MMAs
    // (the cache's exact decoded values straight from the hardware E4M3 -> f16x2
    // conversion, each query row scaled by a power of two into float16 range).
    int q_f16_rows;
};

// Host: whether every query row (head_size floats) is exactly a float16 value once
// multiplied by the power of two 2^s that brings its largest magnitude into
// [2^14, 2^15) (s from the float32 exponent of that maximum, clamped to +-126; the
// decode kernel derives the same s).
inline bool queries_f16_rows(const float *q, size_t rows, int head_size) {
    for (size_t r = 0; r < rows; r++) {
        const float *row = q + r * (size_t)head_size;
        float m = 0.0f;
        for (int i = 0; i < head_size; i++) {
            const float a = row[i] < 0 ? -row[i] : row[i];
            if (!(a <= 3.40282347e38f))
                return false; // NaN or Inf
            m = a > m ? a : m;
        }
        uint32_t mb;
        memcpy(&mb, &m, 4);
        const int e = (int)(mb >> 23) & 0xFF;
        int sh = e ? 141 - e : 0;
        sh = sh < -126 ? -126 : sh > 126 ? 126 : sh;
        const uint32_t pb = (uint32_t)(sh + 127) << 23;
        float p2;
        memcpy(&p2, &pb, 4);
        for (int i = 0; i < head_size; i++) {
            const float y = row[i] * p2; // the kernel's float32 product
            const float a = y < 0 ? -y : y;
            if (a == 0.0f)
                continue;
            if (a > 65504.0f)
                return false;
            // on the half grid: spacing 2^(max(exponent, -14) - 10)
            uint32_t yb;
            memcpy(&yb, &a, 4);
            int ex = (int)(yb >> 23) - 127;
            if (((yb >> 23) & 0xFF) == 0)
                return false; // float32 subnormal: far below half's smallest subnormal
            ex = ex < -14 ? -14 : ex;
            const int drop = (ex - 10) - (-23 + ((int)(yb >> 23) - 127)); // low significand bits off the grid
            const uint32_t sig = (yb & 0x7FFFFF) | 0x800000;
            if (drop > 0 && (drop >= 24 || (sig & ((1u << drop) - 1))))
                return false;
        }
    }
    return true;
}

// Whether the tensor-core kernels implement this case (the host must also check
// that every query is exactly representable in the model dtype: they feed the
// queries to bf16/f16 MMAs).  Reason in *why when not.
bool attention_mma_ok(const AttnArgs &a, int prefill, const char **why);

// Decode: the sequences listed in seq_ids (device, n_decode of them), each with one
// query token.  split_len (a multiple of 16) is the number of context tokens one
// CTA reads; sequences longer than that are split and combined by the last CTA of
// each (sequence, KV head).  Workspace: decode_workspace_bytes(); its counter part
// must be zero before the first launch (the kernels leave it zero).
size_t decode_workspace_bytes(int n_decode, int num_kv_heads, int group, int head_size, int max_splits);
int decode_default_split(int n_decode, int max_len, int num_kv_heads, int group, int num_sms);
// nbuf: the pipeline variant, 0 for the default; the others (the bench sweeps them and
// gpu/test_gpu checks them) are listed at launch_decode in gpu/paged_decode.cu and
// named by decode_variant_name (nullptr: no such variant; 1..31 may be probed).
const char *decode_variant_name(int nbuf);
// The variant the default (nbuf 0) runs for these arguments, when it is one of the
// named ones (e4m3fn, head 128, `uniform` reads on float16 MMAs); 0 otherwise.
int decode_default_variant(const AttnArgs &a, int n_decode, int max_len, int split_len);
// The decode timeline of a diagnostic build (-DKVFP8_DECODE_TRACE): for each CTA
// (linear block index) the %globaltimer nanoseconds at: 0 entry, 7 the previous kernel
// done (pdl_wait returned; right after entry when not a programmatic dependent
// launch), 1 queries in registers, 2 first step computed, 3 last step computed, 4 the
// CTA's warps merged, 5 result or partial written (and, with splits, the counter
// read), 6 the combine done (the last CTA of a split unit).  Each launch overwrites the
// marks its CTAs reach.  Copies kDecodeTraceCtas rows into marks and returns that
// count (0 in a normal build, -1 on a CUDA error; marks == nullptr only asks whether
// this build traces).
constexpr int kDecodeTraceCtas = 4096, kDecodeTraceMarks = 8;
int decode_trace_read(unsigned long long (*marks)[kDecodeTraceMarks]);
// flags turn off measured optimizations, for the bench's side-by-side rows:
//  KVFP8_DECODE_NO_PDL: no programmatic dependent launch (by default, on sm_90+ and when
//    the grid is one full wave, the kernel waits for the stream's previous kernel
//    before reading anything and lets the next one be scheduled early, so consecutive
//    kernels' start-up and tail overlap).
enum : unsigned { KVFP8_DECODE_NO_PDL = 1u };
// Whether this thread's last decode_mma launch was a programmatic dependent launch.
bool decode_last_launch_pdl();
cudaError_t decode_mma(const AttnArgs &a, const int *seq_ids, int n_decode, int max_len, int split_len,
                       void *workspace, cudaStream_t stream, int nbuf = 0, unsigned flags = 0);

// Chunked prefill: work items (seq, first query token of a tile) in items[2*i],
// items[2*i+1] (device), n_items of them; tiles of prefill_tile_tokens(group) tokens.
int prefill_tile_tokens(int group);
cudaError_t prefill_mma(const AttnArgs &a, const int *items, int n_items, cudaStream_t stream);

// Anything (every read semantics, window, soft cap, any storage, any dtype): one CTA
// per (query token, query head), float32 throughout.  token_seq: the sequence of
// every query token of the batch; token_list: the n_tokens query tokens to compute
// (device arrays).  Portable (CUDA and HIP).
cudaError_t attention_generic(const AttnArgs &a, const int *token_seq, const int *token_list, int n_tokens,
                              cudaStream_t stream);

} // namespace kvfp8_gpu

#endif
