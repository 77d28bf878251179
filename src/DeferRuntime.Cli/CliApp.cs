using System.CommandLine;
using DeferRuntime.Cli.Storm;
using DeferRuntime.Cli.Torture;
using Spectre.Console;

namespace DeferRuntime.Cli;

/// <summary>
/// The <c>deferrt</c> command line: one subcommand per folder, each a <c>static Command Create()</c>,
/// registered here in one line. <see cref="Run"/> is also what the tests call, in process, with their
/// own console.
/// </summary>
internal static class CliApp
{
    private static readonly AsyncLocal<IAnsiConsole?> s_console = new();

    /// <summary>Where the running command writes (the process console, or a test's).</summary>
    public static IAnsiConsole Console => s_console.Value ?? AnsiConsole.Console;

    public static RootCommand CreateRoot()
    {
        var root = new RootCommand("deferrt: the DeferRuntime tool. The Linux kernel's interrupt and deferred-work machinery in user space, driven and measured.")
        {
            StormCommand.Create(),
            TortureCommand.Create(),
        };
        return root;
    }

    /// <summary>Parses and runs <paramref name="args"/>; output goes to <paramref name="output"/> (plain text) or the process console.</summary>
    public static int Run(string[] args, TextWriter? output = null)
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
            console.Profile.Width = 200;
        }
        else
        {
            console = AnsiConsole.Console;
            if (System.Console.IsOutputRedirected)
            {
                // A pipe or a file has no width: do not squeeze the tables into 80 columns.
                console.Profile.Width = 200;
            }
        }
        var previous = s_console.Value;
        s_console.Value = console;
        try
        {
            var parse = CreateRoot().Parse(args);
            var writer = output ?? System.Console.Out;
            var config = new InvocationConfiguration { Output = writer, Error = output ?? System.Console.Error };
            if (parse.Errors.Count > 0)
            {
                foreach (var error in parse.Errors)
                {
                    config.Error.WriteLine($"error: {error.Message}");
                }
                config.Error.WriteLine($"run 'deferrt {(args.Length > 0 ? args[0] : "storm")} --help' for the options");
                return StormCommand.ExitUsage;
            }
            return parse.Invoke(config);
        }
        finally
        {
            s_console.Value = previous;
        }
    }
}
