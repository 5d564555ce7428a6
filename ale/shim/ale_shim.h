/* C interface of bellman-ale to ALE 0.12.1 (the Arcade Learning Environment, GPL-2.0-only).
 *
 * Every function catches every C++ exception: a failing call returns a negative status and writes a message
 * (NUL-terminated, truncated to err_len) into err. One handle is not thread-safe; use one per thread. */
#ifndef BELLMAN_ALE_SHIM_H
#define BELLMAN_ALE_SHIM_H
#include <stddef.h>
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

typedef struct BellmanAle BellmanAle;

BellmanAle* bellman_ale_new(char* err, size_t err_len);
void bellman_ale_free(BellmanAle* h);
int bellman_ale_set_int(BellmanAle* h, const char* key, int value, char* err, size_t err_len);
int bellman_ale_set_float(BellmanAle* h, const char* key, float value, char* err, size_t err_len);
int bellman_ale_set_bool(BellmanAle* h, const char* key, int value, char* err, size_t err_len);
/* 1: supported (the ROM's name written to name), 0: not a supported ROM (unknown md5), <0: error. */
int bellman_ale_is_supported_rom(const char* path, char* name, size_t name_len, char* err, size_t err_len);
/* Loads a ROM; the caller must have checked bellman_ale_is_supported_rom (ALE calls exit(1) otherwise). */
int bellman_ale_load_rom(BellmanAle* h, const char* path, char* err, size_t err_len);
int bellman_ale_act(BellmanAle* h, int action, float paddle_strength, int* reward, char* err, size_t err_len);
int bellman_ale_game_over(const BellmanAle* h, int with_truncation);
int bellman_ale_game_truncated(const BellmanAle* h);
int bellman_ale_reset_game(BellmanAle* h, char* err, size_t err_len);
int bellman_ale_lives(BellmanAle* h);
int bellman_ale_frame_number(const BellmanAle* h);
int bellman_ale_episode_frame_number(const BellmanAle* h);
/* Action sets, modes, difficulties: write up to cap values, return the full count (or <0 on error). */
int bellman_ale_minimal_action_set(const BellmanAle* h, int* out, size_t cap);
int bellman_ale_legal_action_set(const BellmanAle* h, int* out, size_t cap);
int bellman_ale_available_modes(const BellmanAle* h, unsigned* out, size_t cap);
int bellman_ale_available_difficulties(const BellmanAle* h, unsigned* out, size_t cap);
int bellman_ale_set_mode(BellmanAle* h, unsigned mode, char* err, size_t err_len);
int bellman_ale_set_difficulty(BellmanAle* h, unsigned difficulty, char* err, size_t err_len);
int bellman_ale_screen_width(const BellmanAle* h);
int bellman_ale_screen_height(const BellmanAle* h);
/* Writes the screen through ALE's grayscale palette (out_len must be width*height). */
int bellman_ale_screen_grayscale(const BellmanAle* h, uint8_t* out, size_t out_len);
/* Writes the screen as interleaved RGB (out_len must be width*height*3). */
int bellman_ale_screen_rgb(const BellmanAle* h, uint8_t* out, size_t out_len);

#ifdef __cplusplus
}
#endif
#endif
