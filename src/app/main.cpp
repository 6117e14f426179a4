// relaybait: the only code the tests do not link. Everything lives in the components.
#include "cli/app.hpp"

int main(int argc, char** argv) { return relaybait::cli::run(argc, argv); }
