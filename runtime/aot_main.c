// aot_main.c - the main of every ahead-of-time trainer. `fnnc FILE -o OUT`
// links it with the generated object (which defines the symbols below; a
// trainer has no gradient-check entry, hence the weak reference) and
// build/libfnnrt.a.
#include "fnnrt.h"

extern const char fnn_desc[];
void fnn_train_step(FnnArgs *args);
void fnn_eval_step(FnnArgs *args);
void fnn_grad_step(FnnArgs *args) __attribute__((weak));

int main(int argc, char **argv) {
  FnnModel m = {.desc = fnn_desc,
                .train_step = fnn_train_step,
                .eval_step = fnn_eval_step,
                .grad_step = fnn_grad_step};
  return fnn_main(&m, argc, argv);
}
