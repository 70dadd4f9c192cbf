// ckpt.c - checkpoints in the safetensors format: an 8-byte little-endian
// header length, a JSON header, then the raw little-endian tensor data.
//
// Saving is atomic: the file is written to a temporary file in the same
// directory, fsync'ed, renamed over the target, and the directory is fsync'ed.
// Loading treats the file as hostile: the header length is bounded, the JSON
// is parsed strictly (objects, strings with escapes, arrays of integers), and
// every tensor's dtype, shape and offsets are checked; the data section must be
// covered exactly, without overlaps, gaps or trailing bytes. If the metadata
// holds a checksum (FNV-1a 64 of the data section) it is verified. Any problem
// is one "PROG: error: FILE: ..." message and a NULL result, never a partial
// load. Only F32 tensors are supported (that is all fnnc models use).
#include "rt.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CK_MAX_HEADER ((uint64_t)100 << 20)  // the safetensors reference limit, 100 MB
#define CK_MAX_RANK 8

typedef struct {
  char *name;
  int rank;
  int64_t dims[CK_MAX_RANK];
  uint64_t begin, end;  // byte offsets in the data section
} CkEntry;

typedef struct RtCk {
  unsigned char *buf;  // the whole file
  size_t size;
  const unsigned char *data;  // the data section
  uint64_t data_size;
  int n;
  CkEntry *t;
  int nmeta;
  char **mkey, **mval;
} RtCk;

uint64_t rt_ck_fnv1a(const void *p, size_t n, uint64_t h) {
  const unsigned char *s = p;
  for (size_t i = 0; i < n; i++) {
    h ^= s[i];
    h *= 0x100000001b3ull;
  }
  return h;
}
#define FNV_INIT 0xcbf29ce484222325ull

//
// Writing.
//
typedef struct {
  char *s;
  size_t n, cap;
  int oom;
} Buf;

static void bput(Buf *b, const char *s, size_t n) {
  if (b->oom) return;
  if (b->n + n + 1 > b->cap) {
    size_t c = b->cap ? b->cap : 1024;
    while (c < b->n + n + 1) c *= 2;
    char *t = realloc(b->s, c);
    if (!t) {
      b->oom = 1;
      return;
    }
    b->s = t;
    b->cap = c;
  }
  memcpy(b->s + b->n, s, n);
  b->n += n;
  b->s[b->n] = 0;
}

static void bprintf(Buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void bprintf(Buf *b, const char *fmt, ...) {
  char tmp[256];
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (k < 0 || (size_t)k >= sizeof tmp) {
    b->oom = 1;
    return;
  }
  bput(b, tmp, (size_t)k);
}

static void bstr(Buf *b, const char *s) {
  bput(b, "\"", 1);
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') {
      char e[2] = {'\\', (char)c};
      bput(b, e, 2);
    } else if (c < 0x20) {
      bprintf(b, "\\u%04x", c);
    } else {
      bput(b, (const char *)&c, 1);
    }
  }
  bput(b, "\"", 1);
}

static int write_all(int fd, const void *p, size_t n) {
  const char *s = p;
  while (n) {
    ssize_t k = write(fd, s, n);
    if (k < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    s += k;
    n -= (size_t)k;
  }
  return 0;
}

// Saves the tensors (in order, F32) and the metadata pairs (meta[2i] = key,
// meta[2i+1] = value; a "checksum" entry is added) to `path`, atomically.
// Returns 0, or 1 after an error.
int rt_ck_save(const char *prog, const char *path, const RtCkTensor *t, int nt, const char *const *meta, int nmeta) {
  uint64_t off = 0, h = FNV_INIT;
  for (int i = 0; i < nt; i++) {
    int64_t numel = 1;
    for (int d = 0; d < t[i].rank; d++) numel *= t[i].dims[d];
    h = rt_ck_fnv1a(t[i].data, (size_t)numel * 4, h);
  }
  Buf b = {0};
  bput(&b, "{\"__metadata__\":{", 17);
  for (int i = 0; i < nmeta; i++) {
    bstr(&b, meta[2 * i]);
    bput(&b, ":", 1);
    bstr(&b, meta[2 * i + 1]);
    bput(&b, ",", 1);
  }
  bprintf(&b, "\"checksum\":\"fnv1a64:%016llx\"}", (unsigned long long)h);
  for (int i = 0; i < nt; i++) {
    int64_t numel = 1;
    bput(&b, ",", 1);
    bstr(&b, t[i].name);
    bput(&b, ":{\"dtype\":\"F32\",\"shape\":[", 25);
    for (int d = 0; d < t[i].rank; d++) {
      bprintf(&b, d ? ",%lld" : "%lld", (long long)t[i].dims[d]);
      numel *= t[i].dims[d];
    }
    bprintf(&b, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
            (unsigned long long)(off + (uint64_t)numel * 4));
    off += (uint64_t)numel * 4;
  }
  bput(&b, "}", 1);
  while (!b.oom && b.n % 8) bput(&b, " ", 1);  // pad so the data is 8-byte aligned
  if (b.oom) {
    free(b.s);
    rt_error(prog, "out of memory writing the checkpoint '%s'", path);
    return 1;
  }
  // The temporary file and the directory.
  size_t pl = strlen(path);
  char *tmp = malloc(pl + 32), *dir = malloc(pl + 2);
  if (!tmp || !dir) {
    free(tmp);
    free(dir);
    free(b.s);
    rt_error(prog, "out of memory");
    return 1;
  }
  snprintf(tmp, pl + 32, "%s.tmp.%ld", path, (long)getpid());
  const char *slash = strrchr(path, '/');
  if (!slash)
    strcpy(dir, ".");
  else if (slash == path)
    strcpy(dir, "/");
  else {
    memcpy(dir, path, (size_t)(slash - path));
    dir[slash - path] = 0;
  }
  int rc = 1;
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) {
    rt_error(prog, "cannot write the checkpoint '%s': %s", tmp, strerror(errno));
    goto out;
  }
  unsigned char len[8];
  for (int i = 0; i < 8; i++) len[i] = (unsigned char)((uint64_t)b.n >> (8 * i));
  int bad = write_all(fd, len, 8) || write_all(fd, b.s, b.n);
  for (int i = 0; i < nt && !bad; i++) {
    int64_t numel = 1;
    for (int d = 0; d < t[i].rank; d++) numel *= t[i].dims[d];
    bad = write_all(fd, t[i].data, (size_t)numel * 4);  // the host is little-endian
  }
  if (bad || fsync(fd)) {
    rt_error(prog, "cannot write the checkpoint '%s': %s", tmp, strerror(errno));
    close(fd);
    unlink(tmp);
    goto out;
  }
  if (close(fd)) {
    rt_error(prog, "cannot write the checkpoint '%s': %s", tmp, strerror(errno));
    unlink(tmp);
    goto out;
  }
  if (rename(tmp, path)) {
    rt_error(prog, "cannot rename '%s' to '%s': %s", tmp, path, strerror(errno));
    unlink(tmp);
    goto out;
  }
  int dfd = open(dir, O_RDONLY | O_DIRECTORY);
  if (dfd >= 0) {
    if (fsync(dfd) && errno != EINVAL) {
      rt_error(prog, "cannot sync the directory '%s': %s", dir, strerror(errno));
      close(dfd);
      goto out;
    }
    close(dfd);
  }
  rc = 0;
out:
  free(tmp);
  free(dir);
  free(b.s);
  return rc;
}

//
// Reading: a strict JSON parser for the subset safetensors uses.
//
typedef struct {
  const char *s, *end;
  const char *prog, *file;
  char err[256];
} Js;

static int jfail(Js *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int jfail(Js *j, const char *fmt, ...) {
  if (j->err[0]) return -1;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(j->err, sizeof j->err, fmt, ap);
  va_end(ap);
  return -1;
}

static void jws(Js *j) {
  while (j->s < j->end && (*j->s == ' ' || *j->s == '\t' || *j->s == '\n' || *j->s == '\r')) j->s++;
}

static long jpos(Js *j, const char *base) { return (long)(j->s - base) + 8; }

static int jexpect(Js *j, char c) {
  jws(j);
  if (j->s >= j->end) return jfail(j, "the JSON header ends early (expected '%c')", c);
  if (*j->s != c) return jfail(j, "bad JSON header: expected '%c', found '%c'", c, *j->s);
  j->s++;
  return 0;
}

static int hex4(Js *j, unsigned *out) {
  if (j->end - j->s < 4) return jfail(j, "bad JSON header: a \\u escape is cut short");
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    int h = rt_hexval(j->s[i]);
    if (h < 0) return jfail(j, "bad JSON header: bad \\u escape");
    v = v * 16 + (unsigned)h;
  }
  j->s += 4;
  *out = v;
  return 0;
}

// A string, decoded to UTF-8, malloc'ed into *out.
static int jstring(Js *j, char **out) {
  *out = NULL;
  if (jexpect(j, '"')) return -1;
  char *o = malloc((size_t)(j->end - j->s) + 1);
  if (!o) return jfail(j, "out of memory");
  size_t n = 0;
  for (;;) {
    if (j->s >= j->end) {
      free(o);
      return jfail(j, "bad JSON header: a string is not terminated");
    }
    unsigned char c = (unsigned char)*j->s++;
    if (c == '"') break;
    if (c < 0x20) {
      free(o);
      return jfail(j, "bad JSON header: a control character in a string");
    }
    if (c != '\\') {
      o[n++] = (char)c;
      continue;
    }
    if (j->s >= j->end) {
      free(o);
      return jfail(j, "bad JSON header: a string is not terminated");
    }
    char e = *j->s++;
    unsigned u;
    switch (e) {
    case '"': o[n++] = '"'; break;
    case '\\': o[n++] = '\\'; break;
    case '/': o[n++] = '/'; break;
    case 'b': o[n++] = '\b'; break;
    case 'f': o[n++] = '\f'; break;
    case 'n': o[n++] = '\n'; break;
    case 'r': o[n++] = '\r'; break;
    case 't': o[n++] = '\t'; break;
    case 'u':
      if (hex4(j, &u)) {
        free(o);
        return -1;
      }
      if (u >= 0xd800 && u < 0xdc00) {
        unsigned lo;
        if (j->end - j->s < 2 || j->s[0] != '\\' || j->s[1] != 'u') {
          free(o);
          return jfail(j, "bad JSON header: an unpaired surrogate in a \\u escape");
        }
        j->s += 2;
        if (hex4(j, &lo)) {
          free(o);
          return -1;
        }
        if (lo < 0xdc00 || lo >= 0xe000) {
          free(o);
          return jfail(j, "bad JSON header: an unpaired surrogate in a \\u escape");
        }
        u = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
      } else if (u >= 0xdc00 && u < 0xe000) {
        free(o);
        return jfail(j, "bad JSON header: an unpaired surrogate in a \\u escape");
      }
      if (u == 0) {
        free(o);
        return jfail(j, "bad JSON header: a NUL character in a string");
      }
      if (u < 0x80)
        o[n++] = (char)u;
      else if (u < 0x800) {
        o[n++] = (char)(0xc0 | u >> 6);
        o[n++] = (char)(0x80 | (u & 63));
      } else if (u < 0x10000) {
        o[n++] = (char)(0xe0 | u >> 12);
        o[n++] = (char)(0x80 | (u >> 6 & 63));
        o[n++] = (char)(0x80 | (u & 63));
      } else {
        o[n++] = (char)(0xf0 | u >> 18);
        o[n++] = (char)(0x80 | (u >> 12 & 63));
        o[n++] = (char)(0x80 | (u >> 6 & 63));
        o[n++] = (char)(0x80 | (u & 63));
      }
      break;
    default:
      free(o);
      return jfail(j, "bad JSON header: bad escape '\\%c' in a string", e);
    }
  }
  o[n] = 0;
  *out = o;
  return 0;
}

// A non-negative integer without sign, fraction, exponent or leading zeros.
static int juint(Js *j, uint64_t *out) {
  jws(j);
  if (j->s >= j->end || *j->s < '0' || *j->s > '9')
    return jfail(j, "bad JSON header: expected a non-negative integer");
  if (*j->s == '0' && j->s + 1 < j->end && j->s[1] >= '0' && j->s[1] <= '9')
    return jfail(j, "bad JSON header: a number with a leading zero");
  uint64_t v = 0;
  while (j->s < j->end && *j->s >= '0' && *j->s <= '9') {
    if (v > ((uint64_t)1 << 60)) return jfail(j, "bad JSON header: an integer is too large");
    v = v * 10 + (uint64_t)(*j->s++ - '0');
  }
  if (j->s < j->end && (*j->s == '.' || *j->s == 'e' || *j->s == 'E'))
    return jfail(j, "bad JSON header: expected an integer, found a fraction or exponent");
  *out = v;
  return 0;
}

// "[int, ...]" into v (at most max); *n gets the count.
static int jintarray(Js *j, uint64_t *v, int max, int *n, const char *what) {
  *n = 0;
  if (jexpect(j, '[')) return -1;
  jws(j);
  if (j->s < j->end && *j->s == ']') {
    j->s++;
    return 0;
  }
  for (;;) {
    if (*n == max) return jfail(j, "%s has more than %d entries", what, max);
    if (juint(j, &v[(*n)++])) return -1;
    jws(j);
    if (j->s < j->end && *j->s == ',') {
      j->s++;
      continue;
    }
    return jexpect(j, ']');
  }
}

// Calls item(j, key, ctx) for every "key": value of an object; item parses the value.
static int jobject(Js *j, int (*item)(Js *, char *, void *), void *ctx) {
  if (jexpect(j, '{')) return -1;
  jws(j);
  if (j->s < j->end && *j->s == '}') {
    j->s++;
    return 0;
  }
  for (;;) {
    char *key;
    if (jstring(j, &key)) return -1;
    if (jexpect(j, ':') || item(j, key, ctx)) {
      free(key);
      return -1;
    }
    free(key);
    jws(j);
    if (j->s < j->end && *j->s == ',') {
      j->s++;
      continue;
    }
    return jexpect(j, '}');
  }
}

static int meta_item(Js *j, char *key, void *ctx) {
  RtCk *c = ctx;
  for (int i = 0; i < c->nmeta; i++)
    if (!strcmp(c->mkey[i], key)) return jfail(j, "the metadata key '%s' appears twice", key);
  char *val;
  jws(j);
  if (j->s < j->end && *j->s != '"') return jfail(j, "the metadata value of '%s' is not a string", key);
  if (jstring(j, &val)) return -1;
  char **k2 = realloc(c->mkey, sizeof(char *) * (size_t)(c->nmeta + 1));
  if (k2) c->mkey = k2;
  char **v2 = realloc(c->mval, sizeof(char *) * (size_t)(c->nmeta + 1));
  if (v2) c->mval = v2;
  char *kd = strdup(key);
  if (!k2 || !v2 || !kd) {
    free(val);
    free(kd);
    return jfail(j, "out of memory");
  }
  c->mkey[c->nmeta] = kd;
  c->mval[c->nmeta++] = val;
  return 0;
}

typedef struct {
  CkEntry *e;
  int have_dtype, have_shape, have_off;
} TensorCtx;

static int tensor_item(Js *j, char *key, void *ctx) {
  TensorCtx *t = ctx;
  if (!strcmp(key, "dtype")) {
    char *d;
    if (t->have_dtype) return jfail(j, "tensor '%s': 'dtype' appears twice", t->e->name);
    jws(j);
    if (j->s < j->end && *j->s != '"') return jfail(j, "tensor '%s': 'dtype' is not a string", t->e->name);
    if (jstring(j, &d)) return -1;
    t->have_dtype = 1;
    int ok = !strcmp(d, "F32");
    if (!ok) jfail(j, "tensor '%s' has dtype '%.40s'; only F32 is supported", t->e->name, d);
    free(d);
    return ok ? 0 : -1;
  }
  if (!strcmp(key, "shape")) {
    uint64_t v[CK_MAX_RANK];
    int n;
    char what[160];
    snprintf(what, sizeof what, "tensor '%.100s': the shape", t->e->name);
    if (t->have_shape) return jfail(j, "tensor '%s': 'shape' appears twice", t->e->name);
    if (jintarray(j, v, CK_MAX_RANK, &n, what)) return -1;
    t->have_shape = 1;
    t->e->rank = n;
    for (int i = 0; i < n; i++) {
      if (v[i] > ((uint64_t)1 << 40)) return jfail(j, "tensor '%s': dimension %d is too large", t->e->name, i);
      t->e->dims[i] = (int64_t)v[i];
    }
    return 0;
  }
  if (!strcmp(key, "data_offsets")) {
    uint64_t v[2];
    int n;
    char what[160];
    snprintf(what, sizeof what, "tensor '%.100s': data_offsets", t->e->name);
    if (t->have_off) return jfail(j, "tensor '%s': 'data_offsets' appears twice", t->e->name);
    if (jintarray(j, v, 2, &n, what)) return -1;
    if (n != 2) return jfail(j, "tensor '%s': data_offsets must be [begin, end]", t->e->name);
    t->have_off = 1;
    t->e->begin = v[0];
    t->e->end = v[1];
    return 0;
  }
  return jfail(j, "tensor '%s' has an unknown field '%s'", t->e->name, key);
}

static int top_item(Js *j, char *key, void *ctx) {
  RtCk *c = ctx;
  if (!strcmp(key, "__metadata__")) {
    if (c->mkey || c->nmeta < 0) return jfail(j, "'__metadata__' appears twice");
    int r = jobject(j, meta_item, c);
    if (!r && !c->mkey) c->nmeta = -1;  // an empty one: remember we saw it
    return r;
  }
  if (c->n >= 100000) return jfail(j, "more than 100000 tensors");
  for (int i = 0; i < c->n; i++)
    if (!strcmp(c->t[i].name, key)) return jfail(j, "the tensor '%s' appears twice", key);
  if (!*key) return jfail(j, "a tensor has an empty name");
  CkEntry *t2 = realloc(c->t, sizeof *t2 * (size_t)(c->n + 1));
  if (!t2) return jfail(j, "out of memory");
  c->t = t2;
  CkEntry *e = &c->t[c->n];
  memset(e, 0, sizeof *e);
  if (!(e->name = strdup(key))) return jfail(j, "out of memory");
  c->n++;
  TensorCtx t = {e, 0, 0, 0};
  if (jobject(j, tensor_item, &t)) return -1;
  if (!t.have_dtype || !t.have_shape || !t.have_off)
    return jfail(j, "tensor '%s' lacks %s", key, !t.have_dtype ? "'dtype'" : !t.have_shape ? "'shape'" : "'data_offsets'");
  return 0;
}

void rt_ck_free(RtCk *c) {
  if (!c) return;
  for (int i = 0; i < c->n; i++) free(c->t[i].name);
  free(c->t);
  for (int i = 0; i < c->nmeta; i++) {
    free(c->mkey[i]);
    free(c->mval[i]);
  }
  free(c->mkey);
  free(c->mval);
  free(c->buf);
  free(c);
}

static int cmp_begin(const void *a, const void *b) {
  const CkEntry *x = *(CkEntry *const *)a, *y = *(CkEntry *const *)b;
  return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : x->end < y->end ? -1 : x->end > y->end;
}

// Reads and validates a whole checkpoint. NULL after an error message.
RtCk *rt_ck_load(const char *prog, const char *path) {
  RtCk *c = calloc(1, sizeof *c);
  if (!c) {
    rt_error(prog, "out of memory");
    return NULL;
  }
  FILE *f = fopen(path, "rb");
  if (!f) {
    rt_error(prog, "cannot open the checkpoint '%s': %s", path, strerror(errno));
    goto bad0;
  }
  struct stat st;
  if (fstat(fileno(f), &st) || !S_ISREG(st.st_mode)) {
    rt_error(prog, "%s: not a regular file", path);
    fclose(f);
    goto bad0;
  }
  c->size = (size_t)st.st_size;
  if (c->size < 8) {
    rt_error(prog, "%s: not a safetensors file: %zu bytes, too short for the 8-byte header length", path, c->size);
    fclose(f);
    goto bad0;
  }
  c->buf = malloc(c->size + 1);
  if (!c->buf) {
    rt_error(prog, "%s: out of memory reading %zu bytes", path, c->size);
    fclose(f);
    goto bad0;
  }
  size_t got = fread(c->buf, 1, c->size, f);
  fclose(f);
  if (got != c->size) {
    rt_error(prog, "%s: read error (%zu of %zu bytes)", path, got, c->size);
    goto bad0;
  }
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--) hlen = hlen << 8 | c->buf[i];
  if (hlen > CK_MAX_HEADER) {
    rt_error(prog, "%s: the header length %llu is larger than the limit of %llu bytes", path,
             (unsigned long long)hlen, (unsigned long long)CK_MAX_HEADER);
    goto bad0;
  }
  if (hlen < 2 || hlen > c->size - 8) {
    rt_error(prog, "%s: the header length %llu does not fit in the file (%zu bytes): truncated or not safetensors",
             path, (unsigned long long)hlen, c->size);
    goto bad0;
  }
  const char *h = (const char *)c->buf + 8;
  Js j = {h, h + hlen, prog, path, {0}};
  jws(&j);
  if (jobject(&j, top_item, c) == 0) {
    jws(&j);
    if (j.s != j.end) jfail(&j, "bad JSON header: unexpected '%c' after the top-level object", *j.s);
  }
  if (j.err[0]) {
    rt_error(prog, "%s: %s (header byte %ld)", path, j.err, jpos(&j, h) - 8);
    goto bad0;
  }
  if (c->nmeta < 0) c->nmeta = 0;
  c->data = c->buf + 8 + hlen;
  c->data_size = c->size - 8 - hlen;
  // Shapes against offsets, then the coverage of the data section.
  CkEntry **order = malloc(sizeof *order * (size_t)(c->n + 1));
  if (!order) {
    rt_error(prog, "out of memory");
    goto bad0;
  }
  for (int i = 0; i < c->n; i++) {
    CkEntry *e = &c->t[i];
    uint64_t numel = 1;
    for (int d = 0; d < e->rank; d++) {
      numel *= (uint64_t)e->dims[d];
      if (numel > ((uint64_t)1 << 40)) {
        rt_error(prog, "%s: tensor '%s' is too large", path, e->name);
        free(order);
        goto bad0;
      }
    }
    if (e->end < e->begin) {
      rt_error(prog, "%s: tensor '%s': data_offsets [%llu, %llu] end before they begin", path, e->name,
               (unsigned long long)e->begin, (unsigned long long)e->end);
      free(order);
      goto bad0;
    }
    if (e->end - e->begin != numel * 4) {
      rt_error(prog, "%s: tensor '%s': data_offsets [%llu, %llu] hold %llu bytes, but the shape needs %llu (F32)",
               path, e->name, (unsigned long long)e->begin, (unsigned long long)e->end,
               (unsigned long long)(e->end - e->begin), (unsigned long long)(numel * 4));
      free(order);
      goto bad0;
    }
    if (e->end > c->data_size) {
      rt_error(prog, "%s: tensor '%s': data_offsets [%llu, %llu] go past the end of the data (%llu bytes): truncated?",
               path, e->name, (unsigned long long)e->begin, (unsigned long long)e->end,
               (unsigned long long)c->data_size);
      free(order);
      goto bad0;
    }
    order[i] = e;
  }
  qsort(order, (size_t)c->n, sizeof *order, cmp_begin);
  uint64_t at = 0;
  for (int i = 0; i < c->n; i++) {
    CkEntry *e = order[i];
    if (e->begin < at) {
      rt_error(prog, "%s: tensor '%s' [%llu, %llu] overlaps tensor '%s'", path, e->name,
               (unsigned long long)e->begin, (unsigned long long)e->end, order[i - 1]->name);
      free(order);
      goto bad0;
    }
    if (e->begin > at) {
      rt_error(prog, "%s: a gap in the data: bytes %llu to %llu belong to no tensor", path,
               (unsigned long long)at, (unsigned long long)e->begin);
      free(order);
      goto bad0;
    }
    at = e->end;
  }
  free(order);
  if (at != c->data_size) {
    rt_error(prog, "%s: %llu trailing bytes after the last tensor", path, (unsigned long long)(c->data_size - at));
    goto bad0;
  }
  // The checksum, if there is one: over the tensors in the file's order of offsets, which is the data section.
  for (int i = 0; i < c->nmeta; i++)
    if (!strcmp(c->mkey[i], "checksum")) {
      const char *v = c->mval[i];
      if (strncmp(v, "fnv1a64:", 8) || strlen(v) != 24 || strspn(v + 8, "0123456789abcdef") != 16) {
        rt_error(prog, "%s: the checksum '%.40s' is not 'fnv1a64:' and 16 hex digits", path, v);
        goto bad0;
      }
      unsigned long long want = strtoull(v + 8, NULL, 16);
      uint64_t have = rt_ck_fnv1a(c->data, (size_t)c->data_size, FNV_INIT);
      if (have != want) {
        rt_error(prog, "%s: checksum mismatch: the data hashes to fnv1a64:%016llx, the header says %s; the file is corrupt",
                 path, (unsigned long long)have, v);
        goto bad0;
      }
    }
  return c;
bad0:
  rt_ck_free(c);
  return NULL;
}

const char *rt_ck_meta(const RtCk *c, const char *key) {
  for (int i = 0; i < c->nmeta; i++)
    if (!strcmp(c->mkey[i], key)) return c->mval[i];
  return NULL;
}

int rt_ck_count(const RtCk *c) { return c->n; }

// Tensor i: its name, rank and dims.
const char *rt_ck_tensor(const RtCk *c, int i, int *rank, const int64_t **dims) {
  *rank = c->t[i].rank;
  *dims = c->t[i].dims;
  return c->t[i].name;
}

// The index of the tensor `name`, or -1.
int rt_ck_find(const RtCk *c, const char *name) {
  for (int i = 0; i < c->n; i++)
    if (!strcmp(c->t[i].name, name)) return i;
  return -1;
}

// Copies tensor i's data (numel floats, already validated) to dst.
void rt_ck_read(const RtCk *c, int i, float *dst) {
  memcpy(dst, c->data + c->t[i].begin, (size_t)(c->t[i].end - c->t[i].begin));
}

// "[a,b,c]" into buf.
const char *rt_ck_shape_str(int rank, const int64_t *dims, char *buf, size_t cap) {
  size_t k = (size_t)snprintf(buf, cap, "[");
  for (int d = 0; d < rank && k < cap; d++) k += (size_t)snprintf(buf + k, cap - k, d ? ",%lld" : "%lld", (long long)dims[d]);
  if (k < cap) snprintf(buf + k, cap - k, "]");
  return buf;
}

// Checks, before training, that `path` can be saved to: creates and removes
// the temporary file rt_ck_save would use. Returns 0, or 1 after an error.
int rt_ck_check_writable(const char *prog, const char *path) {
  size_t pl = strlen(path);
  char *tmp = malloc(pl + 32);
  if (!tmp) {
    rt_error(prog, "out of memory");
    return 1;
  }
  snprintf(tmp, pl + 32, "%s.tmp.%ld", path, (long)getpid());
  int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0644);
  if (fd < 0) {
    rt_error(prog, "cannot write the checkpoint '%s': %s", tmp, strerror(errno));
    free(tmp);
    return 1;
  }
  close(fd);
  unlink(tmp);
  free(tmp);
  struct stat st;
  if (!stat(path, &st) && S_ISDIR(st.st_mode)) {
    rt_error(prog, "cannot write the checkpoint '%s': it is a directory", path);
    return 1;
  }
  return 0;
}
