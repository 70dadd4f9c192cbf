/* parser.y: the grammar of .fnn programs and the AST builder.
 *
 *   program  = section*
 *   section  = "model" NAME "{" mstmt* "}" | "optimizer" call
 *            | "data" "{" dstmt* "}"       | "train" "{" kwarg* "}"
 *   mstmt    = "input" NAME ":" type | "target" NAME ":" type
 *            | NAME "=" expr | "loss" expr | "freeze" fitem ("," fitem)*
 *   fitem    = NAME | NAME "." NAME | NAME ".." NAME | "up" "to" NAME
 *   dstmt    = ("train" | "test" | NAME) "=" call | call
 *   type     = "[" INT ("," INT)* "]" | "class" "(" INT ")"
 *            | NAME "[" INT "]"                        tokens[T]: T token ids
 *   expr     = sum ("->" stage)*          stage = (NAME | call) ("as" NAME)?
 *   sum      = prod (("+" | "-") prod)*   prod  = unary (("*" | "/") unary)*
 *   unary    = "-" unary | primary
 *   primary  = NUMBER | STRING | "true" | "false" | NAME | call ("as" NAME)?
 *            | "(" expr ")" | "[" (expr ("," expr)*)? "]"
 *            | NAME "[" expr "]"                       a time step of a sequence
 *            | "recurrent" "over" NAME "in" NAME "{" rstmt* "}"
 *   rstmt    = "state" NAME ":" type "=" expr | NAME "=" expr | "emit" expr
 *   call     = NAME "(" (arg ("," arg)*)? ")"    arg = expr | NAME "=" expr
 *
 * Statements end at a newline or ';'. Newlines are filtered between the
 * scanner and the parser (see yylex below): inside ( ) and [ ] they are
 * ignored, a line starting with "->" continues the previous one, and runs of
 * blank lines count once.
 *
 * Error recovery: inside a block a bad statement is skipped up to the next
 * newline, ';' or '}' and parsing goes on (yyerrok), so every bad line gets its
 * own message. At the top level, tokens are skipped until the next section
 * keyword. Messages are written by yyreport_syntax_error from the expected
 * tokens (LAC makes that set exact).
 */

%require "3.6"
%define api.pure full
%define api.token.prefix {TK_}
%define parse.error custom
%define parse.lac full
%locations
%param {yyscan_t scanner} {Parser *P}

%code requires {
#include "fnnc.h"

#ifndef YY_TYPEDEF_YY_SCANNER_T
#define YY_TYPEDEF_YY_SCANNER_T
typedef void *yyscan_t;
#endif

// The scanner's state (flex "extra" data): position of the next character.
typedef struct LexState {
  const Source *src;
  int line, col;   // 1-based, col in bytes
  size_t off;      // byte offset of the next character
  size_t tok_off;  // byte offset of the last token
  size_t bad_end;  // offset just past the last invalid character (runs report once)
} LexState;

typedef struct Parser Parser;
}

%code provides {
// The flex scanner (grammar/lexer.l); parser.y filters its tokens.
int fnn_lex_raw(YYSTYPE *yylval_param, YYLTYPE *yylloc_param, yyscan_t yyscanner);
}

%union {
  Node *node;
  char *str;
  struct { double v; bool is_int; } num;
  Vec vec;
}

%token <str> IDENT "name" STR "string"
%token <num> NUM "number"
%token MODEL "'model'" INPUT "'input'" TARGET "'target'" LOSS "'loss'"
%token OPTIMIZER "'optimizer'" DATA "'data'" TRAIN "'train'" TEST "'test'"
%token CLASS "'class'" AS "'as'" TRUE "'true'" FALSE "'false'"
%token RECURRENT "'recurrent'" OVER "'over'" IN "'in'" STATE "'state'" EMIT "'emit'"
%token ARROW "'->'" DOTDOT "'..'" FREEZE "'freeze'"
%token NL "newline"

%type <vec> items mstmts dstmts tlist dims exprs args rstmts fitems
%type <node> section model_sec optimizer_sec data_sec train_sec
%type <node> fitem mstmt dstmt kwarg type expr stage sum prod unary primary call arg recur rstmt
%type <str> dname

%code {
#include <limits.h>
#include <string.h>

// Parser state shared by yyparse, the token filter and the error reporter.
struct Parser {
  const Source *src;
  LexState lex;
  Node *root;
  // Token filter (yylex).
  int paren;        // depth of ( and [
  int braces;       // depth of { (only used to tell top-level lines apart)
  int prev;         // the last token handed to the parser (0: none yet)
  bool have_pend;   // a token read ahead of time
  int pend;
  YYSTYPE pend_val;
  YYLTYPE pend_loc;
  size_t pend_off, pend_len;
  // The last two tokens handed to the parser: text (byte range) and kind.
  size_t cur_off, cur_len, old_off, old_len;
  int old;
  YYLTYPE brace_loc;  // the last '{'
  YYLTYPE end_loc;    // just past the last token that was not a newline
  int errors0;        // error_count() when parsing started
  bool stopped;       // too many errors: the rest of the file is ignored
};

// Stop after this many errors in one file: later ones are mostly noise.
#define MAX_ERRORS 20

static int yylex(YYSTYPE *lval, YYLTYPE *lloc, yyscan_t scanner, Parser *P);
static void yyerror(const YYLTYPE *lloc, yyscan_t scanner, Parser *P, const char *msg);

static Loc mkloc(Parser *P, YYLTYPE l) {
  Loc loc = {P->src, l.first_line, l.first_column, 1};
  if (l.last_line == l.first_line && l.last_column > l.first_column)
    loc.len = l.last_column - l.first_column;
  return loc;
}

static Node *mk(Parser *P, NodeKind k, YYLTYPE l) {
  Node *n = arena_alloc(sizeof *n);
  n->kind = k;
  n->loc = mkloc(P, l);
  return n;
}

static Node *mk_named(Parser *P, NodeKind k, YYLTYPE l, const char *name, Node *lhs) {
  Node *n = mk(P, k, l);
  n->name = name;
  n->lhs = lhs;
  return n;
}

static Node *with_args(Node *n, Vec v) {
  n->nargs = v.len;
  if (v.len) {
    n->args = arena_alloc(sizeof(Node *) * (size_t)v.len);
    for (int i = 0; i < v.len; i++) n->args[i] = v.data[i];
  }
  return n;
}

static Vec vec1(Node *n) {
  Vec v = {0};
  vec_push(&v, n);
  return v;
}

static Node *set_alias(Parser *P, Node *call, const char *alias, YYLTYPE l) {
  call->alias = alias;
  call->alias_loc = mkloc(P, l);
  return call;
}

static Node *binop(Parser *P, char op, Node *a, Node *b, YYLTYPE l) {
  Node *n = mk(P, N_BINOP, l);
  n->op = op;
  n->lhs = a;
  n->rhs = b;
  return n;
}

// A type's sizes must be written as integers.
static Node *int_num(Parser *P, double v, bool is_int, YYLTYPE l, const char *what) {
  Node *n = mk(P, N_NUM, l);
  n->num = v;
  n->is_int = is_int;
  if (!is_int) error_at(n->loc, "%s must be an integer, got %g", what, v);
  return n;
}
}

%%

program
  : items                 { P->root = with_args(mk(P, N_PROGRAM, (YYLTYPE){1, 1, 1, 2}), $1); }
  ;

items
  : %empty                { $$ = (Vec){0}; }
  | items section         { $$ = $1; vec_push(&$$, $2); }
  | items NL              { $$ = $1; if (P->braces == 0) yyerrok; }  /* a fresh line */
  | items ';'             { $$ = $1; }
  | items error           { $$ = $1; }  /* skips tokens up to the next section keyword */
  ;

section: model_sec | optimizer_sec | data_sec | train_sec ;

/* Each section keyword ends error recovery: whatever came before it, a new
   section starts here and deserves its own messages. */
kw_model     : MODEL      { yyerrok; } ;
kw_optimizer : OPTIMIZER  { yyerrok; } ;
kw_data      : DATA       { yyerrok; } ;
kw_train     : TRAIN      { yyerrok; } ;

sep: NL | ';' ;

/* --- model --- */

model_sec
  : kw_model IDENT '{' mstmts '}'          { $$ = with_args(mk_named(P, N_MODEL, @2, $2, NULL), $4); }
  | kw_model IDENT '{' mstmts mstmt '}'    { vec_push(&$4, $5); $$ = with_args(mk_named(P, N_MODEL, @2, $2, NULL), $4); }
  | kw_model IDENT '{' mstmts error '}'    { yyerrok; $$ = with_args(mk_named(P, N_MODEL, @2, $2, NULL), $4); }
  ;

mstmts
  : %empty                { $$ = (Vec){0}; }
  | mstmts sep            { $$ = $1; }
  | mstmts mstmt sep      { $$ = $1; vec_push(&$$, $2); }
  | mstmts error sep      { $$ = $1; yyerrok; }
  ;

mstmt
  : INPUT IDENT ':' type  { $$ = mk_named(P, N_INPUT, @1, $2, $4); }
  | TARGET IDENT ':' type { $$ = mk_named(P, N_TARGET, @1, $2, $4); }
  | IDENT '=' expr        { $$ = mk_named(P, N_ASSIGN, @1, $1, $3); }
  | LOSS expr             { $$ = mk(P, N_LOSS, @1); $$->lhs = $2; }
  | FREEZE fitems         { $$ = with_args(mk(P, N_FREEZE, @1), $2); }
  ;

/* What a freeze statement names: a layer, one of its tensors (conv1.weight),
   a range of layers in the order they were defined, or every layer up to one. */
fitems
  : fitem                 { $$ = vec1($1); }
  | fitems ',' fitem      { $$ = $1; vec_push(&$$, $3); }
  ;

fitem
  : IDENT                 { $$ = mk_named(P, N_IDENT, @1, $1, NULL); }
  | IDENT '.' IDENT       { $$ = mk_named(P, N_IDENT, @$, $1, NULL); $$->rhs = mk_named(P, N_IDENT, @3, $3, NULL); }
  | IDENT DOTDOT IDENT    { $$ = mk(P, N_RANGE, @$); $$->lhs = mk_named(P, N_IDENT, @1, $1, NULL);
                            $$->rhs = mk_named(P, N_IDENT, @3, $3, NULL); }
  | IDENT IDENT IDENT     { $$ = mk(P, N_RANGE, @$); $$->rhs = mk_named(P, N_IDENT, @3, $3, NULL);
                            if (strcmp($1, "up") || strcmp($2, "to"))
                              error_at(mkloc(P, @1), "expected 'NAME', 'A..B' or 'up to NAME' after 'freeze'"); }
  ;

type
  : '[' dims ']'          { $$ = with_args(mk(P, N_TSHAPE, @$), $2); }
  | IDENT '[' dims ']'    { $$ = with_args(mk_named(P, N_TSHAPE, @$, $1, NULL), $3); }
  | CLASS '(' NUM ')'     {
                            $$ = mk(P, N_TCLASS, @$);
                            $$->num = $3.v;
                            if (!$3.is_int) error_at(mkloc(P, @3), "the number of classes must be an integer, got %g", $3.v);
                          }
  ;

dims
  : NUM                   { $$ = vec1(int_num(P, $1.v, $1.is_int, @1, "a dimension")); }
  | dims ',' NUM          { $$ = $1; vec_push(&$$, int_num(P, $3.v, $3.is_int, @3, "a dimension")); }
  ;

/* --- optimizer --- */

optimizer_sec
  : kw_optimizer call     { $$ = mk(P, N_OPTIMIZER, @1); $$->lhs = $2; }
  ;

/* --- data --- */

data_sec
  : kw_data '{' dstmts '}'          { $$ = with_args(mk(P, N_DATA, @1), $3); }
  | kw_data '{' dstmts dstmt '}'    { vec_push(&$3, $4); $$ = with_args(mk(P, N_DATA, @1), $3); }
  | kw_data '{' dstmts error '}'    { yyerrok; $$ = with_args(mk(P, N_DATA, @1), $3); }
  ;

dstmts
  : %empty                { $$ = (Vec){0}; }
  | dstmts sep            { $$ = $1; }
  | dstmts dstmt sep      { $$ = $1; vec_push(&$$, $2); }
  | dstmts error sep      { $$ = $1; yyerrok; }
  ;

dstmt
  : dname '=' call        { $$ = mk_named(P, N_ASSIGN, @1, $1, $3); }
  | call
  ;

dname
  : IDENT
  | TRAIN                 { $$ = arena_strdup("train"); }
  | TEST                  { $$ = arena_strdup("test"); }
  ;

/* --- train --- */

train_sec
  : kw_train '{' tlist '}'          { $$ = with_args(mk(P, N_TRAIN, @1), $3); }
  | kw_train '{' tlist kwarg '}'    { vec_push(&$3, $4); $$ = with_args(mk(P, N_TRAIN, @1), $3); }
  | kw_train '{' tlist error '}'    { yyerrok; $$ = with_args(mk(P, N_TRAIN, @1), $3); }
  ;

tlist
  : %empty                { $$ = (Vec){0}; }
  | tlist tsep            { $$ = $1; }
  | tlist kwarg tsep      { $$ = $1; vec_push(&$$, $2); }
  | tlist error tsep      { $$ = $1; yyerrok; }
  ;

tsep: ',' | NL | ';' ;

kwarg
  : IDENT '=' expr        { $$ = mk_named(P, N_KWARG, @1, $1, $3); }
  ;

/* --- expressions --- */

expr
  : sum
  | expr ARROW stage      { $$ = mk(P, N_PIPE, @2); $$->lhs = $1; $$->rhs = $3; }
  ;

stage
  : IDENT                 { $$ = mk_named(P, N_IDENT, @1, $1, NULL); }
  | IDENT AS IDENT        { $$ = set_alias(P, mk_named(P, N_CALL, @1, $1, NULL), $3, @3); }
  | call
  | call AS IDENT         { $$ = set_alias(P, $1, $3, @3); }
  ;

sum
  : prod
  | sum '+' prod          { $$ = binop(P, '+', $1, $3, @2); }
  | sum '-' prod          { $$ = binop(P, '-', $1, $3, @2); }
  ;

prod
  : unary
  | prod '*' unary        { $$ = binop(P, '*', $1, $3, @2); }
  | prod '/' unary        { $$ = binop(P, '/', $1, $3, @2); }
  ;

unary
  : primary
  | '-' unary             {
                            if ($2->kind == N_NUM) {  /* a negative literal stays a literal */
                              $$ = $2;
                              $$->num = -$$->num;
                              $$->loc = mkloc(P, @$);
                            } else {
                              $$ = mk(P, N_NEG, @1);
                              $$->lhs = $2;
                            }
                          }
  ;

primary
  : NUM                   { $$ = mk(P, N_NUM, @1); $$->num = $1.v; $$->is_int = $1.is_int; }
  | STR                   { $$ = mk_named(P, N_STR, @1, $1, NULL); }
  | TRUE                  { $$ = mk(P, N_BOOL, @1); $$->num = 1; }
  | FALSE                 { $$ = mk(P, N_BOOL, @1); $$->num = 0; }
  | IDENT                 { $$ = mk_named(P, N_IDENT, @1, $1, NULL); }
  | call
  | call AS IDENT         { $$ = set_alias(P, $1, $3, @3); }
  | '(' expr ')'          { $$ = $2; }
  | '[' ']'               { $$ = mk(P, N_LIST, @$); }
  | '[' exprs ']'         { $$ = with_args(mk(P, N_LIST, @$), $2); }
  | IDENT '[' expr ']'    { $$ = mk(P, N_INDEX, @$); $$->lhs = mk_named(P, N_IDENT, @1, $1, NULL); $$->rhs = $3; }
  | recur
  ;

/* --- recurrent blocks --- */

recur
  : RECURRENT OVER IDENT IN IDENT '{' rstmts '}'
                          { $$ = with_args(mk_named(P, N_RECUR, @1, $3, mk_named(P, N_IDENT, @5, $5, NULL)), $7); }
  | RECURRENT OVER IDENT IN IDENT '{' rstmts rstmt '}'
                          { vec_push(&$7, $8); $$ = with_args(mk_named(P, N_RECUR, @1, $3, mk_named(P, N_IDENT, @5, $5, NULL)), $7); }
  | RECURRENT OVER IDENT IN IDENT '{' rstmts error '}'
                          { yyerrok; $$ = with_args(mk_named(P, N_RECUR, @1, $3, mk_named(P, N_IDENT, @5, $5, NULL)), $7); }
  ;

rstmts
  : %empty                { $$ = (Vec){0}; }
  | rstmts sep            { $$ = $1; }
  | rstmts rstmt sep      { $$ = $1; vec_push(&$$, $2); }
  | rstmts error sep      { $$ = $1; yyerrok; }
  ;

rstmt
  : STATE IDENT ':' type '=' expr
                          { $$ = mk_named(P, N_STATE, @2, $2, $4); $$->rhs = $6; }
  | IDENT '=' expr        { $$ = mk_named(P, N_ASSIGN, @1, $1, $3); }
  | EMIT expr             { $$ = mk(P, N_EMIT, @1); $$->lhs = $2; }
  ;

exprs
  : expr                  { $$ = vec1($1); }
  | exprs ',' expr        { $$ = $1; vec_push(&$$, $3); }
  ;

call
  : IDENT '(' ')'         { $$ = mk_named(P, N_CALL, @1, $1, NULL); }
  | IDENT '(' args ')'    { $$ = with_args(mk_named(P, N_CALL, @1, $1, NULL), $3); }
  ;

args
  : arg                   { $$ = vec1($1); }
  | args ',' arg          { $$ = $1; vec_push(&$$, $3); }
  ;

arg
  : expr
  | IDENT '=' expr        { $$ = mk_named(P, N_KWARG, @1, $1, $3); }
  | TARGET '=' expr       { $$ = mk_named(P, N_KWARG, @1, arena_strdup("target"), $3); }  /* csv(..., target="COLUMN") */
  ;

%%

//
// The token filter between the scanner and the parser: decides which newlines
// are statement ends.
//

static bool ends_operand(int t) {
  return t == TK_IDENT || t == TK_NUM || t == TK_STR || t == TK_TRUE || t == TK_FALSE || t == ')' ||
         t == ']';
}

// Tokens that cannot start a statement, so a line starting with one inside
// brackets continues the previous line.
static bool continues(int t) {
  return t == ')' || t == ']' || t == ',' || t == '+' || t == '-' || t == '*' || t == '/' ||
         t == '=' || t == ':' || t == TK_ARROW || t == TK_AS;
}

static int next_raw(YYSTYPE *lval, YYLTYPE *lloc, yyscan_t scanner, Parser *P, size_t *off,
                    size_t *len) {
  if (P->have_pend) {
    P->have_pend = false;
    *lval = P->pend_val;
    *lloc = P->pend_loc;
    *off = P->pend_off;
    *len = P->pend_len;
    return P->pend;
  }
  int t = fnn_lex_raw(lval, lloc, scanner);
  if (t == TK_YYEOF) {
    // End of file: report it just past the last real token, not on a phantom line.
    *lloc = P->end_loc;
    *off = P->lex.off;
    *len = 0;
    return t;
  }
  *off = P->lex.tok_off;
  *len = P->lex.off - P->lex.tok_off;
  if (t != TK_NL) {
    P->end_loc = *lloc;
    P->end_loc.first_line = lloc->last_line;
    P->end_loc.first_column = lloc->last_column;
    P->end_loc.last_column = lloc->last_column + 1;
  } else {
    // A newline token spans to the next line; keep only its first column.
    lloc->last_line = lloc->first_line;
    lloc->last_column = lloc->first_column + 1;
  }
  return t;
}

static int yylex(YYSTYPE *lval, YYLTYPE *lloc, yyscan_t scanner, Parser *P) {
  size_t off, len;
  int t;
  if (P->stopped || error_count() - P->errors0 >= MAX_ERRORS) {
    if (!P->stopped) hint("too many errors, giving up on '%s'", P->src->path);
    P->stopped = true;
    *lloc = P->end_loc;
    return TK_YYEOF;
  }
  for (;;) {
    t = next_raw(lval, lloc, scanner, P, &off, &len);
    if (t != TK_NL) break;
    // Look past blank and comment lines at the first token of the next line.
    YYSTYPE v;
    YYLTYPE l;
    size_t o, n;
    int u;
    do u = next_raw(&v, &l, scanner, P, &o, &n);
    while (u == TK_NL);
    P->have_pend = true;
    P->pend = u;
    P->pend_val = v;
    P->pend_loc = l;
    P->pend_off = o;
    P->pend_len = n;
    bool keep;
    if (u == TK_ARROW || u == TK_YYEOF)
      keep = false;  // a continuation line, or nothing left to end
    else if (P->paren > 0)
      // Inside brackets a newline only matters where the line is clearly
      // complete and the next one starts something new: then the bracket was
      // never closed, and the parser should say so here.
      keep = ends_operand(P->prev) && !continues(u);
    else
      keep = P->prev != 0 && P->prev != TK_NL && P->prev != ';' && P->prev != '{';
    if (keep) {
      P->paren = 0;
      break;
    }
  }
  // A section keyword at the start of a line inside a block: the block was
  // never closed. Say so, and close it here so the next section parses.
  if ((t == TK_MODEL || t == TK_OPTIMIZER || t == TK_DATA) && P->braces > 0 &&
      (P->prev == TK_NL || P->prev == ';' || P->prev == '{')) {
    error_at(mkloc(P, *lloc), "expected '}' before '%.*s'", (int)len, P->src->text + off);
    hint("the '{' on line %d is never closed", P->brace_loc.first_line);
    P->have_pend = true;
    P->pend = t;
    P->pend_val = *lval;
    P->pend_loc = *lloc;
    P->pend_off = off;
    P->pend_len = len;
    t = '}';
    len = 0;
  }
  switch (t) {
  case '(':
  case '[': P->paren++; break;
  case ')':
  case ']':
    if (P->paren > 0) P->paren--;
    break;
  case '{':
    P->brace_loc = *lloc;
    P->braces++;
    P->paren = 0;  // braces never nest inside brackets
    break;
  case '}':
    if (P->braces > 0) P->braces--;
    P->paren = 0;
    break;
  default: break;
  }
  P->old = P->prev;
  P->old_off = P->cur_off;
  P->old_len = P->cur_len;
  P->prev = t;
  P->cur_off = off;
  P->cur_len = len;
  return t;
}

//
// Syntax error messages.
//

// How a token kind is named in messages ("'model'", "name", "')'").
static const char *kind_name(yysymbol_kind_t k) {
  switch (k) {
  case YYSYMBOL_YYEOF: return "end of file";
  case YYSYMBOL_IDENT: return "name";
  case YYSYMBOL_NUM: return "number";
  case YYSYMBOL_STR: return "string";
  case YYSYMBOL_NL: return "newline";
  default: return yysymbol_name(k);
  }
}

// The token the parser choked on, with its text when that helps:
// "'kernal'", "number '3'", "string \"abc\"", "'='", "newline".
static char *describe(Parser *P, yysymbol_kind_t k) {
  const char *text = P->src->text + P->cur_off;
  int n = (int)P->cur_len;
  const char *more = "";
  if (n > 32) {
    n = 29;
    more = "...";
  }
  switch (k) {
  case YYSYMBOL_IDENT: return arena_printf("'%.*s%s'", n, text, more);
  case YYSYMBOL_NUM: return arena_printf("number '%.*s%s'", n, text, more);
  case YYSYMBOL_STR: return arena_printf("string %.*s%s", n, text, more);
  default: return (char *)kind_name(k);
  }
}

// The symbol kind of a single-character token.
#define SYM(c) ((yysymbol_kind_t)YYTRANSLATE(c))

static bool has(const yysymbol_kind_t *exp, int n, yysymbol_kind_t k) {
  for (int i = 0; i < n; i++)
    if (exp[i] == k) return true;
  return false;
}

static bool is_operator(yysymbol_kind_t k) {
  return k == YYSYMBOL_ARROW || k == YYSYMBOL_AS || k == SYM('+') || k == SYM('-') ||
         k == SYM('*') || k == SYM('/');
}

static bool starts_expr(yysymbol_kind_t k) {
  return k == YYSYMBOL_NUM || k == YYSYMBOL_STR || k == YYSYMBOL_TRUE || k == YYSYMBOL_FALSE ||
         k == SYM('(') || k == SYM('[') || k == SYM('-') || k == YYSYMBOL_IDENT;
}

static const char *const section_words[] = {"model", "optimizer", "data", "train", NULL};
static const char *const stmt_words[] = {"input", "target", "loss", "freeze", NULL};

static int yyreport_syntax_error(const yypcontext_t *ctx, yyscan_t scanner, Parser *P) {
  (void)scanner;
  if (P->stopped) return 0;
  yysymbol_kind_t tok = yypcontext_token(ctx);
  Loc loc = mkloc(P, *yypcontext_location(ctx));
  yysymbol_kind_t exp[YYNTOKENS];
  int n = yypcontext_expected_tokens(ctx, exp, YYNTOKENS);
  if (n < 0) n = 0;
  const char *what = describe(P, tok);
  const char *text = P->src->text + P->cur_off;
  char *word = tok == YYSYMBOL_IDENT ? arena_strndup(text, P->cur_len) : NULL;

  // Unknown section at the top level.
  if (has(exp, n, YYSYMBOL_MODEL)) {
    if (word) {
      error_at(loc, "unknown section %s", what);
      const char *near = closest_word(word, section_words);
      if (near) hint("did you mean '%s'?", near);
      else hint("a program is made of 'model', 'optimizer', 'data' and 'train' sections");
    } else {
      error_at(loc, "expected 'model', 'optimizer', 'data' or 'train' before %s", what);
    }
    return 0;
  }
  // Inside brackets: an unclosed bracket is the most useful thing to point
  // out, unless two operands in a row suggest a missing comma.
  for (int b = 0; b < 2; b++) {
    yysymbol_kind_t close = b == 0 ? SYM(')') : SYM(']');
    if (!has(exp, n, close)) continue;
    bool operand = tok != YYSYMBOL_NL && tok != YYSYMBOL_YYEOF && starts_expr(tok);
    if (operand && has(exp, n, SYM(',')))
      error_at(loc, "expected ',' or '%c' before %s", b == 0 ? ')' : ']', what);
    else
      error_at(loc, "expected '%c' before %s", b == 0 ? ')' : ']', what);
    return 0;
  }
  if (tok == YYSYMBOL_YYEOF && has(exp, n, SYM('}'))) {
    error_at(loc, "expected '}' before end of file");
    hint("the '{' on line %d is never closed", P->brace_loc.first_line);
    return 0;
  }
  // Start of a model statement.
  if (has(exp, n, YYSYMBOL_INPUT)) {
    error_at(loc, "expected 'input', 'target', 'loss', 'freeze' or an assignment before %s", what);
    return 0;
  }
  if (has(exp, n, YYSYMBOL_NUM)) {
    error_at(loc, "expected expression before %s", what);
    return 0;
  }
  // A complete statement followed by more stuff.
  if (has(exp, n, YYSYMBOL_NL) && has(exp, n, SYM(',')) && tok != YYSYMBOL_NL) {
    error_at(loc, "expected ',' or newline before %s", what);
    return 0;
  }
  if (has(exp, n, YYSYMBOL_NL) && tok != YYSYMBOL_NL) {
    error_at(loc, "expected newline or ';' before %s", what);
    return 0;
  }
  // Otherwise list what would have been fine, leaving out operators when
  // something else fits (nobody forgets a '+').
  yysymbol_kind_t keep[YYNTOKENS];
  int m = 0;
  for (int i = 0; i < n; i++)
    if (!is_operator(exp[i])) keep[m++] = exp[i];
  if (m == 0) {
    m = n;
    memcpy(keep, exp, sizeof(yysymbol_kind_t) * (size_t)n);
  }
  if (m == 0 || m > 4) {
    error_at(loc, "unexpected %s", what);
  } else {
    char buf[256];
    size_t len = 0;
    for (int i = 0; i < m; i++) {
      const char *sepstr = i == 0 ? "" : i == m - 1 ? " or " : ", ";
      len += (size_t)snprintf(buf + len, sizeof buf - len, "%s%s", sepstr, kind_name(keep[i]));
      if (len >= sizeof buf) break;
    }
    error_at(loc, "expected %s before %s", buf, what);
  }
  // "inptu x: [1]": the statement keyword was misspelled.
  if (m == 1 && keep[0] == SYM('=') && P->old == TK_IDENT) {
    char *prevword = arena_strndup(P->src->text + P->old_off, P->old_len);
    const char *near = closest_word(prevword, stmt_words);
    if (near) hint("did you mean '%s'?", near);
  }
  return 0;
}

static void yyerror(const YYLTYPE *lloc, yyscan_t scanner, Parser *P, const char *msg) {
  (void)scanner;
  if (strcmp(msg, "memory exhausted") == 0)
    error_at(mkloc(P, *lloc), "nesting is too deep for the parser");
  else
    error_at(mkloc(P, *lloc), "%s", msg);
}

//
// Entry point.
//

// Defined by the flex scanner (grammar/lexer.l).
struct yy_buffer_state;
int yylex_init_extra(LexState *extra, yyscan_t *scanner);
struct yy_buffer_state *yy_scan_bytes(const char *bytes, int len, yyscan_t scanner);
int yylex_destroy(yyscan_t scanner);

Node *parse_file(Source *src) {
  int errors = error_count();
  if (src->len > INT_MAX / 2) {
    error_plain("'%s' is too large", src->path);
    return NULL;
  }
  Parser *P = arena_alloc(sizeof *P);
  P->src = src;
  P->lex.src = src;
  P->lex.line = 1;
  P->lex.col = 1;
  P->end_loc = (YYLTYPE){1, 1, 1, 2};
  P->errors0 = errors;
  yyscan_t scanner;
  if (yylex_init_extra(&P->lex, &scanner) != 0) die("cannot create the scanner");
  if (!yy_scan_bytes(src->text, (int)src->len, scanner)) die("cannot create the scanner buffer");
  int rc = yyparse(scanner, P);
  yylex_destroy(scanner);
  if (rc != 0 && error_count() == errors) error_at(mkloc(P, P->end_loc), "syntax error");
  if (rc != 0 || error_count() > errors) return NULL;
  return P->root;
}
