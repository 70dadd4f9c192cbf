// plot.c - training curves as a self-contained SVG chart (--plot).
//
// One chart: the epochs along x; losses on the left axis; accuracy (or R^2)
// on the right axis when there is such a series; ticks at 1-2-5 steps, light
// grid lines, a title, axis titles and a legend under the plot. Series are
// polylines (validation ones dashed) with a marker per point when there are
// few points. No scripts, no external fonts or styles.
#include "rt.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// The chart's geometry, in SVG user units.
enum { W = 820, H = 520, LEFT = 80, RIGHT = 80, TOP = 56, BOTTOM = 130 };

static const char *const colors[] = {"#1f77b4", "#d62728", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b"};

typedef struct {
  double lo, hi, step;  // the axis range: whole multiples of step
} Axis;

// A step of 1, 2 or 5 times a power of ten that cuts [lo, hi] into at most
// `most` intervals; the range widened to whole steps. `zero`: start at 0 when
// the data are non-negative and start below half their maximum.
static Axis nice_axis(double lo, double hi, int most, int zero) {
  if (zero && lo >= 0 && lo < hi / 2) lo = 0;
  if (!(hi > lo)) {
    double pad = fabs(lo) > 0 ? fabs(lo) * 0.1 : 1;
    lo -= pad;
    hi += pad;
  }
  double raw = (hi - lo) / most, mag = pow(10, floor(log10(raw))), f = raw / mag;
  double step = (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
  Axis a = {floor(lo / step + 1e-9) * step, ceil(hi / step - 1e-9) * step, step};
  return a;
}

// Digits after the point that tick labels of this step need.
static int decimals(double step) {
  int d = (int)ceil(-log10(step) - 1e-9);
  return d < 0 ? 0 : d > 9 ? 9 : d;
}

static void put_escaped(FILE *f, const char *s) {
  for (; *s; s++) {
    switch (*s) {
    case '&': fputs("&amp;", f); break;
    case '<': fputs("&lt;", f); break;
    case '>': fputs("&gt;", f); break;
    case '"': fputs("&quot;", f); break;
    default: fputc(*s, f);
    }
  }
}

static double sx(const Axis *a, double x) { return LEFT + (x - a->lo) / (a->hi - a->lo) * (W - LEFT - RIGHT); }
static double sy(const Axis *a, double y) { return H - BOTTOM - (y - a->lo) / (a->hi - a->lo) * (H - TOP - BOTTOM); }

// The y ticks, grid lines and labels of one axis; left or right.
static void y_axis(FILE *f, const Axis *a, int right, int grid, const char *title, int percent) {
  double x0 = right ? W - RIGHT : LEFT;
  int d = decimals(percent ? a->step * 100 : a->step);
  for (double t = a->lo; t <= a->hi + a->step / 2; t += a->step) {
    double y = sy(a, t);
    if (grid)
      fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#e4e4e4\"/>\n", LEFT, y, W - RIGHT, y);
    fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#333\"/>\n", x0, y,
            right ? x0 + 5 : x0 - 5, y);
    double v = fabs(t) < a->step * 1e-6 ? 0 : t;
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\">%.*f%s</text>\n", right ? x0 + 8 : x0 - 8, y + 4,
            right ? "start" : "end", d, percent ? 100 * v : v, percent ? "%" : "");
  }
  fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#333\"/>\n", x0, TOP, x0, H - BOTTOM);
  double tx = right ? W - 18 : 18, ty = (TOP + H - BOTTOM) / 2.0;
  fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"14\" transform=\"rotate(%d %.1f %.1f)\">",
          tx, ty, right ? 90 : -90, tx, ty);
  put_escaped(f, title);
  fputs("</text>\n", f);
}

static void range(const RtSeries *s, int ns, int right, int want_x, double *lo, double *hi) {
  *lo = INFINITY;
  *hi = -INFINITY;
  for (int k = 0; k < ns; k++) {
    if (!want_x && s[k].right != right) continue;
    const double *v = want_x ? s[k].x : s[k].y;
    for (int64_t i = 0; i < s[k].n; i++) {
      if (v[i] < *lo) *lo = v[i];
      if (v[i] > *hi) *hi = v[i];
    }
  }
}

static void series(FILE *f, const RtSeries *s, const Axis *ax, const Axis *ay, const char *color) {
  if (s->n == 0) return;
  fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\"%s points=\"", color,
          s->dashed ? " stroke-dasharray=\"7 4\"" : "");
  for (int64_t i = 0; i < s->n; i++) fprintf(f, "%s%.1f,%.1f", i ? " " : "", sx(ax, s->x[i]), sy(ay, s->y[i]));
  fputs("\"/>\n", f);
  if (s->n > 40) return;
  for (int64_t i = 0; i < s->n; i++)
    fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\"/>\n", sx(ax, s->x[i]), sy(ay, s->y[i]), color);
}

// Writes the chart to `path`. Series with no points are left out, legend
// included. `left` and `right` title the axes; a right axis titled
// "accuracy" shows percentages. Returns 0, or 1 after an error.
int rt_plot_svg(const char *prog, const char *path, const char *title, const char *left, const char *right,
                const RtSeries *s, int ns) {
  FILE *f = fopen(path, "w");
  if (!f) {
    rt_error(prog, "cannot write the plot '%s': %s", path, strerror(errno));
    return 1;
  }
  int has_right = 0, npts = 0;
  for (int k = 0; k < ns; k++) {
    has_right |= s[k].right && s[k].n > 0;
    npts += (int)s[k].n;
  }
  double xlo, xhi, llo, lhi, rlo, rhi;
  range(s, ns, 0, 1, &xlo, &xhi);
  range(s, ns, 0, 0, &llo, &lhi);
  range(s, ns, 1, 0, &rlo, &rhi);
  if (!npts) xlo = 0, xhi = 1;
  if (!isfinite(llo)) llo = 0, lhi = 1;
  Axis ax = nice_axis(xlo < 0 ? xlo : 0, xhi, 10, 1);
  Axis ay = nice_axis(llo, lhi, 8, 1);
  int percent = !strcmp(right, "accuracy");
  Axis ar = has_right ? nice_axis(rlo, percent && rhi > 1 ? 1 : rhi, 8, 0) : ay;

  fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
             "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
             "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\" font-size=\"12\" fill=\"#222\">\n",
          W, H, W, H);
  fputs("<title>", f);
  put_escaped(f, title);
  fputs("</title>\n", f);
  fprintf(f, "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n", W, H);
  fprintf(f, "<text x=\"%d\" y=\"30\" text-anchor=\"middle\" font-size=\"17\" font-weight=\"bold\">", W / 2);
  put_escaped(f, title);
  fputs("</text>\n", f);
  // Axes: left (with the grid), right, x.
  y_axis(f, &ay, 0, 1, left, 0);
  if (has_right) y_axis(f, &ar, 1, 0, right, percent);
  int d = decimals(ax.step);
  for (double t = ax.lo; t <= ax.hi + ax.step / 2; t += ax.step) {
    double x = sx(&ax, t);
    fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#333\"/>\n", x, H - BOTTOM, x,
            H - BOTTOM + 5);
    fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%.*f</text>\n", x, H - BOTTOM + 19, d, t);
  }
  fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#333\"/>\n", LEFT, H - BOTTOM, W - RIGHT,
          H - BOTTOM);
  if (!has_right)
    fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#333\"/>\n", W - RIGHT, TOP, W - RIGHT,
            H - BOTTOM);
  fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#333\"/>\n", LEFT, TOP, W - RIGHT, TOP);
  fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" font-size=\"14\">epoch</text>\n",
          (LEFT + W - RIGHT) / 2, H - BOTTOM + 42);
  // The curves, clipped to the plot area.
  fprintf(f, "<clipPath id=\"plot\"><rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\"/></clipPath>\n<g clip-path=\"url(#plot)\">\n",
          LEFT - 4, TOP - 4, W - LEFT - RIGHT + 8, H - TOP - BOTTOM + 8);
  for (int k = 0; k < ns; k++)
    series(f, &s[k], &ax, s[k].right ? &ar : &ay, colors[k % 6]);
  fputs("</g>\n", f);
  // The legend: two columns under the x axis title.
  int shown = 0;
  for (int k = 0; k < ns; k++) {
    if (!s[k].n) continue;
    double lx = LEFT + 20 + (shown % 2) * 330, ly = H - BOTTOM + 70 + (shown / 2) * 20;
    fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2\"%s/>\n", lx,
            ly - 4, lx + 30, ly - 4, colors[k % 6], s[k].dashed ? " stroke-dasharray=\"7 4\"" : "");
    fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\"/>\n", lx + 15, ly - 4, colors[k % 6]);
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\">", lx + 40, ly);
    put_escaped(f, s[k].name);
    fprintf(f, "%s</text>\n", !has_right ? "" : s[k].right ? " (right axis)" : " (left axis)");
    shown++;
  }
  fputs("</svg>\n", f);
  if (ferror(f) | fclose(f)) {
    rt_error(prog, "cannot write the plot '%s'", path);
    return 1;
  }
  return 0;
}
