#include "calib_libclang.h"

#include <dlfcn.h>
#include <pthread.h>

static struct calib_libclang lib;
static const char *failure;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void load(void) {
    void *h = dlopen("libclang-14.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        failure = dlerror();
        return;
    }
#define BIND(field, symbol)                                             \
    if (!(lib.field = (__typeof__(lib.field))dlsym(h, #symbol))) {      \
        failure = dlerror();                                            \
        return;                                                         \
    }
    BIND(createIndex, clang_createIndex)
    BIND(disposeIndex, clang_disposeIndex)
    BIND(parseTranslationUnit2, clang_parseTranslationUnit2)
    BIND(disposeTranslationUnit, clang_disposeTranslationUnit)
    BIND(getNumDiagnostics, clang_getNumDiagnostics)
    BIND(getDiagnostic, clang_getDiagnostic)
    BIND(disposeDiagnostic, clang_disposeDiagnostic)
    BIND(getDiagnosticSeverity, clang_getDiagnosticSeverity)
    BIND(formatDiagnostic, clang_formatDiagnostic)
    BIND(defaultDiagnosticDisplayOptions, clang_defaultDiagnosticDisplayOptions)
    BIND(getCString, clang_getCString)
    BIND(disposeString, clang_disposeString)
#undef BIND
}

const struct calib_libclang *calib_libclang_open(const char **why) {
    pthread_once(&once, load);
    if (failure) {
        *why = failure;
        return 0;
    }
    return &lib;
}
