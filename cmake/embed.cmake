# Turns a text file into a C++ raw string literal include.
file(READ ${INPUT} content)
file(WRITE ${OUTPUT} "R\"relaybait_embed(${content})relaybait_embed\"")
