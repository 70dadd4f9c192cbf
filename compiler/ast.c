// ast.c: printing the AST (--emit=ast and the parser's golden tests).
//
// One node per line, children indented by two spaces. Nodes that carry a name
// (sections, statements, calls, identifiers, keys) end with their location
// "@line:col"; literals and operators do not, so the golden files stay stable
// when only spacing changes. Numbers are printed with %g; a float literal whose
// %g looks like an integer gets ".0" so "3" and "3.0" stay distinguishable.
#include "fnnc.h"

#include <string.h>

static void indent(FILE *out, int depth) {
  for (int i = 0; i < depth; i++) fputs("  ", out);
}

static void print_loc(FILE *out, Loc loc) {
  if (loc.src) fprintf(out, " @%d:%d", loc.line, loc.col);
}

static void print_num(FILE *out, double v, bool is_int) {
  char buf[64];
  snprintf(buf, sizeof buf, "%g", v);
  fputs(buf, out);
  if (!is_int && !strpbrk(buf, ".eni")) fputs(".0", out);  // not for 1e+20, inf, nan
}

static void print_str(FILE *out, const char *s) {
  fputc('"', out);
  for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
    if (*p == '"' || *p == '\\') fprintf(out, "\\%c", *p);
    else if (*p == '\n') fputs("\\n", out);
    else if (*p == '\t') fputs("\\t", out);
    else if (*p < 0x20 || *p == 0x7F) fprintf(out, "\\x%02x", *p);
    else fputc(*p, out);
  }
  fputc('"', out);
}

static const char *name_of(const Node *n) { return n->name ? n->name : "?"; }

static void dump(FILE *out, const Node *n, int depth) {
  indent(out, depth);
  if (!n) {
    fputs("(null)\n", out);
    return;
  }
  bool children = true;  // print lhs, rhs and args below the node
  switch (n->kind) {
  case N_PROGRAM: fputs("program", out); break;
  case N_MODEL:
    fprintf(out, "model %s", name_of(n));
    print_loc(out, n->loc);
    break;
  case N_INPUT:
    fprintf(out, "input %s", name_of(n));
    print_loc(out, n->loc);
    break;
  case N_TARGET:
    fprintf(out, "target %s", name_of(n));
    print_loc(out, n->loc);
    break;
  case N_ASSIGN:
    fprintf(out, "assign %s", name_of(n));
    print_loc(out, n->loc);
    break;
  case N_LOSS:
    fputs("loss", out);
    print_loc(out, n->loc);
    break;
  case N_OPTIMIZER:
    fputs("optimizer", out);
    print_loc(out, n->loc);
    break;
  case N_DATA:
    fputs("data", out);
    print_loc(out, n->loc);
    break;
  case N_TRAIN:
    fputs("train", out);
    print_loc(out, n->loc);
    break;
  case N_CALL:
    fprintf(out, "call %s", name_of(n));
    if (n->alias) fprintf(out, " as %s", n->alias);
    print_loc(out, n->loc);
    break;
  case N_IDENT:
    fprintf(out, "ident %s", name_of(n));
    print_loc(out, n->loc);
    break;
  case N_NUM:
    fputs("num ", out);
    print_num(out, n->num, n->is_int);
    break;
  case N_STR:
    fputs("str ", out);
    print_str(out, n->name);
    break;
  case N_BOOL: fputs(n->num != 0 ? "bool true" : "bool false", out); break;
  case N_LIST: fputs("list", out); break;
  case N_KWARG:
    fprintf(out, "kwarg %s", name_of(n));
    print_loc(out, n->loc);
    break;
  case N_PIPE: fputs("pipe", out); break;
  case N_BINOP: fprintf(out, "binop %c", n->op ? n->op : '?'); break;
  case N_NEG: fputs("neg", out); break;
  case N_TSHAPE:
    if (n->name) fprintf(out, "%s ", n->name);
    fputs("shape [", out);
    for (int i = 0; i < n->nargs; i++) {
      if (i) fputs(", ", out);
      if (n->args[i]) print_num(out, n->args[i]->num, n->args[i]->is_int);
      else fputs("?", out);
    }
    fputs("]", out);
    children = false;
    break;
  case N_TCLASS:
    fputs("class ", out);
    print_num(out, n->num, true);
    break;
  case N_RECUR:
    fprintf(out, "recurrent over %s", name_of(n));
    print_loc(out, n->loc);
    break;
  case N_STATE:
    fprintf(out, "state %s", name_of(n));
    print_loc(out, n->loc);
    break;
  case N_EMIT:
    fputs("emit", out);
    print_loc(out, n->loc);
    break;
  case N_INDEX: fputs("index", out); break;
  case N_FREEZE:
    fputs("freeze", out);
    print_loc(out, n->loc);
    break;
  case N_RANGE: fputs(n->lhs ? "range" : "up to", out); break;
  default: fprintf(out, "node#%d", (int)n->kind); break;
  }
  fputc('\n', out);
  if (!children) return;
  if (n->lhs) dump(out, n->lhs, depth + 1);
  if (n->rhs) dump(out, n->rhs, depth + 1);
  for (int i = 0; i < n->nargs; i++) dump(out, n->args[i], depth + 1);
}

void ast_dump(FILE *out, const Node *n) { dump(out, n, 0); }
