#include "scratch.h"

#include <cstdlib>
#include <new>

namespace attnkit {
namespace {

struct ScratchArena {
  float* data = nullptr;
  size_t capacity = 0;
  ~ScratchArena() { std::free(data); }
};

}  // namespace

float* thread_scratch(size_t floats) {
  thread_local ScratchArena arena;
  if (floats > arena.capacity) {
    std::free(arena.data);
    arena.data = nullptr;
    arena.capacity = 0;
    const size_t bytes = ((floats * sizeof(float)) + 63) / 64 * 64;
    void* p = std::aligned_alloc(64, bytes);
    if (!p) throw std::bad_alloc();
    arena.data = static_cast<float*>(p);
    arena.capacity = floats;
  }
  return arena.data;
}

}  // namespace attnkit
