# CPU-only build through node-gyp: the fallback that node-gyp-build runs when no prebuilt binary
# matches. The per-ISA kernels are static libraries so each gets its own -m flags; the rest of the
# addon is built for the baseline ISA, so one binary runs on any x86-64. `npm run prebuild`
# (prebuildify) builds through this file too and reports the glibc / libstdc++ versions the binary
# needs (scripts/report-needs.js; also `npx attnkit doctor`): those of the machine it was built on,
# so release prebuilds are made on an old-glibc base. (Linking libstdc++ and libgcc statically was
# tried: it raised the glibc needed from 2.34 to 2.36 through arc4random and _dl_find_object.)
{
  "variables": {
    "attnkit_common_sources": [
      "native/napi/addon.cpp",
      "native/napi/attention_binding.cpp",
      "native/napi/device_binding.cpp",
      "native/napi/js_errors.cpp",
      "native/napi/linear_binding.cpp",
      "native/napi/decode_binding.cpp",
      "native/napi/tensor_args.cpp",
      "native/core/cpu_features.cpp",
      "native/core/cuda_backend.cpp",
      "native/core/thread_pool.cpp",
      "native/core/validate.cpp",
      "native/cpu/scratch.cpp",
      "native/cpu/fused/fused_attention.cpp",
      "native/cpu/fused/fused_attention_scalar.cpp",
      "native/cpu/linear/linear_attention.cpp",
      "native/cpu/linear/linear_attention_scalar.cpp",
      "native/cpu/decode/decode_attention.cpp",
      "native/cpu/decode/decode_attention_scalar.cpp",
      "native/cpu/merge/merge_states.cpp",
      "native/cpu/peak/fma_peak.cpp",
      "native/cpu/peak/mem_read.cpp",
      "native/cpu/peak/fma_peak_scalar.cpp"
    ]
  },
  "target_defaults": {
    "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17"],
    "cflags_cc": ["-std=c++17", "-fexceptions", "-O3", "-fPIC", "-fvisibility=hidden", "-Wall"]
  },
  "targets": [
    {
      "target_name": "attnkit_avx2",
      "type": "static_library",
      "conditions": [["target_arch=='x64'", {
        "sources": ["native/cpu/fused/fused_attention_avx2.cpp", "native/cpu/linear/linear_attention_avx2.cpp", "native/cpu/decode/decode_attention_avx2.cpp", "native/cpu/peak/fma_peak_avx2.cpp"],
        "cflags_cc": ["-mavx2", "-mfma", "-mf16c", "-Wshadow", "-fno-tree-loop-distribute-patterns"]
      }]]
    },
    {
      "target_name": "attnkit_avx512",
      "type": "static_library",
      "conditions": [["target_arch=='x64'", {
        "sources": ["native/cpu/fused/fused_attention_avx512.cpp", "native/cpu/linear/linear_attention_avx512.cpp", "native/cpu/decode/decode_attention_avx512.cpp", "native/cpu/peak/fma_peak_avx512.cpp"],
        "cflags_cc": ["-mavx512f", "-mavx2", "-mfma", "-mf16c", "-Wno-maybe-uninitialized", "-Wshadow", "-fno-tree-loop-distribute-patterns"]
      }]]
    },
    {
      "target_name": "attnkit",
      "sources": ["<@(attnkit_common_sources)"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "libraries": ["-ldl"],
      "conditions": [["target_arch=='x64'", {
        "dependencies": ["attnkit_avx2", "attnkit_avx512"]
      }]]
    }
  ]
}
