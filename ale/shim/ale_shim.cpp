// C shim over ale::ALEInterface (ALE 0.12.1). Every entry point catches every exception at the boundary.
#include "ale_shim.h"

#include <cstring>
#include <exception>
#include <mutex>
#include <string>

#include "ale/ale_interface.hpp"
#include "ale/common/Log.hpp"

struct BellmanAle {
  ale::ALEInterface ale;
};

namespace {
void set_err(char* err, size_t len, const char* msg) {
  if (err == nullptr || len == 0) return;
  std::strncpy(err, msg, len - 1);
  err[len - 1] = '\0';
}

template <typename V, typename T>
int copy_out(const V& v, T* out, size_t cap) {
  for (size_t i = 0; i < v.size() && i < cap; ++i) out[i] = static_cast<T>(v[i]);
  return static_cast<int>(v.size());
}
}  // namespace

#define SHIM_TRY try {
#define SHIM_CATCH(err, len)                       \
  }                                                \
  catch (const std::exception& e) {                \
    set_err(err, len, e.what());                   \
    return -1;                                     \
  }                                                \
  catch (...) {                                    \
    set_err(err, len, "unknown C++ exception");    \
    return -1;                                     \
  }

extern "C" {

BellmanAle* bellman_ale_new(char* err, size_t err_len) {
  try {
    // Silence ALE's welcome banner and informational logging (a library must not print). The mode is a
    // process-wide static: set it once, so threads creating instances concurrently do not race on it.
    static std::once_flag quiet;
    std::call_once(quiet, [] { ale::Logger::setMode(ale::Logger::Error); });
    return new BellmanAle();
  } catch (const std::exception& e) {
    set_err(err, err_len, e.what());
  } catch (...) {
    set_err(err, err_len, "unknown C++ exception");
  }
  return nullptr;
}

void bellman_ale_free(BellmanAle* h) {
  try {
    delete h;
  } catch (...) {
  }
}

int bellman_ale_set_int(BellmanAle* h, const char* key, int value, char* err, size_t err_len) {
  SHIM_TRY h->ale.setInt(key, value);
  return 0;
  SHIM_CATCH(err, err_len)
}

int bellman_ale_set_float(BellmanAle* h, const char* key, float value, char* err, size_t err_len) {
  SHIM_TRY h->ale.setFloat(key, value);
  return 0;
  SHIM_CATCH(err, err_len)
}

int bellman_ale_set_bool(BellmanAle* h, const char* key, int value, char* err, size_t err_len) {
  SHIM_TRY h->ale.setBool(key, value != 0);
  return 0;
  SHIM_CATCH(err, err_len)
}

int bellman_ale_is_supported_rom(const char* path, char* name, size_t name_len, char* err, size_t err_len) {
  SHIM_TRY auto r = ale::ALEInterface::isSupportedROM(path);
  if (!r.has_value()) return 0;
  set_err(name, name_len, r->c_str());
  return 1;
  SHIM_CATCH(err, err_len)
}

int bellman_ale_load_rom(BellmanAle* h, const char* path, char* err, size_t err_len) {
  SHIM_TRY h->ale.loadROM(path);
  return 0;
  SHIM_CATCH(err, err_len)
}

int bellman_ale_act(BellmanAle* h, int action, float paddle_strength, int* reward, char* err, size_t err_len) {
  SHIM_TRY* reward = h->ale.act(static_cast<ale::Action>(action), paddle_strength);
  return 0;
  SHIM_CATCH(err, err_len)
}

int bellman_ale_game_over(const BellmanAle* h, int with_truncation) {
  try {
    return h->ale.game_over(with_truncation != 0) ? 1 : 0;
  } catch (...) {
    return -1;
  }
}

int bellman_ale_game_truncated(const BellmanAle* h) {
  try {
    return h->ale.game_truncated() ? 1 : 0;
  } catch (...) {
    return -1;
  }
}

int bellman_ale_reset_game(BellmanAle* h, char* err, size_t err_len) {
  SHIM_TRY h->ale.reset_game();
  return 0;
  SHIM_CATCH(err, err_len)
}

int bellman_ale_lives(BellmanAle* h) {
  try {
    return h->ale.lives();
  } catch (...) {
    return -1;
  }
}

int bellman_ale_frame_number(const BellmanAle* h) {
  try {
    return h->ale.getFrameNumber();
  } catch (...) {
    return -1;
  }
}

int bellman_ale_episode_frame_number(const BellmanAle* h) {
  try {
    return h->ale.getEpisodeFrameNumber();
  } catch (...) {
    return -1;
  }
}

int bellman_ale_minimal_action_set(const BellmanAle* h, int* out, size_t cap) {
  try {
    return copy_out(h->ale.getMinimalActionSet(), out, cap);
  } catch (...) {
    return -1;
  }
}

int bellman_ale_legal_action_set(const BellmanAle* h, int* out, size_t cap) {
  try {
    return copy_out(h->ale.getLegalActionSet(), out, cap);
  } catch (...) {
    return -1;
  }
}

int bellman_ale_available_modes(const BellmanAle* h, unsigned* out, size_t cap) {
  try {
    return copy_out(h->ale.getAvailableModes(), out, cap);
  } catch (...) {
    return -1;
  }
}

int bellman_ale_available_difficulties(const BellmanAle* h, unsigned* out, size_t cap) {
  try {
    return copy_out(h->ale.getAvailableDifficulties(), out, cap);
  } catch (...) {
    return -1;
  }
}

int bellman_ale_set_mode(BellmanAle* h, unsigned mode, char* err, size_t err_len) {
  SHIM_TRY h->ale.setMode(mode);
  return 0;
  SHIM_CATCH(err, err_len)
}

int bellman_ale_set_difficulty(BellmanAle* h, unsigned difficulty, char* err, size_t err_len) {
  SHIM_TRY h->ale.setDifficulty(difficulty);
  return 0;
  SHIM_CATCH(err, err_len)
}

int bellman_ale_screen_width(const BellmanAle* h) {
  try {
    return static_cast<int>(h->ale.getScreen().width());
  } catch (...) {
    return -1;
  }
}

int bellman_ale_screen_height(const BellmanAle* h) {
  try {
    return static_cast<int>(h->ale.getScreen().height());
  } catch (...) {
    return -1;
  }
}

int bellman_ale_screen_grayscale(const BellmanAle* h, uint8_t* out, size_t out_len) {
  try {
    const ale::ALEScreen& s = h->ale.getScreen();
    size_t n = s.width() * s.height();
    if (out_len != n) return -2;
    // What ALEInterface::getScreenGrayscale does, into the caller's buffer instead of a std::vector.
    h->ale.theOSystem->colourPalette().applyPaletteGrayscale(out, s.getArray(), n);
    return 0;
  } catch (...) {
    return -1;
  }
}

int bellman_ale_screen_rgb(const BellmanAle* h, uint8_t* out, size_t out_len) {
  try {
    const ale::ALEScreen& s = h->ale.getScreen();
    size_t n = s.width() * s.height();
    if (out_len != 3 * n) return -2;
    h->ale.theOSystem->colourPalette().applyPaletteRGB(out, s.getArray(), n);
    return 0;
  } catch (...) {
    return -1;
  }
}

}  // extern "C"
