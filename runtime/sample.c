// sample.c - --sample N: generates text from a trained tokens[T] model.
//
// The compiled eval_step runs the model forward over a window of the last T
// characters (one sequence, n = 1), and the probabilities it writes for the
// window's last position give the next character, drawn at the temperature X:
// p_k^(1/X), renormalised, which is softmax(logits / X). Until T characters
// exist, they fill the start of the window and the rest is padding (id 0): in a
// unidirectional model step t depends on steps 0..t only, so the padding
// after the last character changes nothing (a bidirectional model would see
// it, so --sample refuses one). Every window starts from the zero state, as
// the training sequences do.
//
// The characters of the ids: a checkpoint written after training on a text
// with vocab="file" holds that vocabulary in its metadata ("vocab", the bytes
// in id order as hex); otherwise the ids are the bytes.
#include "rt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STREAM_SAMPLE 0x30000u

// The vocabulary: chars[id] for ids below *n. Returns 0, or 1 after an error.
static int load_vocab(const RtModel *r, const RtSampleOpts *o, int64_t limit, unsigned char *chars, int *n) {
  const char *hex = o->vocab, *mode = rt_model_text_vocab(r);
  if (hex) {
    size_t len = strlen(hex);
    int seen[256] = {0};
    if (len == 0 || len % 2 || len > 512) {
      rt_error(o->prog, "%s: the metadata 'vocab' is not a vocabulary (%zu hex digits)", o->ckpt, len);
      return 1;
    }
    *n = (int)(len / 2);
    for (int i = 0; i < *n; i++) {
      int hi = rt_hexval(hex[2 * i]), lo = rt_hexval(hex[2 * i + 1]);
      if (hi < 0 || lo < 0 || seen[16 * hi + lo]++) {
        rt_error(o->prog, "%s: the metadata 'vocab' is not a vocabulary (bad or repeated byte at id %d)", o->ckpt, i);
        return 1;
      }
      chars[i] = (unsigned char)(16 * hi + lo);
    }
    if (*n > limit) {
      rt_error(o->prog, "%s: the vocabulary has %d characters, but the model only %lld ids", o->ckpt, *n,
               (long long)limit);
      return 1;
    }
  } else if (mode && !strcmp(mode, "file")) {
    rt_error(o->prog, "%s: the checkpoint holds no vocabulary, and the model's text has vocab=\"file\"", o->ckpt);
    rt_hint("a checkpoint saved with --save after training on the text has it");
    return 1;
  } else {
    *n = limit < 256 ? (int)limit : 256;
    for (int i = 0; i < *n; i++) chars[i] = (unsigned char)i;
  }
  return 0;
}

// Draws an id below nv from p (probabilities) at temperature temp.
static int32_t draw(const float *p, int nv, double temp, uint64_t s[4]) {
  double best = 0, w[256], sum = 0;
  for (int k = 0; k < nv; k++)
    if (p[k] > best) best = p[k];
  if (!(best > 0)) return (int32_t)rt_rng_below(s, (uint64_t)nv);
  for (int k = 0; k < nv; k++) {
    w[k] = p[k] > 0 ? exp((log((double)p[k]) - log(best)) / temp) : 0;
    sum += w[k];
  }
  double u = rt_rng_unit(s) * sum;
  for (int k = 0; k < nv; k++) {
    u -= w[k];
    if (u < 0) return k;
  }
  for (int k = nv - 1; k > 0; k--)
    if (w[k] > 0) return k;
  return 0;
}

int rt_sample(const RtModel *r, FnnArgs *a, const RtSampleOpts *o) {
  int64_t T, vin = rt_model_tokens(r, &T);
  int classify;
  int64_t V = rt_model_target(r, &classify);
  int64_t limit = vin < V ? vin : V;
  if (!classify || !vin || !T) return 1;  // parse_flags refuses these models
  if (rt_model_bidirectional(r)) {
    rt_error(o->prog, "'--sample' needs a model that reads the text forwards; '%s' is bidirectional",
             rt_model_name(r));
    return 1;
  }
  unsigned char chars[256];
  int nv = 0;
  if (load_vocab(r, o, limit, chars, &nv)) return 1;
  int32_t idof[256];
  for (int c = 0; c < 256; c++) idof[c] = -1;
  for (int k = 0; k < nv; k++) idof[chars[k]] = k;
  size_t np = o->prime ? strlen(o->prime) : 0;
  int64_t cap = (int64_t)np + o->n + 1;
  int32_t *hist = malloc(sizeof(int32_t) * (size_t)cap), *x = calloc((size_t)T, sizeof(int32_t)),
          *y = calloc((size_t)T, sizeof(int32_t));
  float *out = rt_alloc_floats(o->prog, "the outputs", FNN_OUT_ROWS + rt_model_out_floats(r));
  int rc = 1;
  if (!hist || !x || !y || !out) {
    if (out) rt_error(o->prog, "out of memory");
    goto done;
  }
  int64_t len = 0;
  for (size_t i = 0; i < np; i++) {
    unsigned char ch = (unsigned char)o->prime[i];
    if (idof[ch] < 0) {
      rt_error(o->prog, "--prime: the character '%c' (byte 0x%02x) is not in the model's vocabulary", ch >= 32 && ch < 127 ? ch : '?', ch);
      goto done;
    }
    hist[len++] = idof[ch];
  }
  int printed0 = len > 0;
  if (!len) hist[len++] = idof['\n'] >= 0 ? idof['\n'] : 0;  // start as after a line
  if (printed0) fwrite(o->prime, 1, np, stdout);
  uint64_t s[4];
  rt_rng_seed(s, (uint64_t)o->seed, STREAM_SAMPLE);
  float hyper[FNN_HYP_COUNT] = {0};
  hyper[FNN_HYP_INVN] = 1;
  a->hyper = hyper;
  a->out = out;
  a->x = (const float *)(void *)x;
  a->y = y;
  a->n = 1;
  for (int64_t i = 0; i < o->n; i++) {
    int64_t w = len < T ? len : T;
    memcpy(x, hist + len - w, sizeof(int32_t) * (size_t)w);
    memset(x + w, 0, sizeof(int32_t) * (size_t)(T - w));
    rt_model_compiled(r)->eval_step(a);
    int32_t id = draw(out + FNN_OUT_ROWS + (w - 1) * V, nv, o->temperature, s);
    hist[len++] = id;
    putchar(chars[id]);
  }
  putchar('\n');
  if (fflush(stdout) || ferror(stdout)) {
    rt_error(o->prog, "cannot write to standard output");
    goto done;
  }
  rc = 0;
done:
  free(hist);
  free(x);
  free(y);
  free(out);
  return rc;
}
