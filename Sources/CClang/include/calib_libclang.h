/* libclang (Debian's LLVM 14), opened at run time: only the check of generated C uses it, so a
 * calibc copied to a machine without LLVM (a GPU machine that compiles the CUDA target) still
 * runs, and says once that its C went unchecked. */
#pragma once
#include <clang-c/Index.h>

struct calib_libclang {
    __typeof__(clang_createIndex) *createIndex;
    __typeof__(clang_disposeIndex) *disposeIndex;
    __typeof__(clang_parseTranslationUnit2) *parseTranslationUnit2;
    __typeof__(clang_disposeTranslationUnit) *disposeTranslationUnit;
    __typeof__(clang_getNumDiagnostics) *getNumDiagnostics;
    __typeof__(clang_getDiagnostic) *getDiagnostic;
    __typeof__(clang_disposeDiagnostic) *disposeDiagnostic;
    __typeof__(clang_getDiagnosticSeverity) *getDiagnosticSeverity;
    __typeof__(clang_formatDiagnostic) *formatDiagnostic;
    __typeof__(clang_defaultDiagnosticDisplayOptions) *defaultDiagnosticDisplayOptions;
    __typeof__(clang_getCString) *getCString;
    __typeof__(clang_disposeString) *disposeString;
};

/* The library's entry points, or NULL with *why set to the loader's message (the pointers stay
 * valid for the life of the process). */
const struct calib_libclang *calib_libclang_open(const char **why);
