// libclang from Debian's libclang-dev (LLVM 14); the include path is set by CalibCodegen.
#include <clang-c/Index.h>
