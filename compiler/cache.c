// cache.c: the compile cache - object code of earlier compilations, on disk.
//
// LLVM takes most of the time from a .fnn file to the first training step
// (about 0.25 s for the CNN on two threads). Its output depends only on what
// goes in: the module's bitcode, how the module is cut into parts, the target
// machine and LLVM's options, and the fnnc binary itself. The backend hands
// all of that to cache_open as the key; a later compilation with the same key
// reads each part's object file back instead of optimising and generating it
// again. The code, and so every result, is the same bit for bit.
//
// Layout, in the directory (FNNC_CACHE, else $XDG_CACHE_HOME/fnnc, else
// $HOME/.cache/fnnc; FNNC_CACHE=off turns the cache off):
//   H.key     "FNNCKEY1", the key's length (u64), the key itself
//   H.Q.o     "FNNCOBJ1", H, the key's second hash, Q, the object's length
//             and its hash (u64 each), then part Q's object file
// H is a 64-bit hash of the key, in hex. A hit needs H.key to hold this very
// key, byte for byte (checked when the cache is opened, or written then by
// this compilation), and H.Q.o to be whole and to name H, the second hash and
// Q; anything else is a miss, and the part is compiled and written again.
// Files are written under a temporary name and renamed, so a reader (another
// fnnc at the same time) sees a whole file or none. Nothing here fails a
// compilation: a cache that cannot be read or written is no cache.
//
// Trust: the objects are run as code. The directory is opened once and every
// file is reached through that descriptor, never followed through a symbolic
// link, and only if it is a regular file of a sane size; a directory that
// someone else owns or that others may write to is not used at all.
//
// Size: after a compilation stored something, the oldest files go (by the
// time of their last use) until the cache holds at most FNNC_CACHE_MB
// megabytes (default 256; 0: no bound).
#define _GNU_SOURCE 1
#include "fnnc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct Cache {
  int dirfd;             // the directory, opened once (see Trust)
  char hex[17];          // H
  uint64_t h1, h2;       // the key's two hashes, in every object's header
  void *key;             // the key (owned)
  size_t keylen;
  bool key_ok;           // H.key holds this key (read, or written by us)
  bool stored;           // something was written: check the size at close
  pthread_mutex_t mu;    // key_ok and stored: parts are compiled on several threads
};

static const char KEY_MAGIC[8] = {'F', 'N', 'N', 'C', 'K', 'E', 'Y', '1'};
static const char OBJ_MAGIC[8] = {'F', 'N', 'N', 'C', 'O', 'B', 'J', '1'};
enum { OBJ_HEADER = 48 };
// No object of ours comes near this; a bigger file is not read at all.
#define OBJ_MAX ((size_t)256 << 20)

// FNV-1a over 64 bits, from `seed` (two seeds give two independent-enough hashes).
static uint64_t hash64(const void *data, size_t len, uint64_t seed) {
  const unsigned char *p = data;
  uint64_t h = seed;
  for (size_t i = 0; i < len; i++) h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}
#define SEED1 0xcbf29ce484222325ull
#define SEED2 0x84222325cbf29ce4ull

static void put_u64(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_u64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
  return v;
}

static char *path_join(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  char *s = malloc(la + lb + 2);
  if (!s) die("out of memory");
  memcpy(s, a, la);
  s[la] = '/';
  memcpy(s + la + 1, b, lb + 1);
  return s;
}

// mkdir -p, the last component private to the user.
static bool make_dirs(const char *dir) {
  char *s = strdup(dir);
  if (!s) die("out of memory");
  for (char *p = s + 1; *p; p++) {
    if (*p != '/') continue;
    *p = 0;
    if (mkdir(s, 0755) && errno != EEXIST) return free(s), false;
    *p = '/';
  }
  bool ok = !mkdir(s, 0700) || errno == EEXIST;
  free(s);
  return ok;
}

// The directory, or NULL when the cache is off.
static char *cache_dir(void) {
  const char *env = getenv("FNNC_CACHE");
  if (env && (!strcmp(env, "off") || !strcmp(env, "0"))) return NULL;
  if (env && *env) return strdup(env);
  const char *xdg = getenv("XDG_CACHE_HOME");
  if (xdg && *xdg == '/') return path_join(xdg, "fnnc");
  const char *home = getenv("HOME");
  if (!home || *home != '/') return NULL;
  char *base = path_join(home, ".cache");
  char *d = path_join(base, "fnnc");
  free(base);
  return d;
}

// A regular file of the directory into memory, if its size is `want` (or, for
// want 0, at most OBJ_MAX): NULL otherwise. Never follows a symbolic link and
// never blocks on a FIFO or a device.
static unsigned char *read_entry(int dirfd, const char *name, size_t want, size_t *len) {
  int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return NULL;
  struct stat st;
  unsigned char *buf = NULL;
  if (!fstat(fd, &st) && S_ISREG(st.st_mode) && st.st_size > 0 &&
      (want ? (size_t)st.st_size == want : (size_t)st.st_size <= OBJ_MAX) && (buf = malloc((size_t)st.st_size))) {
    size_t got = 0;
    while (got < (size_t)st.st_size) {
      ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
      if (r <= 0) break;
      got += (size_t)r;
    }
    if (got != (size_t)st.st_size) free(buf), buf = NULL;
    *len = got;
  }
  close(fd);
  return buf;
}

// Writes head then body as the directory's file `name`, whole or not at all
// (a temporary file, then a rename over the old one).
static bool write_entry(int dirfd, const char *name, const void *head, size_t hlen, const void *body, size_t blen) {
  char tmp[96];
  static _Atomic unsigned counter;
  snprintf(tmp, sizeof tmp, "%s.%ld.%u.tmp", name, (long)getpid(), counter++);
  int fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return false;
  bool ok = true;
  const unsigned char *parts[2] = {head, body};
  size_t lens[2] = {hlen, blen};
  for (int k = 0; ok && k < 2; k++)
    for (size_t done = 0; ok && done < lens[k];) {
      ssize_t w = write(fd, parts[k] + done, lens[k] - done);
      ok = w > 0;
      if (ok) done += (size_t)w;
    }
  if (close(fd)) ok = false;
  if (ok && renameat(dirfd, tmp, dirfd, name)) ok = false;
  if (!ok) unlinkat(dirfd, tmp, 0);
  return ok;
}

// Marks a file as used now: trim drops the least recently used first.
static void touch(int dirfd, const char *name) { utimensat(dirfd, name, NULL, AT_SYMLINK_NOFOLLOW); }

Cache *cache_open(void *key, size_t keylen) {
  char *dir = cache_dir();
  if (!dir) return free(key), NULL;
  int fd = -1;
  struct stat st;
  if (make_dirs(dir)) fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0 || fstat(fd, &st) || faccessat(fd, ".", R_OK | W_OK | X_OK, 0)) {
    if (fd >= 0) close(fd);
    free(dir);
    free(key);
    return NULL;
  }
  if (st.st_uid != geteuid() || (st.st_mode & (S_IWGRP | S_IWOTH))) {
    static _Atomic int warned;
    if (!warned++)
      fprintf(stderr, "fnnc: warning: not using the compile cache '%s': %s\n", dir,
              st.st_uid != geteuid() ? "another user owns it" : "others may write to it");
    close(fd);
    free(dir);
    free(key);
    return NULL;
  }
  free(dir);
  Cache *c = calloc(1, sizeof *c);
  if (!c) die("out of memory");
  c->dirfd = fd;
  c->key = key;
  c->keylen = keylen;
  c->h1 = hash64(key, keylen, SEED1);
  c->h2 = hash64(key, keylen, SEED2);
  snprintf(c->hex, sizeof c->hex, "%016llx", (unsigned long long)c->h1);
  pthread_mutex_init(&c->mu, NULL);
  char name[32];
  snprintf(name, sizeof name, "%s.key", c->hex);
  size_t len = 0;
  unsigned char *buf = read_entry(fd, name, 16 + keylen, &len);
  c->key_ok = buf && !memcmp(buf, KEY_MAGIC, 8) && get_u64(buf + 8) == keylen && !memcmp(buf + 16, key, keylen);
  if (c->key_ok) touch(fd, name);
  free(buf);
  return c;
}

static void obj_name(const Cache *c, int part, char *name, size_t size) {
  snprintf(name, size, "%s.%d.o", c->hex, part);
}

void *cache_get(Cache *c, int part, size_t *len) {
  if (!c) return NULL;
  pthread_mutex_lock(&c->mu);
  bool key_ok = c->key_ok;
  pthread_mutex_unlock(&c->mu);
  unsigned char *buf = NULL, *obj = NULL;
  size_t n = 0;
  char name[48];
  obj_name(c, part, name, sizeof name);
  if (key_ok) buf = read_entry(c->dirfd, name, 0, &n);
  if (buf && n > OBJ_HEADER && !memcmp(buf, OBJ_MAGIC, 8) && get_u64(buf + 8) == c->h1 && get_u64(buf + 16) == c->h2 &&
      get_u64(buf + 24) == (uint64_t)part && get_u64(buf + 32) == n - OBJ_HEADER &&
      get_u64(buf + 40) == hash64(buf + OBJ_HEADER, n - OBJ_HEADER, SEED1)) {
    *len = n - OBJ_HEADER;
    obj = malloc(*len);
    if (!obj) die("out of memory");
    memcpy(obj, buf + OBJ_HEADER, *len);
    touch(c->dirfd, name);
  }
  free(buf);
  return obj;
}

void cache_put(Cache *c, int part, const void *obj, size_t len) {
  if (!c || !len || len > OBJ_MAX) return;
  pthread_mutex_lock(&c->mu);
  if (!c->key_ok) {  // the key first: an object is only ever read after its key
    unsigned char head[16];
    memcpy(head, KEY_MAGIC, 8);
    put_u64(head + 8, c->keylen);
    char name[32];
    snprintf(name, sizeof name, "%s.key", c->hex);
    c->key_ok = write_entry(c->dirfd, name, head, sizeof head, c->key, c->keylen);
    c->stored |= c->key_ok;
  }
  bool key_ok = c->key_ok;
  pthread_mutex_unlock(&c->mu);
  if (!key_ok) return;
  unsigned char head[OBJ_HEADER];
  memcpy(head, OBJ_MAGIC, 8);
  put_u64(head + 8, c->h1);
  put_u64(head + 16, c->h2);
  put_u64(head + 24, (uint64_t)part);
  put_u64(head + 32, len);
  put_u64(head + 40, hash64(obj, len, SEED1));
  char name[48];
  obj_name(c, part, name, sizeof name);
  bool ok = write_entry(c->dirfd, name, head, sizeof head, obj, len);
  pthread_mutex_lock(&c->mu);
  c->stored |= ok;
  pthread_mutex_unlock(&c->mu);
}

// The cache's own files (H.key, H.Q.o and leftover temporaries), oldest use first.
typedef struct {
  char *name;
  off_t size;
  struct timespec used;
} CacheFile;

static bool ours(const char *name) {
  size_t n = strspn(name, "0123456789abcdef");
  return n == 16 && name[16] == '.';
}

static int by_use(const void *a, const void *b) {
  const CacheFile *x = a, *y = b;
  if (x->used.tv_sec != y->used.tv_sec) return x->used.tv_sec < y->used.tv_sec ? -1 : 1;
  return (x->used.tv_nsec > y->used.tv_nsec) - (x->used.tv_nsec < y->used.tv_nsec);
}

// FNNC_CACHE_MB: the bound in bytes; 0 for none. Anything but a whole number
// of megabytes (up to a terabyte) is the default, with a warning.
static long long size_bound(void) {
  const char *s = getenv("FNNC_CACHE_MB");
  if (!s || !*s) return 256ll << 20;
  char *end;
  errno = 0;
  long long mb = strtoll(s, &end, 10);
  if (errno || *end || end == s || mb < 0 || mb > (1ll << 20)) {
    fprintf(stderr, "fnnc: warning: FNNC_CACHE_MB='%s' is not a number of megabytes (0 to 1048576); using 256\n", s);
    return 256ll << 20;
  }
  return mb << 20;
}

// Drops the least recently used files until the cache fits its bound.
static void trim(const Cache *c) {
  long long limit = size_bound();
  if (limit <= 0) return;
  int fd = openat(c->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);  // fdopendir takes it
  DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
  if (!d) {
    if (fd >= 0) close(fd);
    return;
  }
  CacheFile *e = NULL;
  size_t n = 0, cap = 0;
  long long total = 0;
  for (struct dirent *de; (de = readdir(d));) {
    struct stat st;
    if (!ours(de->d_name) || fstatat(c->dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) || !S_ISREG(st.st_mode))
      continue;
    if (n == cap && !(e = realloc(e, (cap = cap ? 2 * cap : 64) * sizeof *e))) die("out of memory");
    char *name = strdup(de->d_name);
    if (!name) die("out of memory");
    e[n++] = (CacheFile){name, st.st_size, st.st_mtim};
    total += st.st_size;
  }
  if (total > limit) {
    qsort(e, n, sizeof *e, by_use);
    for (size_t i = 0; i < n && total > limit; i++)
      if (!unlinkat(c->dirfd, e[i].name, 0)) total -= e[i].size;
  }
  for (size_t i = 0; i < n; i++) free(e[i].name);
  free(e);
  closedir(d);
}

void cache_close(Cache *c) {
  if (!c) return;
  if (c->stored) trim(c);
  pthread_mutex_destroy(&c->mu);
  close(c->dirfd);
  free(c->key);
  free(c);
}
