# fnnc - a compiler for neural-network training.
#   make            build bin/fnnc and the runtime library
#   make run        install what is missing, build, fetch MNIST, train models/mnist.fnn
#   make test       the whole test suite (ends with "N passed, N failed")
#   make data       install the real data sets into data/: MNIST, Fashion-MNIST,
#                   diabetes (CSV), the Jargon File (text)
#   make bench      benchmarks (make bench-deps first installs PyTorch and OpenBLAS,
#                   so that the bench compares with PyTorch; the tests never need them)
#   make finetune-demo  transfer learning: MNIST convolutions, frozen, on Fashion-MNIST
#   make lora-demo  LoRA fine-tuning (models/lora.fnn) against full fine-tuning
CC      ?= cc
LLVM_CONFIG ?= llvm-config-19
BUILD   := build
CSTD    := -std=c11 -D_POSIX_C_SOURCE=200809L
WARN    := -Wall -Wextra -Wno-unused-parameter
OPT     ?= -O2 -g
LLVM_CFLAGS := $(shell $(LLVM_CONFIG) --cflags 2>/dev/null | sed 's/-std=[^ ]*//')
# bin/fnnc links LLVM's static libraries: the process starts about 0.06 s
# sooner than with libLLVM-19.so, which counts in `fnnc run`'s compile latency
# (the link takes a few seconds more). LLVM_LINK=shared links the shared library.
LLVM_LINK   ?= static
LLVM_COMPONENTS := core orcjit orcdebugging native passes linker bitwriter bitreader analysis target ipo
ifeq ($(LLVM_LINK),static)
LLVM_LIBS   := $(shell $(LLVM_CONFIG) --link-static --ldflags --libs $(LLVM_COMPONENTS) 2>/dev/null) \
               $(shell $(LLVM_CONFIG) --link-static --system-libs 2>/dev/null)
else
LLVM_LIBS   := $(shell $(LLVM_CONFIG) --ldflags --libs 2>/dev/null)
endif
# LLVM's libraries need the C++ runtime: link with the C++ driver.
LINK    ?= $(CXX)
# A position-dependent bin/fnnc: the loader has no relocations of LLVM's
# tables to apply, and each run starts about 5 ms sooner (26 to 20 ms).
FNNC_LDFLAGS ?= -no-pie
SAN     ?=

RT_SRCS := $(wildcard runtime/*.c)
RT_LIB_SRCS := $(filter-out runtime/aot_main.c,$(RT_SRCS))
RT_OBJS := $(RT_LIB_SRCS:%.c=$(BUILD)/%.o)
CC_SRCS := $(wildcard compiler/*.c)
CC_OBJS := $(CC_SRCS:%.c=$(BUILD)/%.o) $(BUILD)/grammar/parser.o $(BUILD)/grammar/lexer.o

all: bin/fnnc $(BUILD)/libfnnrt.a $(BUILD)/runtime/aot_main.o

# --- runtime (no LLVM) ---
$(BUILD)/runtime/%.o: runtime/%.c runtime/fnnrt.h runtime/rt.h
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(WARN) $(OPT) $(SAN) -fPIC -Iruntime -c $< -o $@

$(BUILD)/libfnnrt.a: $(RT_OBJS)
	rm -f $@ && ar rcs $@ $^

# --- grammar ---
$(BUILD)/grammar/parser.c $(BUILD)/grammar/parser.h &: grammar/parser.y
	@mkdir -p $(BUILD)/grammar
	bison -Wall -Werror -o $(BUILD)/grammar/parser.c --header=$(BUILD)/grammar/parser.h $<

$(BUILD)/grammar/lexer.c: grammar/lexer.l $(BUILD)/grammar/parser.h
	@mkdir -p $(BUILD)/grammar
	flex -o $@ $<

$(BUILD)/grammar/%.o: $(BUILD)/grammar/%.c compiler/fnnc.h compiler/ops.h
	$(CC) $(CSTD) $(OPT) $(SAN) $(LLVM_CFLAGS) -Icompiler -I$(BUILD)/grammar -c $< -o $@

# --- compiler ---
$(BUILD)/compiler/%.o: compiler/%.c compiler/fnnc.h compiler/ops.h runtime/fnnrt.h $(BUILD)/grammar/parser.h
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(WARN) $(OPT) $(SAN) $(LLVM_CFLAGS) -Icompiler -Iruntime -I$(BUILD)/grammar \
	  -DFNNC_LIBDIR='"$(abspath $(BUILD))"' -c $< -o $@

bin/fnnc: $(CC_OBJS) $(BUILD)/libfnnrt.a
	@mkdir -p bin
	$(LINK) $(SAN) $(FNNC_LDFLAGS) -o $@ $(CC_OBJS) $(BUILD)/libfnnrt.a $(LLVM_LIBS) -lz -lm -lpthread

# --- set-up, data, the main job ---
deps:
	sh scripts/install-deps.sh

data:
	sh scripts/fetch-mnist.sh data
	sh scripts/fetch-fashion.sh data
	sh scripts/fetch-diabetes.sh data
	sh scripts/fetch-jargon.sh data

run: deps
	$(MAKE) all
	$(MAKE) data
	bin/fnnc run models/mnist.fnn --epochs 1

test: deps
	$(MAKE) all
	$(MAKE) data
	$(MAKE) test-asan
	sh tests/run.sh

test-asan:
	$(MAKE) BUILD=build-asan OPT="-O1 -g" SAN="-fsanitize=address,undefined -fno-omit-frame-pointer" \
	  LLVM_LINK=shared build-asan/fnnc-asan

build-asan/fnnc-asan: $(CC_OBJS) $(BUILD)/libfnnrt.a
	$(LINK) $(SAN) -o $@ $(CC_OBJS) $(BUILD)/libfnnrt.a $(LLVM_LIBS) -lz -lm -lpthread

bench: all data
	sh bench/run.sh

# PyTorch, the bench's reference, with OpenBLAS's pthreads build: its fastest
# BLAS here (Debian's torch otherwise gets the slow reference BLAS).
bench-deps:
	/usr/bin/python3 -c 'import torch' 2>/dev/null || sh scripts/apt-install.sh python3-torch
	dpkg-query -W -f='$${Status}' libopenblas0-pthread 2>/dev/null | grep -q 'ok installed' || \
	  sh scripts/apt-install.sh libopenblas0-pthread

finetune-demo: all data
	sh scripts/finetune-demo.sh

lora-demo: all data
	sh bench/lora.sh

clean:
	rm -rf build build-asan bin

.PHONY: all deps data run test test-asan bench bench-deps finetune-demo lora-demo clean
