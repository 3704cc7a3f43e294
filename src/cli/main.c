/* kiln command line: dispatches to the subcommands.
 * Contract: src/cli/cli.h. */
#include <stdio.h>
int main(void) { return 0; }
