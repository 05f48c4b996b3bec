// medmesh's native convolution kernels: oneDNN (the library PyTorch's CPU convolutions use,
// Debian's libdnnl) run directly on the TF.js wasm backend's heap, for the three kernels that
// set the pace of training (src/training/native-kernels.ts registers them; where this addon is
// not built, the WebAssembly kernels of wasm-kernels.ts run instead).
//
// One call, conv(kind, heap, a, b, out, geometry):
//   kind 0 forward:          out = conv(a = x [N,IH,IW,IC], b = w [KH,KW,IC,OC])      [N,OH,OW,OC]
//   kind 1 backward data:    out = dL/dx from a = dy [N,OH,OW,OC], b = w               [N,IH,IW,IC]
//   kind 2 backward weights: out = dL/dw from a = x, b = dy                            [KH,KW,IC,OC]
//   kind 3 per-example norms: out[n] = ‖dL_n/dw‖², each example's own filter gradient   [N]
//                             (a = x, b = dy; DP-SGD's clipping, src/training/per-example.ts)
// heap is the wasm memory's ArrayBuffer and a, b, out byte offsets into it (float32, channels
// last, the filter as TF.js keeps it: "hwio"); geometry is an Int32Array
// [N, IH, IW, IC, OH, OW, OC, KH, KW, SH, SW, PT, PL, PB, PR].
//
// Activations stay channels last (no copy of them); the filter is reordered to whatever layout
// the chosen implementation wants (a few hundred KB at most). Primitives are made once per
// shape and thread (each training worker is a thread with its own heap) and kept. Each call runs
// on the calling thread alone (one OpenMP thread): a node's parallelism is its workers.
#include <node_api.h>
#include <omp.h>

#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include <oneapi/dnnl/dnnl.hpp>

using dnnl::memory;
using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;

namespace {

enum Kind { FORWARD = 0, BACKWARD_DATA = 1, BACKWARD_WEIGHTS = 2, PER_EXAMPLE_NORMS = 3 };
constexpr int GEOMETRY = 15;

struct Geometry {
  int64_t n, ih, iw, ic, oh, ow, oc, kh, kw, sh, sw, pt, pl, pb, pr;
};

struct Entry {
  dnnl::primitive conv;
  memory::desc x, y, w;      // channels-last activations; the filter in the primitive's layout
  memory::desc wUser;        // the filter as TF.js keeps it
  bool reorderW = false;     // the primitive's filter layout differs from TF.js's
  dnnl::reorder toPrimitive, toUser; // hwio -> primitive layout, or back (backward weights)
  std::vector<float> wScratch;         // the filter in the primitive's layout
  size_t scratchpadBytes = 0;
  std::string impl;
};

struct ThreadState {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};
  std::unordered_map<std::string, std::unique_ptr<Entry>> entries;
};

ThreadState &state() {
  thread_local ThreadState s;
  return s;
}

std::string keyOf(int kind, const Geometry &g) {
  const int64_t v[] = {kind, g.n, g.ih, g.iw, g.ic, g.oh, g.ow, g.oc, g.kh, g.kw, g.sh, g.sw, g.pt, g.pl, g.pb, g.pr};
  return std::string(reinterpret_cast<const char *>(v), sizeof v);
}

std::unique_ptr<Entry> makeEntry(int kind, const Geometry &g, ThreadState &s) {
  auto e = std::make_unique<Entry>();
  const memory::dims x = {g.n, g.ic, g.ih, g.iw}, y = {g.n, g.oc, g.oh, g.ow}, w = {g.oc, g.ic, g.kh, g.kw};
  const memory::dims strides = {g.sh, g.sw}, padL = {g.pt, g.pl}, padR = {g.pb, g.pr};
  e->x = memory::desc(x, dt::f32, tag::nhwc);
  e->y = memory::desc(y, dt::f32, tag::nhwc);
  e->wUser = memory::desc(w, dt::f32, tag::hwio);
  const memory::desc wAny(w, dt::f32, tag::any);
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  // the forward primitive is also the hint the backward ones are chosen by
  const dnnl::convolution_forward::desc fd(dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct, e->x, wAny, e->y, strides, padL, padR);
  const dnnl::convolution_forward::primitive_desc fpd(fd, attr, s.engine);
  dnnl::primitive_desc_base pd = fpd;
  if (kind == FORWARD) {
    e->w = fpd.weights_desc();
    e->conv = dnnl::convolution_forward(fpd);
  } else if (kind == BACKWARD_DATA) {
    const dnnl::convolution_backward_data::desc bd(dnnl::algorithm::convolution_direct, e->x, wAny, e->y, strides, padL, padR);
    const dnnl::convolution_backward_data::primitive_desc bpd(bd, attr, s.engine, fpd);
    e->w = bpd.weights_desc();
    e->conv = dnnl::convolution_backward_data(bpd);
    pd = bpd;
  } else {
    const dnnl::convolution_backward_weights::desc bd(dnnl::algorithm::convolution_direct, e->x, wAny, e->y, strides, padL, padR);
    const dnnl::convolution_backward_weights::primitive_desc bpd(bd, attr, s.engine, fpd);
    e->w = bpd.diff_weights_desc();
    e->conv = dnnl::convolution_backward_weights(bpd);
    pd = bpd;
  }
  e->impl = pd.impl_info_str();
  e->scratchpadBytes = pd.scratchpad_desc().get_size();
  e->reorderW = e->w != e->wUser;
  if (e->reorderW) {
    e->wScratch.resize((e->w.get_size() + sizeof(float) - 1) / sizeof(float));
    if (kind == BACKWARD_WEIGHTS) e->toUser = dnnl::reorder(dnnl::reorder::primitive_desc(s.engine, e->w, s.engine, e->wUser));
    else e->toPrimitive = dnnl::reorder(dnnl::reorder::primitive_desc(s.engine, e->wUser, s.engine, e->w));
  }
  return e;
}

Entry &entryFor(int kind, const Geometry &g, ThreadState &s) {
  const std::string key = keyOf(kind, g);
  auto it = s.entries.find(key);
  if (it == s.entries.end()) it = s.entries.emplace(key, makeEntry(kind, g, s)).first;
  return *it->second;
}

// a scratchpad per thread, grown to the largest any primitive has asked for
std::vector<uint8_t> &scratchpad(size_t bytes) {
  thread_local std::vector<uint8_t> pad;
  if (pad.size() < bytes) pad.resize(bytes);
  return pad;
}

void run(int kind, const Geometry &g, void *a, void *b, void *out) {
  // before the primitive is made: oneDNN sizes its work for the threads it may use then
  omp_set_num_threads(1);
  ThreadState &s = state();
  Entry &e = entryFor(kind, g, s);
  std::vector<uint8_t> &pad = scratchpad(e.scratchpadBytes);
  const memory scratch(memory::desc({static_cast<int64_t>(pad.size())}, dt::u8, tag::x), s.engine, pad.data());
  if (kind == FORWARD || kind == BACKWARD_DATA) {
    memory wUser(e.wUser, s.engine, b);
    memory w = wUser;
    if (e.reorderW) {
      w = memory(e.w, s.engine, e.wScratch.data());
      e.toPrimitive.execute(s.stream, wUser, w);
    }
    if (kind == FORWARD) {
      e.conv.execute(s.stream, {{DNNL_ARG_SRC, memory(e.x, s.engine, a)}, {DNNL_ARG_WEIGHTS, w},
                                {DNNL_ARG_DST, memory(e.y, s.engine, out)}, {DNNL_ARG_SCRATCHPAD, scratch}});
    } else {
      e.conv.execute(s.stream, {{DNNL_ARG_DIFF_DST, memory(e.y, s.engine, a)}, {DNNL_ARG_WEIGHTS, w},
                                {DNNL_ARG_DIFF_SRC, memory(e.x, s.engine, out)}, {DNNL_ARG_SCRATCHPAD, scratch}});
    }
  } else {
    memory wUser(e.wUser, s.engine, out);
    memory w = e.reorderW ? memory(e.w, s.engine, e.wScratch.data()) : wUser;
    e.conv.execute(s.stream, {{DNNL_ARG_SRC, memory(e.x, s.engine, a)}, {DNNL_ARG_DIFF_DST, memory(e.y, s.engine, b)},
                              {DNNL_ARG_DIFF_WEIGHTS, w}, {DNNL_ARG_SCRATCHPAD, scratch}});
    if (e.reorderW) e.toUser.execute(s.stream, w, wUser);
  }
  s.stream.wait();
}

// each example's own filter gradient in turn (a batch of one), and its squared norm, into out[b]
void perExampleNorms(const Geometry &g, float *x, float *dy, float *out) {
  Geometry one = g;
  one.n = 1;
  const size_t xStep = g.ih * g.iw * g.ic, yStep = g.oh * g.ow * g.oc, w = g.kh * g.kw * g.ic * g.oc;
  thread_local std::vector<float> grad;
  if (grad.size() < w) grad.resize(w);
  for (int64_t b = 0; b < g.n; b++) {
    run(BACKWARD_WEIGHTS, one, x + b * xStep, dy + b * yStep, grad.data());
    double sum = 0;
    for (size_t i = 0; i < w; i++) sum += static_cast<double>(grad[i]) * grad[i];
    out[b] = static_cast<float>(sum);
  }
}

// the bytes of a's, b's and out's tensors; false where a product overflows
bool tensorBytes(const Geometry &g, int kind, uint64_t &aBytes, uint64_t &bBytes, uint64_t &outBytes) {
  auto product = [](std::initializer_list<int64_t> fs, uint64_t &out) {
    uint64_t p = sizeof(float);
    for (int64_t f : fs) {
      if (__builtin_mul_overflow(p, static_cast<uint64_t>(f), &p)) return false;
    }
    out = p;
    return true;
  };
  uint64_t x, y, w, n;
  if (!product({g.n, g.ih, g.iw, g.ic}, x) || !product({g.n, g.oh, g.ow, g.oc}, y) || !product({g.kh, g.kw, g.ic, g.oc}, w) || !product({g.n}, n)) return false;
  if (kind == FORWARD) { aBytes = x; bBytes = w; outBytes = y; }
  else if (kind == BACKWARD_DATA) { aBytes = y; bBytes = w; outBytes = x; }
  else if (kind == BACKWARD_WEIGHTS) { aBytes = x; bBytes = y; outBytes = w; }
  else { aBytes = x; bBytes = y; outBytes = n; }
  return true;
}

napi_value fail(napi_env env, const std::string &message) {
  napi_throw_error(env, nullptr, message.c_str());
  return nullptr;
}

// conv(kind, heap: ArrayBuffer, a, b, out: byte offsets, geometry: Int32Array(15)) -> implementation name
napi_value Conv(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) != napi_ok || argc != 6) return fail(env, "conv: 6 arguments expected");
  int32_t kind;
  if (napi_get_value_int32(env, argv[0], &kind) != napi_ok || kind < 0 || kind > 3) return fail(env, "conv: kind must be 0, 1, 2 or 3");
  void *heapData = nullptr;
  size_t heapBytes = 0;
  if (napi_get_arraybuffer_info(env, argv[1], &heapData, &heapBytes) != napi_ok) return fail(env, "conv: heap must be an ArrayBuffer");
  int64_t off[3];
  for (int i = 0; i < 3; i++) {
    if (napi_get_value_int64(env, argv[2 + i], &off[i]) != napi_ok || off[i] < 0 || off[i] % 4 != 0) return fail(env, "conv: offsets must be non-negative multiples of 4");
  }
  napi_typedarray_type type;
  size_t length = 0;
  void *geomData = nullptr;
  if (napi_get_typedarray_info(env, argv[5], &type, &length, &geomData, nullptr, nullptr) != napi_ok || type != napi_int32_array || length != GEOMETRY) {
    return fail(env, "conv: geometry must be an Int32Array of 15");
  }
  const int32_t *v = static_cast<const int32_t *>(geomData);
  for (int i = 0; i < GEOMETRY; i++) {
    if (v[i] < (i >= 11 ? 0 : 1)) return fail(env, "conv: geometry out of range");
  }
  const Geometry g{v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11], v[12], v[13], v[14]};
  // the shapes must be those of a convolution, and every tensor inside the heap
  if (g.ih + g.pt + g.pb < g.kh || g.iw + g.pl + g.pr < g.kw ||
      (g.ih + g.pt + g.pb - g.kh) / g.sh + 1 != g.oh || (g.iw + g.pl + g.pr - g.kw) / g.sw + 1 != g.ow) return fail(env, "conv: output size does not match");
  uint64_t aBytes, bBytes, outBytes;
  if (!tensorBytes(g, kind, aBytes, bBytes, outBytes)) return fail(env, "conv: a tensor lies outside the heap (its size overflows)");
  const uint64_t need[3] = {aBytes, bBytes, outBytes};
  for (int i = 0; i < 3; i++) {
    if (static_cast<uint64_t>(off[i]) > heapBytes || need[i] > heapBytes - static_cast<uint64_t>(off[i])) return fail(env, "conv: a tensor lies outside the heap");
  }
  try {
    uint8_t *heap = static_cast<uint8_t *>(heapData);
    if (kind == PER_EXAMPLE_NORMS) perExampleNorms(g, reinterpret_cast<float *>(heap + off[0]), reinterpret_cast<float *>(heap + off[1]), reinterpret_cast<float *>(heap + off[2]));
    else run(kind, g, heap + off[0], heap + off[1], heap + off[2]);
  } catch (const dnnl::error &e) {
    return fail(env, std::string("oneDNN: ") + e.what());
  } catch (const std::exception &e) {
    return fail(env, e.what());
  }
  Geometry one = g;
  one.n = 1;
  const std::string &impl = kind == PER_EXAMPLE_NORMS ? entryFor(BACKWARD_WEIGHTS, one, state()).impl : entryFor(kind, g, state()).impl;
  napi_value result;
  napi_create_string_utf8(env, impl.c_str(), impl.size(), &result);
  return result;
}

// version() -> "major.minor.patch" of the oneDNN library loaded
napi_value Version(napi_env env, napi_callback_info) {
  const dnnl_version_t *v = dnnl_version();
  const std::string s = std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch);
  napi_value result;
  napi_create_string_utf8(env, s.c_str(), s.size(), &result);
  return result;
}

// isa() -> the instruction set oneDNN's kernels use on this CPU: the highest the CPU has, capped by
// ONEDNN_MAX_CPU_ISA where that is set (it is read once, before the first primitive is made)
napi_value Isa(napi_env env, napi_callback_info) {
  const char *name;
  switch (dnnl_get_effective_cpu_isa()) {
    case dnnl_cpu_isa_sse41: name = "SSE41"; break;
    case dnnl_cpu_isa_avx: name = "AVX"; break;
    case dnnl_cpu_isa_avx2: name = "AVX2"; break;
    case dnnl_cpu_isa_avx2_vnni: name = "AVX2_VNNI"; break;
    case dnnl_cpu_isa_avx512_mic: name = "AVX512_MIC"; break;
    case dnnl_cpu_isa_avx512_mic_4ops: name = "AVX512_MIC_4OPS"; break;
    case dnnl_cpu_isa_avx512_core: name = "AVX512_CORE"; break;
    case dnnl_cpu_isa_avx512_core_vnni: name = "AVX512_CORE_VNNI"; break;
    case dnnl_cpu_isa_avx512_core_bf16: name = "AVX512_CORE_BF16"; break;
    case dnnl_cpu_isa_avx512_core_amx: name = "AVX512_CORE_AMX"; break;
    // 'all' is what a build for another architecture (ARM) reports: no x86 cap applies there
    default: name = "ALL"; break;
  }
  napi_value result;
  napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &result);
  return result;
}

}  // namespace

NAPI_MODULE_INIT() {
  napi_value conv, version, isa;
  napi_create_function(env, "conv", NAPI_AUTO_LENGTH, Conv, nullptr, &conv);
  napi_create_function(env, "version", NAPI_AUTO_LENGTH, Version, nullptr, &version);
  napi_create_function(env, "isa", NAPI_AUTO_LENGTH, Isa, nullptr, &isa);
  napi_set_named_property(env, exports, "conv", conv);
  napi_set_named_property(env, exports, "version", version);
  napi_set_named_property(env, exports, "isa", isa);
  return exports;
}
