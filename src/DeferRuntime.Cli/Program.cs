// deferrt: the DeferRuntime command-line tool. `deferrt storm` drives interrupt storms through every
// bottom-half kind and reports; see README.md. Exit codes (ExitCodes): 0 pass, 1 a check failed (an event
// lost, an identity broken, an injected fault not reported), 2 bad command line, 3 an output file not
// written, 70 internal error, 130 interrupted.
using DeferRuntime.Cli;

return CliApp.Run(args);
