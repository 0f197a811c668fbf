/*
 * The subcommands of the qstar binary; cli/main.c dispatches argv[1] to one of these. Each takes
 * argv with argv[0] set to the subcommand name and returns the process exit status.
 */
#ifndef QSTAR_COMMANDS_H
#define QSTAR_COMMANDS_H

int cmd_train(int argc, char** argv);
int cmd_info(int argc, char** argv);
int cmd_eval(int argc, char** argv);
int cmd_sample(int argc, char** argv);
int cmd_generate(int argc, char** argv);
int cmd_selftrain(int argc, char** argv);

#endif
