// data.c - data sets: IDX (raw or gzip), CSV and text loading, validation,
// batching.
//
// A data set keeps its inputs as loaded: IDX images as one uint8 slab, CSV
// features as one float slab, a text as its token ids. Normalisation happens
// while a batch is gathered:
//   IDX: x = (u8 / 255 - mean) / std     (through a 256-entry table, or, where
//        the CPU has AVX-512 and fma(u8, scale, shift) gives every entry of
//        the table, that formula on 16 bytes at a time: the same floats)
//   CSV: x = (v - mean) / std
// Targets are int32 class ids [n] or float values [n, width]. A text's sample
// s is the ids [s*T, s*T + T) as the input and [s*T + 1, s*T + T + 1) as the
// target, both int32 [n, T] (the input buffer holds them as int32 too).
//
// Every error names the file (and for CSV the line), says what was expected and
// what was found, and makes rt_data_load return NULL.
#include "rt.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_X86_AVX512 1
#endif

typedef struct RtData {
  int64_t count;     // samples
  int64_t dim;       // input floats per sample
  int classify;      // 1: y is int32 [count]; 0: y is float [count, width]
  int64_t width;     // classes (classify) or target floats per sample
  uint8_t *u8;       // IDX inputs [count, dim], or NULL
  float *f32;        // CSV inputs [count, dim], or NULL
  int32_t *labels;   // [count] if classify
  float *targets;    // [count, width] if !classify
  float lut[256];    // IDX: normalised value of each byte
  double scale, shift;  // IDX: lut[v] is (float)fma(v, scale, shift) for every byte v, bit for
  int affine;           // bit, as set_lut checked: bytes_affine converts 16 bytes at once
  float mean, inv_std;
  int32_t *ids;      // text: the token ids of the whole text [nids], or NULL
  int64_t nids, T;   // text: ids, and steps per sequence (count = (nids - 1) / T)
  int nvocab;        // text with vocab="file": the distinct bytes, by id; 0 for bytes
  unsigned char vocab[256];
} RtData;

void rt_data_free(RtData *d) {
  if (!d) return;
  free(d->u8);
  free(d->f32);
  free(d->labels);
  free(d->targets);
  free(d->ids);
  free(d);
}

int64_t rt_data_count(const RtData *d) { return d->count; }

#ifdef HAVE_X86_AVX512
// lut[src[j]] for j < n, given that the table is fma(v, scale, shift) rounded
// to float for every byte v (set_lut checks): 16 bytes per step, through
// doubles, where the table costs a load per byte.
__attribute__((target("avx512f"))) static void bytes_affine(const RtData *d, const uint8_t *src, float *dst,
                                                            int64_t n) {
  __m512d a = _mm512_set1_pd(d->scale), b = _mm512_set1_pd(d->shift);
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) {
    __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(const void *)(src + j)));
    __m512d lo = _mm512_cvtepi32_pd(_mm512_castsi512_si256(v));
    __m512d hi = _mm512_cvtepi32_pd(_mm512_extracti64x4_epi64(v, 1));
    _mm256_storeu_ps(dst + j, _mm512_cvtpd_ps(_mm512_fmadd_pd(lo, a, b)));
    _mm256_storeu_ps(dst + j + 8, _mm512_cvtpd_ps(_mm512_fmadd_pd(hi, a, b)));
  }
  for (; j < n; j++) dst[j] = d->lut[src[j]];
}
#endif

// x: float [n, dim]; y: int32 [n] or float [n, width], or NULL for none. idx:
// sample numbers.
void rt_data_batch(const RtData *d, const int64_t *idx, int64_t n, float *x, void *y) {
  if (d->ids) {
    for (int64_t r = 0; r < n; r++) {
      const int32_t *src = d->ids + idx[r] * d->T;
      memcpy((int32_t *)(void *)x + r * d->T, src, (size_t)d->T * sizeof(int32_t));
      if (y) memcpy((int32_t *)y + r * d->T, src + 1, (size_t)d->T * sizeof(int32_t));
    }
    return;
  }
  // The rows are at random places: ask for all of them (and their labels) at
  // once, so that their cache misses overlap instead of costing one memory
  // latency per row inside the copy loop below.
  if (d->u8)
    for (int64_t r = 0; r < n; r++) {
      const uint8_t *src = d->u8 + idx[r] * d->dim;
      for (int64_t j = 0; j < d->dim; j += 64) __builtin_prefetch(src + j);
      if (d->classify && y) __builtin_prefetch(d->labels + idx[r]);
    }
  for (int64_t r = 0; r < n; r++) {
    int64_t s = idx[r];
    float *xr = x + r * d->dim;
    if (d->u8) {
      const uint8_t *src = d->u8 + s * d->dim;
#ifdef HAVE_X86_AVX512
      if (d->affine)
        bytes_affine(d, src, xr, d->dim);
      else
#endif
        for (int64_t j = 0; j < d->dim; j++) xr[j] = d->lut[src[j]];
    } else {
      const float *src = d->f32 + s * d->dim;
      for (int64_t j = 0; j < d->dim; j++) xr[j] = (src[j] - d->mean) * d->inv_std;
    }
    if (!y)
      continue;
    else if (d->classify)
      ((int32_t *)y)[r] = d->labels[s];
    else
      memcpy((float *)y + r * d->width, d->targets + s * d->width, (size_t)d->width * sizeof(float));
  }
}

// rt_data_batch with the rows split between the pool's threads (one
// contiguous block each): the gather of a random batch is mostly cache and
// TLB misses, which two cores wait out side by side. Every row is written by
// exactly one task, so the batch is the same for any thread count.
typedef struct {
  const RtData *d;
  const int64_t *idx;
  int64_t n, parts;  // rows; tasks
  int64_t stride;    // rt_data_batch_copies: floats from one copy of x to the next
  float *x;
  void *y;
} BatchJob;

static void batch_part(void *ctx, int64_t t, int64_t tid) {
  const BatchJob *j = ctx;
  int64_t r0 = j->n * t / j->parts, r1 = j->n * (t + 1) / j->parts;
  const RtData *d = j->d;
  int64_t xw = d->dim, yw = d->ids ? d->T : d->classify ? 1 : d->width;  // a text's dim is T
  size_t ysz = d->ids || d->classify ? sizeof(int32_t) : sizeof(float);
  rt_data_batch(d, j->idx + r0, r1 - r0, (float *)(void *)((char *)j->x + (size_t)(r0 * xw) * sizeof(float)),
                (char *)j->y + (size_t)(r0 * yw) * ysz);
}

// rt_data_batch into `copies` copies of x, `stride` floats apart: task t
// writes copy t whole, so that each thread of a step whose kernels read the
// whole batch reads a copy it wrote itself (usually: the pool runs task t on
// thread t first), not lines the other cores hold. Every copy is complete
// whichever thread writes it.
static void batch_copy(void *ctx, int64_t t, int64_t tid) {
  const BatchJob *j = ctx;
  rt_data_batch(j->d, j->idx, j->n, j->x + t * j->stride, t == 0 ? j->y : NULL);
}

void rt_data_batch_copies(const RtData *d, const int64_t *idx, int64_t n, float *x, int64_t stride, int64_t copies,
                          void *y) {
  BatchJob j = {d, idx, n, copies, stride, x, y};
  fnn_parallel(batch_copy, &j, copies);
}

void rt_data_batch_parallel(const RtData *d, const int64_t *idx, int64_t n, float *x, void *y) {
  BatchJob j = {d, idx, n, fnn_threads() < n ? fnn_threads() : n, 0, x, y};
  if (j.parts <= 1) {
    rt_data_batch(d, idx, n, x, y);
    return;
  }
  fnn_parallel(batch_part, &j, j.parts);
}

//
// Files: paths resolve against the data directory; PATH.gz stands in for a
// missing PATH. gzopen reads raw and gzip files alike.
//
static char *join_path(const char *dir, const char *file) {
  size_t a = strlen(dir), b = strlen(file);
  char *p = malloc(a + b + 5);  // room for "/" and ".gz"
  if (!p) return NULL;
  if (file[0] == '/' || !a) {
    memcpy(p, file, b + 1);
  } else {
    memcpy(p, dir, a);
    size_t k = a;
    if (p[k - 1] != '/') p[k++] = '/';
    memcpy(p + k, file, b + 1);
  }
  return p;
}

static int is_regular(const char *path, struct stat *st) { return stat(path, st) == 0 && S_ISREG(st->st_mode); }

// Opens DIR/FILE (or DIR/FILE.gz). On success *path is the file actually
// opened (malloc'd) and *raw_size its size on disk.
static gzFile open_data(const char *prog, const char *dir, const char *file, char **path, int64_t *disk_size) {
  char *p = join_path(dir, file);
  if (!p) {
    rt_error(prog, "out of memory");
    return NULL;
  }
  struct stat st;
  if (!is_regular(p, &st)) {
    size_t n = strlen(p);
    int had_errno = errno;
    memcpy(p + n, ".gz", 4);
    if (!is_regular(p, &st)) {
      p[n] = 0;
      if (stat(p, &st) == 0 && S_ISDIR(st.st_mode))
        rt_error(prog, "%s: expected a data file, found a directory", p);
      else
        rt_error(prog, "%s: cannot open: %s (and there is no %s.gz)", p,
                 had_errno == ENOENT ? "no such file" : strerror(had_errno), p);
      if (*dir) rt_hint("data files resolve against --data DIR (here '%s'); 'make data' installs the data sets into ./data", dir);
      free(p);
      return NULL;
    }
  }
  gzFile gz = gzopen(p, "rb");
  if (!gz) {
    rt_error(prog, "%s: cannot open: %s", p, strerror(errno));
    free(p);
    return NULL;
  }
  gzbuffer(gz, 1 << 17);
  *path = p;
  *disk_size = (int64_t)st.st_size;
  return gz;
}

// Reads up to n bytes; returns the count read, or -1 after an error message.
static int64_t read_bytes(const char *prog, const char *path, gzFile gz, void *buf, int64_t n) {
  int64_t got = 0;
  while (got < n) {
    int64_t chunk = n - got > (1 << 30) ? (1 << 30) : n - got;
    int r = gzread(gz, (char *)buf + got, (unsigned)chunk);
    if (r < 0) {
      int code;
      const char *msg = gzerror(gz, &code);
      // zlib's messages start with the path already.
      rt_error(prog, "%s: cannot read: %s", path,
               code == Z_ERRNO ? strerror(errno) : !strncmp(msg, path, strlen(path)) ? msg + strlen(path) + (msg[strlen(path)] == ':' ? 2 : 0) : msg);
      return -1;
    }
    got += r;
    if (r == 0 || r < chunk) {
      // Short read: end of file, or an incomplete gzip stream (zlib reports
      // "unexpected end of file"; it counts as truncation, found = got).
      int code;
      gzerror(gz, &code);
      if (code != Z_OK && code != Z_BUF_ERROR) {
        rt_error(prog, "%s: cannot read: %s", path, gzerror(gz, &code));
        return -1;
      }
      if (r == 0) break;
    }
  }
  return got;
}

// Bytes left after the expected end (0 if none); -1 after an error. A gzip
// stream must also end properly (its trailer holds the CRC and the length).
static int64_t count_rest(const char *prog, const char *path, gzFile gz) {
  char buf[65536];
  int64_t extra = 0;
  for (;;) {
    int64_t r = read_bytes(prog, path, gz, buf, (int64_t)sizeof buf);
    if (r < 0) return -1;
    extra += r;
    if (r < (int64_t)sizeof buf) break;
  }
  int code;
  gzerror(gz, &code);
  if (!gzdirect(gz) && code == Z_BUF_ERROR) {
    rt_error(prog, "%s: the gzip stream is truncated (it ends before its trailer)", path);
    return -1;
  }
  return extra;
}

static uint32_t be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static const char *plural(uint64_t n, const char *one, const char *many) { return n == 1 ? one : many; }

// An IDX header: magic then `ndims` big-endian uint32 sizes.
static int read_idx_header(const char *prog, const char *path, gzFile gz, uint32_t want_magic, const char *what,
                           uint32_t *dims, int ndims) {
  uint8_t h[16];
  int64_t want = 4 + 4 * (int64_t)ndims;
  int64_t got = read_bytes(prog, path, gz, h, want);
  if (got < 0) return -1;
  if (got < 4) {
    rt_error(prog, "%s: expected an IDX %s file (magic %u), found a file of %lld bytes", path, what, want_magic,
             (long long)got);
    return -1;
  }
  uint32_t magic = be32(h);
  if (magic != want_magic) {
    const char *hint = "";
    if (h[0] == 0x1f && h[1] == 0x8b) hint = " (a damaged gzip file?)";
    else if (magic == 2049 || magic == 2051) hint = magic == 2049 ? " (a label file)" : " (an image file)";
    rt_error(prog, "%s: expected IDX %s magic %u (0x%08x), found %u (0x%08x)%s", path, what, want_magic, want_magic,
             magic, magic, hint);
    return -1;
  }
  if (got < want) {
    rt_error(prog, "%s: truncated IDX header: expected %lld bytes, found %lld", path, (long long)want,
             (long long)got);
    return -1;
  }
  for (int i = 0; i < ndims; i++) dims[i] = be32(h + 4 + 4 * i);
  return 0;
}

// A raw file's size on disk must be exactly header + payload: checked before
// anything is allocated, so a damaged header cannot ask for gigabytes.
static int check_raw_size(const char *prog, const char *path, gzFile gz, int64_t header, int64_t disk_size,
                          int64_t payload, const char *what) {
  if (!gzdirect(gz) || disk_size == header + payload) return 0;
  rt_error(prog, "%s: %s: expected %lld bytes (%lld header + %lld data for %s), found %lld", path,
           disk_size < header + payload ? "truncated" : "trailing bytes", (long long)(header + payload),
           (long long)header, (long long)payload, what, (long long)disk_size);
  return -1;
}

// Reads exactly `payload` bytes after the header into a new buffer and checks
// that nothing follows; NULL after an error. A gzip file's size is only known
// by reading it, so its buffer grows with the data rather than trusting the
// header.
static uint8_t *read_payload(const char *prog, const char *path, gzFile gz, int64_t header, int64_t disk_size,
                             int64_t payload, const char *what) {
  if (check_raw_size(prog, path, gz, header, disk_size, payload, what)) return NULL;
  if ((uint64_t)payload >= SIZE_MAX / 2) {
    rt_error(prog, "%s: %s is too large for this machine", path, what);
    return NULL;
  }
  int64_t cap = gzdirect(gz) || payload < (1 << 26) ? payload : (1 << 26), got = 0;
  uint8_t *buf = malloc(cap ? (size_t)cap : 1);
  rt_advise_huge(buf, cap);
  for (;;) {
    if (!buf) {
      rt_error(prog, "%s: cannot allocate %.1f MB for %s", path, (double)cap / 1048576.0, what);
      return NULL;
    }
    int64_t r = read_bytes(prog, path, gz, buf + got, cap - got);
    if (r < 0) {
      free(buf);
      return NULL;
    }
    got += r;
    if (got < cap || cap == payload) break;
    cap = cap > payload / 2 ? payload : 2 * cap;
    uint8_t *nb = realloc(buf, (size_t)cap);
    if (!nb) free(buf);
    buf = nb;
    rt_advise_huge(buf, cap);
  }
  if (got < payload) {
    rt_error(prog, "%s: truncated: expected %lld bytes of data for %s, found %lld", path, (long long)payload, what,
             (long long)got);
    free(buf);
    return NULL;
  }
  int64_t extra = count_rest(prog, path, gz);
  if (extra) {
    if (extra > 0)
      rt_error(prog, "%s: trailing bytes: expected %lld bytes of data for %s, found %lld more", path,
               (long long)payload, what, (long long)extra);
    free(buf);
    return NULL;
  }
  return buf;
}

// A per-sample shape as "[1,28,28]".
static void shape_str(char *buf, size_t cap, int rank, const int64_t *d) {
  size_t k = 0;
  k += (size_t)snprintf(buf + k, cap - k, "[");
  for (int i = 0; i < rank && k < cap; i++) k += (size_t)snprintf(buf + k, cap - k, i ? ",%lld" : "%lld", (long long)d[i]);
  if (k < cap) snprintf(buf + k, cap - k, "]");
}

// Whether IDX images of rows x cols fit the model input: equal after dropping
// leading 1s ([1,28,28] takes 28x28), or the model takes a flat vector of
// rows*cols floats ([784] takes 28x28).
static int dims_match(int rank, const int64_t *d, uint32_t rows, uint32_t cols) {
  int k = 0;
  while (k < rank - 1 && d[k] == 1) k++;
  if (rank - k == 2 && d[k] == rows && d[k + 1] == cols) return 1;
  if (rank - k == 1 && d[k] == (int64_t)rows * cols) return 1;
  return 0;
}

static RtData *load_idx(const char *prog, const char *dir, const char *fimg, const char *flab, int in_rank,
                        const int64_t *in_dims, int64_t in_numel, int classify, int64_t ncls) {
  char *ipath = NULL, *lpath = NULL;
  gzFile gi = NULL, gl = NULL;
  RtData *d = calloc(1, sizeof *d);
  if (!d) {
    rt_error(prog, "out of memory");
    return NULL;
  }
  d->classify = 1;
  d->width = ncls;
  d->dim = in_numel;
  int64_t disk;
  uint32_t idims[3], ldims[1];
  if (!(gi = open_data(prog, dir, fimg, &ipath, &disk))) goto fail;
  if (read_idx_header(prog, ipath, gi, 2051, "image", idims, 3)) goto fail;
  char want[128];
  shape_str(want, sizeof want, in_rank, in_dims);
  if (!dims_match(in_rank, in_dims, idims[1], idims[2])) {
    rt_error(prog, "%s: the images are %ux%u, but the model input is %s per sample", ipath, idims[1], idims[2], want);
    goto fail;
  }
  if (!classify && flab) {
    rt_error(prog, "%s: IDX data has class labels, but the model's target is %lld values per sample", ipath,
             (long long)ncls);
    goto fail;
  }
  d->count = idims[0];
  int64_t payload = (int64_t)idims[0] * idims[1] * idims[2];  // < 2^96 cannot happen: dims match the model
  char what[96];
  snprintf(what, sizeof what, "%u %s of %ux%u", idims[0], plural(idims[0], "image", "images"), idims[1], idims[2]);
  if (!(d->u8 = read_payload(prog, ipath, gi, 16, disk, payload, what))) goto fail;
  gzclose(gi);
  gi = NULL;
  if (!flab) {
    // --predict: images without labels.
    if (!(d->labels = calloc(d->count ? (size_t)d->count : 1, sizeof(int32_t)))) {
      rt_error(prog, "out of memory");
      goto fail;
    }
    if (d->count == 0) {
      rt_error(prog, "%s: expected at least one image, found none", ipath);
      goto fail;
    }
    free(ipath);
    return d;
  }

  if (!(gl = open_data(prog, dir, flab, &lpath, &disk))) goto fail;
  if (read_idx_header(prog, lpath, gl, 2049, "label", ldims, 1)) goto fail;
  if (ldims[0] != idims[0]) {
    rt_error(prog, "%s: expected %u labels to match the images, found %u", lpath, idims[0], ldims[0]);
    goto fail;
  }
  snprintf(what, sizeof what, "%u %s", ldims[0], plural(ldims[0], "label", "labels"));
  uint8_t *lab = read_payload(prog, lpath, gl, 8, disk, ldims[0], what);
  if (!lab) goto fail;
  if (!(d->labels = malloc(sizeof(int32_t) * (ldims[0] ? ldims[0] : 1)))) {
    free(lab);
    rt_error(prog, "out of memory");
    goto fail;
  }
  for (uint32_t i = 0; i < ldims[0]; i++) {
    if (lab[i] >= ncls) {
      rt_error(prog, "%s: label %u of sample %u is out of range: the model has %lld classes (0..%lld)", lpath, lab[i],
               i, (long long)ncls, (long long)ncls - 1);
      free(lab);
      goto fail;
    }
    d->labels[i] = lab[i];
  }
  free(lab);
  if (d->count == 0) {
    rt_error(prog, "%s: expected at least one image, found none", ipath);
    goto fail;
  }
  gzclose(gl);
  free(ipath);
  free(lpath);
  return d;
fail:
  if (gi) gzclose(gi);
  if (gl) gzclose(gl);
  free(ipath);
  free(lpath);
  rt_data_free(d);
  return NULL;
}

//
// CSV: one sample per line, numbers separated by commas. An optional header is
// a first line with a field that is not a number. Classification: the features,
// then one integer class column; regression: the features, then `width` target
// columns. Blank lines are skipped; CRLF line ends are fine.
//
static char *read_all(const char *prog, const char *path, gzFile gz, int64_t *len) {
  size_t cap = 1 << 16, n = 0;
  char *buf = malloc(cap + 1);
  for (;;) {
    if (!buf) {
      rt_error(prog, "%s: out of memory", path);
      return NULL;
    }
    if (n == cap) {
      if (cap > (SIZE_MAX - 1) / 2) {
        free(buf);
        rt_error(prog, "%s: file too large", path);
        return NULL;
      }
      cap *= 2;
      char *nb = realloc(buf, cap + 1);
      if (!nb) free(buf);
      buf = nb;
      continue;
    }
    int64_t r = read_bytes(prog, path, gz, buf + n, (int64_t)(cap - n));
    if (r < 0) {
      free(buf);
      return NULL;
    }
    n += (size_t)r;
    if (n < cap) break;
  }
  buf[n] = 0;
  *len = (int64_t)n;
  return buf;
}

// Appends to a growable float array.
static int push_floats(float **a, int64_t *len, int64_t *cap, const float *v, int64_t n) {
  if (*len + n > *cap) {
    int64_t nc = *cap ? *cap * 2 : 4096;
    while (nc < *len + n) nc *= 2;
    float *na = realloc(*a, (size_t)nc * sizeof(float));
    if (!na) return -1;
    *a = na;
    *cap = nc;
  }
  memcpy(*a + *len, v, (size_t)n * sizeof(float));
  *len += n;
  return 0;
}

static int is_blank(const char *s, const char *e) {
  for (; s < e; s++)
    if (*s != ' ' && *s != '\t' && *s != '\r') return 0;
  return 1;
}

// Parses one field [s, e) as a finite number.
static int parse_field(const char *s, const char *e, double *v) {
  while (s < e && (*s == ' ' || *s == '\t')) s++;
  while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r')) e--;
  if (s == e || e - s > 300) return -1;
  char tmp[320];
  memcpy(tmp, s, (size_t)(e - s));
  tmp[e - s] = 0;
  char *end;
  double x = strtod(tmp, &end);
  if (*end || !isfinite(x)) return -1;
  *v = x;
  return 0;
}

static void set_lut(RtData *d, double mean, double std) {
  d->mean = (float)mean;
  d->inv_std = (float)(1.0 / std);
  for (int i = 0; i < 256; i++) d->lut[i] = (float)(((double)i / 255.0 - mean) / std);
  // The table is the definition; the vector path is used only where it gives
  // the same bits for each of the 256 bytes (run on them and compared), so
  // that no result depends on it.
  d->scale = 1.0 / (255.0 * std);
  d->shift = -mean / std;
  d->affine = 0;
#ifdef HAVE_X86_AVX512
  if (__builtin_cpu_supports("avx512f")) {
    uint8_t all[256];
    float got[256];
    for (int i = 0; i < 256; i++) all[i] = (uint8_t)i;
    bytes_affine(d, all, got, 256);
    d->affine = !memcmp(got, d->lut, sizeof got);
  }
#endif
}

int rt_data_bytes_vectorized(const RtData *d) { return d->affine; }

// One CSV field [s, e) without surrounding blanks and double quotes (a
// header's names may be quoted).
static void trim_field(const char **s, const char **e) {
  while (*s < *e && (**s == ' ' || **s == '\t')) (*s)++;
  while (*e > *s && ((*e)[-1] == ' ' || (*e)[-1] == '\t' || (*e)[-1] == '\r')) (*e)--;
  if (*e - *s >= 2 && **s == '"' && (*e)[-1] == '"') (*s)++, (*e)--;
}

// The header's column called `name` (0-based), or -1 after an error that
// lists the columns there are.
static int64_t find_column(const char *prog, const char *path, int64_t lineno, const char *line, const char *eol,
                           const char *name) {
  int64_t c = 0;
  for (const char *f = line;; c++) {
    const char *fe = f;
    while (fe < eol && *fe != ',') fe++;
    const char *a = f, *b = fe;
    trim_field(&a, &b);
    if ((size_t)(b - a) == strlen(name) && !strncmp(a, name, (size_t)(b - a))) return c;
    if (fe == eol) break;
    f = fe + 1;
  }
  int w = eol - line > 200 ? 200 : (int)(eol - line);
  rt_error(prog, "%s:%lld: the header has no column '%s'; its columns are: %.*s%s", path, (long long)lineno, name, w,
           line, eol - line > 200 ? "..." : "");
  return -1;
}

// A CSV data set. Each row holds the input's in_numel features and the
// target: one class column (classify) or `width` value columns. Without a
// column name the target columns come last; with one (`label=` or `target=` in
// the model), the file needs a header, the target is the named column
// (width 1) and every other column is a feature, in file order.
// inputs_only (--predict): rows may also hold just the features; the target
// columns, if there, are read and ignored.
static RtData *load_csv(const char *prog, const char *dir, const char *file, int64_t in_numel, int classify,
                        int64_t width, double mean, double std, const char *column, int inputs_only) {
  char *path = NULL, *text = NULL;
  int64_t disk, len;
  RtData *d = calloc(1, sizeof *d);
  double *vals = NULL;
  float *row = NULL;
  int64_t xlen = 0, xcap = 0, ylen = 0, ycap = 0;
  float *ys = NULL;
  if (!d) {
    rt_error(prog, "out of memory");
    return NULL;
  }
  int named = column && *column;
  int64_t tcount = classify || named ? 1 : width;  // target columns in the file
  d->dim = in_numel;
  d->classify = classify;
  d->width = width;
  d->mean = (float)mean;
  d->inv_std = (float)(1.0 / std);
  gzFile gz = open_data(prog, dir, file, &path, &disk);
  if (!gz) goto fail;
  text = read_all(prog, path, gz, &len);
  gzclose(gz);
  if (!text) goto fail;
  if ((int64_t)strlen(text) != len) {
    rt_error(prog, "%s: expected a text (CSV) file, found NUL bytes", path);
    goto fail;
  }
  int64_t ncols = in_numel + tcount;  // columns of a full row
  int64_t tcol = in_numel;            // the first target column
  int64_t want = ncols;               // columns every row must have (inputs_only: fixed by the first row)
  row = malloc((size_t)(in_numel + width) * sizeof(float));
  vals = malloc((size_t)(ncols + 1) * sizeof(double));
  if (!row || !vals) {
    rt_error(prog, "out of memory");
    goto fail;
  }
  char cols_desc[200];
  if (named)
    snprintf(cols_desc, sizeof cols_desc, "%lld features + the %s column '%s'", (long long)in_numel,
             classify ? "class" : "target", column);
  else if (classify)
    snprintf(cols_desc, sizeof cols_desc, "%lld features + 1 class", (long long)in_numel);
  else
    snprintf(cols_desc, sizeof cols_desc, "%lld features + %lld %s", (long long)in_numel, (long long)width,
             plural((uint64_t)width, "target", "targets"));
  int64_t lineno = 0;
  int seen_content = 0, seen_row = 0;
  for (const char *p = text; *p;) {
    const char *eol = strchr(p, '\n');
    if (!eol) eol = p + strlen(p);
    lineno++;
    const char *line = p;
    p = *eol ? eol + 1 : eol;
    if (is_blank(line, eol)) continue;
    if (!seen_content) {
      // The first line is a header if any of its fields is not a number.
      seen_content = 1;
      int header = 0;
      for (const char *f = line; !header;) {
        const char *fe = f;
        while (fe < eol && *fe != ',') fe++;
        double v;
        header = parse_field(f, fe, &v) != 0;
        if (fe == eol) break;
        f = fe + 1;
      }
      if (named && !header && inputs_only) {
        tcol = -1;  // --predict: without names, only the features can be told apart
        want = in_numel;
      } else if (named && !header) {
        rt_error(prog, "%s:%lld: expected a header line naming the columns (the model picks the %s column '%s' by name), found numbers",
                 path, (long long)lineno, classify ? "class" : "target", column);
        goto fail;
      }
      if (named && header) {
        int64_t c = find_column(prog, path, lineno, line, eol, column);
        if (c < 0) {
          if (!inputs_only) goto fail;
          tcol = -1;  // --predict: a file of features only
          want = in_numel;
        } else {
          tcol = c;
        }
      }
      if (header) continue;
    }
    int64_t c = 0;
    for (const char *f = line;; c++) {
      const char *fe = f;
      while (fe < eol && *fe != ',') fe++;
      double v;
      if (parse_field(f, fe, &v)) {
        int w = (int)(fe - f) > 40 ? 40 : (int)(fe - f);
        if (is_blank(f, fe))
          rt_error(prog, "%s:%lld: column %lld is empty, expected a number", path, (long long)lineno,
                   (long long)c + 1);
        else
          rt_error(prog, "%s:%lld: column %lld: expected a number, found '%.*s'", path, (long long)lineno,
                   (long long)c + 1, w, f);
        goto fail;
      }
      if (c <= ncols) vals[c] = v;
      if (fe == eol) {
        c++;
        break;
      }
      f = fe + 1;
    }
    if (inputs_only && !seen_row && c == in_numel && !named) want = in_numel;  // features only
    seen_row = 1;
    if (c != want) {
      if (want == ncols)
        rt_error(prog, "%s:%lld: expected %lld columns (%s), found %lld", path, (long long)lineno, (long long)ncols,
                 cols_desc, (long long)c);
      else
        rt_error(prog, "%s:%lld: expected %lld columns (the features), found %lld", path, (long long)lineno,
                 (long long)want, (long long)c);
      goto fail;
    }
    // Split the fields into features and targets.
    int64_t nx = 0, ny = 0;
    for (int64_t k = 0; k < c; k++) {
      int is_t = want == ncols && tcol >= 0 && k >= tcol && k < tcol + tcount;
      if (!is_t) {
        row[nx++] = (float)vals[k];
        continue;
      }
      if (classify && !inputs_only && (vals[k] != floor(vals[k]) || vals[k] < 0 || vals[k] >= (double)width)) {
        rt_error(prog, "%s:%lld: expected a class in 0..%lld in column %lld, found %g", path, (long long)lineno,
                 (long long)width - 1, (long long)k + 1, vals[k]);
        goto fail;
      }
      row[in_numel + ny++] = (float)vals[k];
    }
    if (inputs_only && ny == 0) row[in_numel] = 0, ny = 1;
    if (push_floats(&d->f32, &xlen, &xcap, row, in_numel) || push_floats(&ys, &ylen, &ycap, row + in_numel, ny)) {
      rt_error(prog, "%s: out of memory", path);
      goto fail;
    }
    d->count++;
  }
  if (d->count == 0) {
    rt_error(prog, "%s: expected at least one row of %lld columns (%s), found none", path, (long long)ncols,
             cols_desc);
    goto fail;
  }
  if (classify || inputs_only) {
    // --predict: the targets are not used; classes are kept in range.
    int64_t per = ylen / d->count;
    if (!(d->labels = calloc((size_t)d->count, sizeof(int32_t))) ||
        (!classify && !(d->targets = calloc((size_t)(d->count * width), sizeof(float))))) {
      rt_error(prog, "out of memory");
      goto fail;
    }
    for (int64_t i = 0; classify && i < d->count; i++) {
      float v = ys[i * per];
      d->labels[i] = v >= 0 && v < (float)width ? (int32_t)v : 0;
    }
    if (!classify) {
      free(d->labels);
      d->labels = NULL;
    }
    free(ys);
  } else {
    d->targets = ys;
  }
  ys = NULL;
  free(vals);
  free(row);
  free(text);
  free(path);
  return d;
fail:
  free(ys);
  free(vals);
  free(row);
  free(text);
  free(path);
  rt_data_free(d);
  return NULL;
}

//
// Text: the bytes of a file (raw or gzip) as token ids, cut into sequences of
// T steps. vocab="bytes": the id is the byte. vocab="file": the file's distinct
// bytes in increasing order are ids 0, 1, ... (a test file reuses the training
// file's vocabulary). Every id must be below `limit`, the model's vocabulary.
//
static RtData *text_new(int64_t nids, int64_t T) {
  RtData *d = calloc(1, sizeof *d);
  if (!d) return NULL;
  if (!(d->ids = malloc((size_t)(nids ? nids : 1) * sizeof(int32_t)))) {
    free(d);
    return NULL;
  }
  d->nids = nids;
  d->T = T;
  d->count = (nids - 1) / T;
  d->dim = T;
  d->classify = 1;
  d->width = 1;
  return d;
}

RtData *rt_data_load_text(const char *prog, const char *dir, const char *file, const char *vocab, int64_t T,
                          int64_t limit, const RtData *like) {
  char *path;
  int64_t disk, len;
  gzFile gz = open_data(prog, dir, file, &path, &disk);
  if (!gz) return NULL;
  char *buf = read_all(prog, path, gz, &len);
  gzclose(gz);
  if (!buf) {
    free(path);
    return NULL;
  }
  const unsigned char *u = (const unsigned char *)buf;
  RtData *d = NULL;
  if (len == 0) {
    rt_error(prog, "%s: the text file is empty", path);
    goto out;
  }
  if (len < T + 1) {
    rt_error(prog, "%s: %lld %s make no sequence: one needs %lld (tokens[%lld] and its target, shifted by one)", path,
             (long long)len, plural((uint64_t)len, "byte", "bytes"), (long long)(T + 1), (long long)T);
    goto out;
  }
  if (!(d = text_new(len, T))) {
    rt_error(prog, "out of memory");
    goto out;
  }
  int byfile = !strcmp(vocab, "file");
  int32_t map[256];
  for (int c = 0; c < 256; c++) map[c] = byfile ? -1 : c;
  if (byfile && like) {
    d->nvocab = like->nvocab;
    memcpy(d->vocab, like->vocab, sizeof d->vocab);
  } else if (byfile) {
    int seen[256] = {0};
    for (int64_t i = 0; i < len; i++) seen[u[i]] = 1;
    for (int c = 0; c < 256; c++)
      if (seen[c]) d->vocab[d->nvocab++] = (unsigned char)c;
    if (d->nvocab > limit) {
      rt_error(prog, "%s: the text has %d distinct bytes, but the model's vocabulary has %lld ids", path, d->nvocab,
               (long long)limit);
      rt_hint("make the embedding's vocab and the output layer at least %d", d->nvocab);
      goto fail;
    }
  }
  for (int k = 0; byfile && k < d->nvocab; k++) map[d->vocab[k]] = k;
  for (int64_t i = 0; i < len; i++) {
    int32_t id = map[u[i]];
    if (id < 0) {
      rt_error(prog, "%s: byte 0x%02x at offset %lld is not in the vocabulary of the training text", path, u[i],
               (long long)i);
      goto fail;
    }
    if (id >= limit) {
      rt_error(prog, "%s: byte 0x%02x at offset %lld is outside the model's vocabulary of %lld ids", path, u[i],
               (long long)i, (long long)limit);
      rt_hint("use vocab=\"file\" (ids for the file's distinct bytes only) or a vocabulary of 256");
      goto fail;
    }
    d->ids[i] = id;
  }
  goto out;
fail:
  rt_data_free(d);
  d = NULL;
out:
  free(buf);
  free(path);
  return d;
}

// The vocabulary of a text data set (vocab="file"): chars[id] is the byte of
// id; returns the count, or 0 when the ids are the bytes.
int rt_data_vocab(const RtData *d, unsigned char *chars) {
  if (!d || !d->ids) return 0;
  memcpy(chars, d->vocab, (size_t)d->nvocab);
  return d->nvocab;
}

// A text's validation part is its last nv sequences (the end of the file), so
// that no text is in both parts; the training part keeps the rest.
static int text_split(const char *prog, RtData **d, int64_t nv, RtData **val) {
  RtData *s = *d;
  int64_t cut = (s->count - nv) * s->T;  // the first id of the validation part
  RtData *t = text_new(cut + 1, s->T), *v = text_new(s->nids - cut, s->T);
  if (!t || !v) {
    rt_data_free(t);
    rt_data_free(v);
    rt_error(prog, "out of memory");
    return 1;
  }
  memcpy(t->ids, s->ids, (size_t)(cut + 1) * sizeof(int32_t));
  memcpy(v->ids, s->ids + cut, (size_t)(s->nids - cut) * sizeof(int32_t));
  t->nvocab = v->nvocab = s->nvocab;
  memcpy(t->vocab, s->vocab, sizeof s->vocab);
  memcpy(v->vocab, s->vocab, sizeof s->vocab);
  rt_data_free(s);
  *d = t;
  *val = v;
  return 0;
}

// Loads a data set for a model whose per-sample input is in_dims[0..in_rank)
// and whose target is `width` classes (classify) or `width` values. `column`
// names a CSV file's target column (NULL or "": the last ones).
RtData *rt_data_load(const char *prog, const char *dir, const char *kind, const char *f0, const char *f1,
                     const char *column, int in_rank, const int64_t *in_dims, int classify, int64_t width,
                     double mean, double std) {
  int64_t numel = 1;
  for (int i = 0; i < in_rank; i++) numel *= in_dims[i];
  RtData *d;
  if (!strcmp(kind, "idx")) {
    d = load_idx(prog, dir, f0, f1, in_rank, in_dims, numel, classify, width);
    if (d) set_lut(d, mean, std);
  } else if (!strcmp(kind, "csv")) {
    d = load_csv(prog, dir, f0, numel, classify, width, mean, std, column, 0);
  } else {
    rt_error(prog, "unknown data format '%s'", kind);
    d = NULL;
  }
  return d;
}

// --predict: the inputs of FILE (relative to the working directory), an IDX
// image file (raw or gzip, told by its magic number) or a CSV file of the
// features, with or without the target columns. The targets are zero.
RtData *rt_data_load_inputs(const char *prog, const char *file, const char *column, int in_rank,
                            const int64_t *in_dims, int classify, int64_t width, double mean, double std) {
  int64_t numel = 1;
  for (int i = 0; i < in_rank; i++) numel *= in_dims[i];
  char *path;
  int64_t disk;
  gzFile gz = open_data(prog, "", file, &path, &disk);
  if (!gz) return NULL;
  uint8_t h[4] = {0};
  int64_t got = read_bytes(prog, path, gz, h, 4);
  gzclose(gz);
  free(path);
  if (got < 0) return NULL;
  if (got == 4 && be32(h) == 2051) {
    RtData *d = load_idx(prog, "", file, NULL, in_rank, in_dims, numel, 1, 1);
    if (d) {
      set_lut(d, mean, std);
      d->classify = classify;
      d->width = width;
      if (!classify) {
        free(d->labels);
        d->labels = NULL;
        if (!(d->targets = calloc((size_t)(d->count * width), sizeof(float)))) {
          rt_error(prog, "out of memory");
          rt_data_free(d);
          return NULL;
        }
      }
    }
    return d;
  }
  if (got == 4 && be32(h) == 2049) {
    rt_error(prog, "%s: this is an IDX label file; --predict takes the images (or a CSV file)", file);
    return NULL;
  }
  return load_csv(prog, "", file, numel, classify, width, mean, std, column, 1);
}

// A new data set of the rows idx[0..n) of d, in that order.
static RtData *subset(const RtData *d, const int64_t *idx, int64_t n) {
  RtData *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  *s = *d;
  s->u8 = NULL, s->f32 = NULL, s->labels = NULL, s->targets = NULL;
  s->count = n;
  size_t m = n ? (size_t)n : 1;
  int ok = 1;
  if (d->u8) ok &= (s->u8 = malloc(m * (size_t)d->dim)) != NULL;
  if (d->f32) ok &= (s->f32 = malloc(m * (size_t)d->dim * sizeof(float))) != NULL;
  if (d->labels) ok &= (s->labels = malloc(m * sizeof(int32_t))) != NULL;
  if (d->targets) ok &= (s->targets = malloc(m * (size_t)d->width * sizeof(float))) != NULL;
  if (!ok) {
    rt_data_free(s);
    return NULL;
  }
  for (int64_t i = 0; i < n; i++) {
    int64_t r = idx[i];
    if (d->u8) memcpy(s->u8 + i * d->dim, d->u8 + r * d->dim, (size_t)d->dim);
    if (d->f32) memcpy(s->f32 + i * d->dim, d->f32 + r * d->dim, (size_t)d->dim * sizeof(float));
    if (d->labels) s->labels[i] = d->labels[r];
    if (d->targets) memcpy(s->targets + i * d->width, d->targets + r * d->width, (size_t)d->width * sizeof(float));
  }
  return s;
}

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

// Splits *d into a training part (left in *d) and a validation part (*val) of
// round(frac * count) rows drawn at random from `rng` (at least one row each);
// both keep the file order. Returns 0, or 1 after an error.
int rt_data_split(const char *prog, RtData **d, double frac, uint64_t rng[4], RtData **val) {
  int64_t n = (*d)->count, nv = (int64_t)llround(frac * (double)n);
  if (nv < 1 || nv >= n) {
    rt_error(prog, "validation=%g of %lld training samples leaves %s", frac, (long long)n,
             nv < 1 ? "no validation samples" : "no training samples");
    return 1;
  }
  if ((*d)->ids) return text_split(prog, d, nv, val);
  int64_t *perm = malloc((size_t)n * sizeof *perm);
  if (!perm) {
    rt_error(prog, "out of memory");
    return 1;
  }
  for (int64_t i = 0; i < n; i++) perm[i] = i;
  for (int64_t i = n - 1; i > 0; i--) {
    int64_t j = (int64_t)rt_rng_below(rng, (uint64_t)i + 1), t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
  qsort(perm, (size_t)nv, sizeof *perm, cmp_i64);
  qsort(perm + nv, (size_t)(n - nv), sizeof *perm, cmp_i64);
  RtData *v = subset(*d, perm, nv), *t = subset(*d, perm + nv, n - nv);
  free(perm);
  if (!v || !t) {
    rt_data_free(v);
    rt_data_free(t);
    rt_error(prog, "out of memory");
    return 1;
  }
  rt_data_free(*d);
  *d = t;
  *val = v;
  return 0;
}

// standardize: the mean and standard deviation of each feature column of a
// CSV data set (2 * dim floats, malloc'ed: means, then deviations; a constant
// column gets 1). NULL if d is not CSV or out of memory.
float *rt_data_feature_stats(const RtData *d) {
  if (!d->f32) return NULL;
  float *st = malloc(2 * (size_t)d->dim * sizeof(float));
  if (!st) return NULL;
  for (int64_t j = 0; j < d->dim; j++) {
    double s = 0, ss = 0;
    for (int64_t i = 0; i < d->count; i++) s += d->f32[i * d->dim + j];
    double m = s / (double)d->count;
    for (int64_t i = 0; i < d->count; i++) {
      double e = d->f32[i * d->dim + j] - m;
      ss += e * e;
    }
    double sd = sqrt(ss / (double)d->count);
    st[j] = (float)m;
    st[d->dim + j] = sd > 0 ? (float)sd : 1.0f;
  }
  return st;
}

// x = (x - mean_j) / std_j for every feature j, in place (before the data
// set's own normalize, which standardize leaves at mean 0, std 1).
void rt_data_standardize(RtData *d, const float *st) {
  if (!d || !d->f32 || !st) return;
  for (int64_t i = 0; i < d->count; i++)
    for (int64_t j = 0; j < d->dim; j++) d->f32[i * d->dim + j] = (d->f32[i * d->dim + j] - st[j]) / st[d->dim + j];
}

// The targets of a data set: class ids [count] (classify) or values [count, width].
const int32_t *rt_data_labels(const RtData *d) { return d->labels; }
const float *rt_data_targets(const RtData *d) { return d->targets; }
