using System.CommandLine;
using System.CommandLine.Help;
using System.CommandLine.Invocation;
using DeferRuntime.Cli.Storm;
using DeferRuntime.Cli.Torture;
using Spectre.Console;

namespace DeferRuntime.Cli;

/// <summary>
/// The <c>deferrt</c> command line: one subcommand per folder, each a <c>static Command Create()</c>,
/// registered here in one line. <see cref="Run"/> is also what the tests call, in process, with their
/// own console.
/// </summary>
/// <remarks>
/// Conventions: the report goes to stdout, every error to stderr as "error: ..." with no stack trace;
/// exit codes are <see cref="ExitCodes"/>. <c>deferrt</c> alone prints the usage to stderr and exits 2;
/// <c>deferrt help [command]</c> prints it to stdout and exits 0.
/// </remarks>
internal static class CliApp
{
    private static readonly AsyncLocal<IAnsiConsole?> s_console = new();
    private static readonly AsyncLocal<TextWriter?> s_error = new();

    /// <summary>Where the running command writes (the process console, or a test's).</summary>
    public static IAnsiConsole Console => s_console.Value ?? AnsiConsole.Console;

    /// <summary>Where the running command writes its errors (stderr, or a test's writer).</summary>
    public static TextWriter Error => s_error.Value ?? System.Console.Error;

    public static RootCommand CreateRoot()
    {
        var root = new RootCommand("deferrt: the DeferRuntime tool. The Linux kernel's interrupt and deferred-work machinery in user space, driven and measured.")
        {
            StormCommand.Create(),
            TortureCommand.Create(),
        };
        // One help option serves every command (it is recursive): add the usage hint and the exit codes after it.
        foreach (var help in root.Options.OfType<HelpOption>())
        {
            if (help.Action is HelpAction inner)
            {
                help.Action = new EpilogHelpAction(inner);
            }
        }
        return root;
    }

    /// <summary>Reports a usage error the way a parse error is reported: "error: ..." and a hint, on the error writer.</summary>
    public static int UsageError(string message, string command)
    {
        Error.WriteLine($"error: {ParseErrors.Sanitize(message)}");
        Error.WriteLine($"run 'deferrt {command} --help' for the options");
        return ExitCodes.Usage;
    }

    /// <summary>
    /// Parses and runs <paramref name="args"/>. The report goes to <paramref name="output"/> (plain text) or the
    /// process console; errors to <paramref name="error"/>, else <paramref name="output"/> when given, else stderr.
    /// </summary>
    /// <param name="width">The console width when writing to <paramref name="output"/> (tests: 80 to see what a terminal shows).</param>
    public static int Run(string[] args, TextWriter? output = null, TextWriter? error = null, int width = 200)
    {
        IAnsiConsole console;
        if (output is not null)
        {
            console = AnsiConsole.Create(new AnsiConsoleSettings
            {
                Ansi = AnsiSupport.No,
                ColorSystem = ColorSystemSupport.NoColors,
                Interactive = InteractionSupport.No,
                Out = new AnsiConsoleOutput(output),
            });
            console.Profile.Width = width;
        }
        else
        {
            console = AnsiConsole.Console;
            if (TerminalWidth.FromEnvironment() is { } columns)
            {
                console.Profile.Width = columns;
            }
            else if (System.Console.IsOutputRedirected)
            {
                // A pipe or a file has no width: do not squeeze the tables into 80 columns (COLUMNS=80 does).
                console.Profile.Width = 200;
            }
        }
        var errorWriter = error ?? output ?? System.Console.Error;
        var outWriter = output ?? System.Console.Out;
        var previous = (s_console.Value, s_error.Value);
        s_console.Value = console;
        s_error.Value = errorWriter;
        try
        {
            var root = CreateRoot();
            if (args.Length == 0)
            {
                // No command: the usage, on stderr, and the exit code of a bad command line.
                root.Parse(["--help"]).Invoke(new InvocationConfiguration { Output = errorWriter, Error = errorWriter });
                return ExitCodes.Usage;
            }
            if (args[0] == "help")
            {
                // `deferrt help [command]`: the usage of the command (or of deferrt), on stdout.
                args = [.. args[1..], "--help"];
            }
            var parse = root.Parse(args);
            if (parse.Errors.Count > 0)
            {
                // "Required command was not provided" says nothing an unknown command's error does not.
                // (That message is whatever the parser says for an empty command line, in its language.)
                var noCommand = root.Parse([]).Errors.Select(e => e.Message).ToHashSet();
                var errors = parse.Errors.Count > 1 ? parse.Errors.Where(e => !noCommand.Contains(e.Message)).ToList() : parse.Errors;
                foreach (var e in errors.Count > 0 ? errors : parse.Errors)
                {
                    errorWriter.WriteLine($"error: {ParseErrors.Describe(e)}");
                }
                string path = CommandPath(parse.CommandResult.Command);
                errorWriter.WriteLine($"run 'deferrt {(path.Length > 0 ? path + " " : "")}--help' for {(path.Length > 0 ? "the options" : "the commands")}");
                return ExitCodes.Usage;
            }
            var config = new InvocationConfiguration { Output = outWriter, Error = errorWriter, EnableDefaultExceptionHandler = false };
            try
            {
                return parse.Invoke(config);
            }
            catch (CliUsageException e)
            {
                return UsageError(e.Message, CommandPath(parse.CommandResult.Command));
            }
            catch (OutputWriteException e)
            {
                errorWriter.WriteLine($"error: {e.Message}");
                return ExitCodes.OutputFailed;
            }
            catch (OperationCanceledException)
            {
                errorWriter.WriteLine("interrupted");
                return ExitCodes.Interrupted;
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                errorWriter.WriteLine($"deferrt: internal error: {e.Message}");
                if (Environment.GetEnvironmentVariable("DEFERRT_DEBUG") is { Length: > 0 })
                {
                    errorWriter.WriteLine(e.ToString());
                }
                else
                {
                    errorWriter.WriteLine("(set DEFERRT_DEBUG=1 for the stack trace; please report it)");
                }
                return ExitCodes.InternalError;
            }
        }
        finally
        {
            (s_console.Value, s_error.Value) = previous;
        }
    }

    /// <summary>"storm", "torture", "" for the root.</summary>
    private static string CommandPath(Command command) => command is RootCommand ? "" : command.Name;

    /// <summary>The default help, then how to get a command's help (at the root) and the exit codes.</summary>
    private sealed class EpilogHelpAction(HelpAction inner) : SynchronousCommandLineAction
    {
        public override int Invoke(ParseResult parseResult)
        {
            inner.Invoke(parseResult);
            var output = parseResult.InvocationConfiguration.Output;
            if (parseResult.CommandResult.Command is RootCommand)
            {
                output.WriteLine("Run 'deferrt help <command>' or 'deferrt <command> --help' for a command's options.");
                output.WriteLine();
            }
            output.WriteLine(ExitCodes.HelpText);
            output.WriteLine();
            return ExitCodes.Passed;
        }
    }
}

/// <summary>The width the COLUMNS environment variable asks for, if any.</summary>
internal static class TerminalWidth
{
    public static int? FromEnvironment() =>
        int.TryParse(Environment.GetEnvironmentVariable("COLUMNS"), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int columns) && columns >= 40
            ? columns
            : null;
}
