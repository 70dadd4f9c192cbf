// util.c: the compiler's arena, growable vectors and internal-error reporting.
#include "fnnc.h"

#include <stdlib.h>
#include <string.h>

// Chunks are linked so arena_free_all can release them (ASan runs stay clean).
typedef struct Chunk Chunk;
struct Chunk {
  Chunk *next;
  size_t used, cap;
  _Alignas(16) unsigned char data[];
};
static Chunk *arena_head;

void *arena_alloc(size_t size) {
  size = (size + 15) & ~(size_t)15;
  if (!arena_head || arena_head->used + size > arena_head->cap) {
    size_t cap = size > (1u << 20) ? size : (1u << 20);
    Chunk *c = malloc(sizeof(Chunk) + cap);
    if (!c) die("out of memory (%zu bytes)", cap);
    c->next = arena_head;
    c->used = 0;
    c->cap = cap;
    arena_head = c;
  }
  void *p = arena_head->data + arena_head->used;
  arena_head->used += size;
  memset(p, 0, size);
  return p;
}

void arena_free_all(void) {
  while (arena_head) {
    Chunk *n = arena_head->next;
    free(arena_head);
    arena_head = n;
  }
}

char *arena_strndup(const char *s, size_t n) {
  char *p = arena_alloc(n + 1);
  memcpy(p, s, n);
  p[n] = 0;
  return p;
}

char *arena_strdup(const char *s) { return arena_strndup(s, strlen(s)); }

char *arena_printf(const char *fmt, ...) {
  va_list ap, aq;
  va_start(ap, fmt);
  va_copy(aq, ap);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  char *p = arena_alloc((size_t)n + 1);
  vsnprintf(p, (size_t)n + 1, fmt, aq);
  va_end(aq);
  return p;
}

void vec_push(Vec *v, void *x) {
  if (v->len == v->cap) {
    int cap = v->cap ? v->cap * 2 : 8;
    void **d = arena_alloc(sizeof(void *) * (size_t)cap);
    if (v->len) memcpy(d, v->data, sizeof(void *) * (size_t)v->len);
    v->data = d;
    v->cap = cap;
  }
  v->data[v->len++] = x;
}

_Noreturn void die_at(const char *file, int line, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "fnnc: internal error at %s:%d: ", file, line);
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  abort();
}
