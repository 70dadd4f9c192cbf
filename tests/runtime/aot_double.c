// aot_double.c - a TEST DOUBLE for a generated object file: it defines the four
// symbols runtime/aot_main.c expects (fnn_desc and the three entry points), so
// tests/runtime/run.sh can link and run an "ahead-of-time trainer" without the
// compiler. The entry points only report a constant loss.
#include "fnnrt.h"

const char fnn_desc[] =
    "fnn 1\n"
    "model stub\n"
    "input 3 1 28 28\n"
    "target class 10\n"
    "batch 32\nepochs 1\nseed 7\nshuffle 0\n"
    "optimizer adam 0.001 0.9 0.999 1e-08 0 0\n"
    "normalize 0.1307 0.3081\n"
    "train idx \"mnist/train-images-idx3-ubyte\" \"mnist/train-labels-idx1-ubyte\"\n"
    "params 7850 2\n"
    "param \"fc.weight\" 0 0 784 kaiming_uniform 2 10 784\n"
    "param fc.bias 7840 7840 784 bias_uniform 1 10\n"
    "state 2 7850\n"
    "scratch 0\n"
    "work 10 16\n"
    "end\n";

void fnn_train_step(FnnArgs *a) { a->out[0] = 1.0f; }
void fnn_eval_step(FnnArgs *a) { a->out[0] = 1.0f, a->out[1] = 0; }
void fnn_grad_step(FnnArgs *a) { a->out[0] = 1.0f; }
