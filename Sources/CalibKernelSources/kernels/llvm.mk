# Debian 12's LLVM 14, the one place its paths are written: libomp-dev (omp.h and the OpenMP
# runtime that the Swift toolchain's clang can use) and libclang-dev (what calibc parses every
# generated C file with). The Makefile includes this file, Package.swift reads it, and calibc
# reads it at run time to build kernel libraries (KernelSources.llvm).
LLVM_LIB = /usr/lib/llvm-14/lib
LLVM_INCLUDE = /usr/lib/llvm-14/include
OMP_INCLUDE = /usr/lib/llvm-14/lib/clang/14.0.6/include
