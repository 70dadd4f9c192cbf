// diag.c: user-facing diagnostics.
//
// Every message goes to stderr in the classic compiler form
//
//   path:line:col: error: message
//       the offending source line
//       ^~~~~~
//
// Columns in a Loc count bytes (1-based). When the line is echoed, tabs are
// expanded and multi-byte UTF-8 characters count as one column, so the caret
// is computed in display columns from the byte columns.
#include "fnnc.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define TABSTOP 8
#define INDENT "    "
#define MAXSHOW 200  // longer source lines are cut around the location
#define CONTEXT 60

static int nerrors;

// Length of the valid UTF-8 sequence starting at s (at most n bytes), or 0.
static int utf8_len(const unsigned char *s, size_t n) {
  int len;
  unsigned c = s[0];
  if (c >= 0xC2 && c <= 0xDF) len = 2;
  else if (c >= 0xE0 && c <= 0xEF) len = 3;
  else if (c >= 0xF0 && c <= 0xF4) len = 4;
  else return 0;
  if ((size_t)len > n) return 0;
  for (int i = 1; i < len; i++)
    if ((s[i] & 0xC0) != 0x80) return 0;
  return len;
}

// Echoes one source line (without its newline) and returns, through vstart and
// vend, the display columns (0-based) of byte offsets `from` and `to`.
// With `cut_left`/`cut_right` the line is a window of a longer one and "..."
// marks the cut.
static void echo_line(const unsigned char *s, size_t n, size_t from, size_t to, bool cut_left,
                      bool cut_right, int *vstart, int *vend) {
  int v = 0;
  *vstart = -1;
  *vend = -1;
  fputs(INDENT, stderr);
  if (cut_left) {
    fputs("...", stderr);
    v = 3;
  }
  size_t i = 0;
  while (i < n) {
    if (i == from) *vstart = v;
    if (i == to) *vend = v;
    unsigned c = s[i];
    if (c == '\t') {
      int w = TABSTOP - v % TABSTOP;
      for (int k = 0; k < w; k++) fputc(' ', stderr);
      v += w;
      i++;
    } else if (c < 0x20 || c == 0x7F) {
      fputc(' ', stderr);
      v++;
      i++;
    } else if (c < 0x80) {
      fputc((int)c, stderr);
      v++;
      i++;
    } else {
      int len = utf8_len(s + i, n - i);
      if (len == 0) {
        fputc('?', stderr);  // not UTF-8: keep the terminal sane
        len = 1;
      } else {
        fwrite(s + i, 1, (size_t)len, stderr);
      }
      // A multi-byte character is one display column; offsets inside it map to it.
      for (int k = 1; k < len; k++) {
        if (i + (size_t)k == from) *vstart = v;
        if (i + (size_t)k == to) *vend = v + 1;
      }
      v++;
      i += (size_t)len;
    }
  }
  if (cut_right) fputs("...", stderr);
  fputc('\n', stderr);
  // Offsets at or past the end of the line continue as if padded with spaces.
  if (*vstart < 0) *vstart = v + (int)(from - n);
  if (*vend < 0) *vend = v + (int)(to > n ? to - n : 0);
}

static void quote_source(Loc loc) {
  const Source *src = loc.src;
  if (!src->text || loc.line < 1 || loc.col < 1) return;
  const char *p = src->text, *end = src->text + src->len;
  for (int line = 1; line < loc.line; line++) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    if (!nl) return;  // the file has fewer lines
    p = nl + 1;
  }
  const char *q = memchr(p, '\n', (size_t)(end - p));
  if (!q) q = end;
  size_t n = (size_t)(q - p);
  if (n > 0 && p[n - 1] == '\r') n--;
  size_t from = (size_t)loc.col - 1;
  size_t len = loc.len < 1 ? 1 : (size_t)loc.len;
  // Very long lines are shown as a window around the location.
  size_t ws = 0, we = n;
  if (n > MAXSHOW) {
    if (len > MAXSHOW / 2) len = MAXSHOW / 2;
    if (from > CONTEXT) ws = from - CONTEXT;
    if (from + len + CONTEXT < n) we = from + len + CONTEXT;
    while (ws > 0 && ((unsigned char)p[ws] & 0xC0) == 0x80) ws--;
    while (we < n && ((unsigned char)p[we] & 0xC0) == 0x80) we++;
    if (from > we) from = we;
    if (from + len > we) len = we > from ? we - from : 1;
  }
  int vs, ve;
  echo_line((const unsigned char *)p + ws, we - ws, from - ws, from - ws + len, ws > 0, we < n,
            &vs, &ve);
  fputs(INDENT, stderr);
  for (int i = 0; i < vs; i++) fputc(' ', stderr);
  fputc('^', stderr);
  for (int i = vs + 1; i < ve; i++) fputc('~', stderr);
  fputc('\n', stderr);
}

static void report(const char *kind, Loc loc, const char *fmt, va_list ap) {
  fflush(stdout);  // keep the order of interleaved stdout/stderr output
  if (!loc.src) {
    fprintf(stderr, "fnnc: %s: ", kind);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    return;
  }
  fprintf(stderr, "%s:%d:%d: %s: ", loc.src->path, loc.line, loc.col, kind);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  quote_source(loc);
}

void error_at(Loc loc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  report("error", loc, fmt, ap);
  va_end(ap);
  nerrors++;
}

void warn_at(Loc loc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  report("warning", loc, fmt, ap);
  va_end(ap);
}

void hint(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("hint: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

void error_plain(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fflush(stdout);
  fputs("fnnc: error: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  nerrors++;
}

int error_count(void) { return nerrors; }

//
// Typo suggestions: optimal string alignment distance (Levenshtein plus
// transpositions of neighbours), case-insensitive.
//
#define MAXWORD 64

static int edit_distance(const char *a, size_t n, const char *b, size_t m) {
  int rows[3][MAXWORD + 1];
  int *pp = rows[0], *p = rows[1], *c = rows[2];  // rows i-2, i-1, i
  for (size_t j = 0; j <= m; j++) p[j] = (int)j;
  for (size_t i = 1; i <= n; i++) {
    c[0] = (int)i;
    int ai = tolower((unsigned char)a[i - 1]);
    for (size_t j = 1; j <= m; j++) {
      int bj = tolower((unsigned char)b[j - 1]);
      int cost = ai != bj;
      int d = p[j] + 1;
      if (c[j - 1] + 1 < d) d = c[j - 1] + 1;
      if (p[j - 1] + cost < d) d = p[j - 1] + cost;
      if (i > 1 && j > 1 && ai == tolower((unsigned char)b[j - 2]) &&
          tolower((unsigned char)a[i - 2]) == bj && pp[j - 2] + 1 < d)
        d = pp[j - 2] + 1;
      c[j] = d;
    }
    int *t = pp;
    pp = p;
    p = c;
    c = t;
  }
  return p[m];
}

const char *closest_word(const char *word, const char *const *cands) {
  if (!word || !cands) return NULL;
  size_t n = strlen(word);
  if (n == 0 || n > MAXWORD) return NULL;
  int limit = (int)n / 3 > 1 ? (int)n / 3 : 1;
  const char *best = NULL;
  int bestd = limit + 1;
  for (const char *const *c = cands; *c; c++) {
    size_t m = strlen(*c);
    if (m > MAXWORD) continue;
    if ((m > n ? m - n : n - m) > (size_t)limit) continue;
    int d = edit_distance(word, n, *c, m);
    if (d < bestd) {
      bestd = d;
      best = *c;
    }
  }
  return best;
}

Source *source_read(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    error_plain("cannot read '%s': %s", path, strerror(errno));
    return NULL;
  }
  size_t cap = 1 << 16, len = 0;
  char *buf = malloc(cap);
  if (!buf) die("out of memory");
  for (;;) {
    if (len == cap) {
      cap *= 2;
      char *nb = realloc(buf, cap);
      if (!nb) die("out of memory (%zu bytes)", cap);
      buf = nb;
    }
    size_t got = fread(buf + len, 1, cap - len, f);
    len += got;
    if (got == 0) break;
  }
  if (ferror(f)) {
    int e = errno;
    error_plain("cannot read '%s': %s", path, strerror(e ? e : EIO));
    free(buf);
    fclose(f);
    return NULL;
  }
  fclose(f);
  Source *src = arena_alloc(sizeof *src);
  src->path = arena_strdup(path);
  src->text = arena_strndup(buf, len);
  src->len = len;
  free(buf);
  return src;
}
