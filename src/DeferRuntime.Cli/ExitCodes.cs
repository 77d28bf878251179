using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;
using System.Text.RegularExpressions;

namespace DeferRuntime.Cli;

/// <summary>
/// The process exit codes of every <c>deferrt</c> command (also in <c>--help</c> and the README).
/// </summary>
internal static class ExitCodes
{
    /// <summary>Every run passed.</summary>
    public const int Passed = 0;

    /// <summary>A check failed: an event lost, an identity broken, an injected fault not reported, a torture check.</summary>
    public const int CheckFailed = 1;

    /// <summary>A bad command line: an unknown option, a value out of range, an output path that cannot be written. Nothing ran.</summary>
    public const int Usage = 2;

    /// <summary>The run finished but an output file (--json, --csv, --plot, --hgrm, --histogram-log) could not be written.</summary>
    public const int OutputFailed = 3;

    /// <summary>An internal error (a bug in deferrt: please report it).</summary>
    public const int InternalError = 70;

    /// <summary>Interrupted (Ctrl-C, SIGINT): 128 + 2, as shells report it.</summary>
    public const int Interrupted = 130;

    /// <summary>The table printed at the end of every --help.</summary>
    public const string HelpText =
        "Exit codes:\n" +
        "  0    every run passed\n" +
        "  1    a check failed (an event lost, an identity broken, a fault not reported)\n" +
        "  2    bad command line (nothing ran; the message is on stderr)\n" +
        "  3    the run finished but an output file could not be written\n" +
        "  70   internal error (a bug in deferrt)\n" +
        "  130  interrupted (Ctrl-C)";
}

/// <summary>A command line deferrt refuses: printed as "error: message" on stderr, exit 2, no stack trace.</summary>
internal sealed class CliUsageException : Exception
{
    public CliUsageException(string message)
        : base(message)
    {
    }

    public CliUsageException()
    {
    }

    public CliUsageException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}

/// <summary>An output file that could not be written after the run: printed on stderr, exit 3.</summary>
internal sealed class OutputWriteException : Exception
{
    public OutputWriteException(string message)
        : base(message)
    {
    }

    public OutputWriteException()
    {
    }

    public OutputWriteException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}

/// <summary>Limits on the command line's numbers, shared by storm and torture.</summary>
internal static class CliLimits
{
    /// <summary>
    /// Most virtual CPUs: 4 per processor, and never more than 256. Each virtual CPU is at least two OS
    /// threads (cpu/N, ksoftirqd/N) plus its workers; past a few per core they only measure the OS scheduler.
    /// </summary>
    public static int MaxCpus => Math.Min(256, 4 * Environment.ProcessorCount);

    /// <summary>Most events per second per path: 10 M/s, beyond what one generator thread can pace.</summary>
    public const double MaxRate = 10_000_000;

    /// <summary>Checks <paramref name="cpus"/> against <see cref="MaxCpus"/>; <paramref name="name"/> names the option.</summary>
    public static int Cpus(int cpus, string name) =>
        cpus >= 1 && cpus <= MaxCpus
            ? cpus
            : throw new CliUsageException(string.Create(CultureInfo.InvariantCulture,
                $"{name} {cpus}: must be 1 to {MaxCpus} (4 virtual CPUs per processor, at most 256; this machine has {Environment.ProcessorCount} processors)"));

    /// <summary>Runs per side under --compare when --repeat is not given.</summary>
    public const int DefaultRepeat = 3;

    /// <summary>Most runs per side under --compare.</summary>
    public const int MaxRepeat = 20;

    /// <summary>Checks --repeat against 1..<see cref="MaxRepeat"/>.</summary>
    public static int Repeat(int repeat, string name) =>
        repeat >= 1 && repeat <= MaxRepeat
            ? repeat
            : throw new CliUsageException(string.Create(CultureInfo.InvariantCulture,
                $"{name} {repeat}: must be 1 to {MaxRepeat} runs per side"));

    /// <summary>Checks a per-path rate against <see cref="MaxRate"/>.</summary>
    public static double Rate(double rate, string name) =>
        double.IsFinite(rate) && rate > 0 && rate <= MaxRate
            ? rate
            : throw new CliUsageException(string.Create(CultureInfo.InvariantCulture,
                $"{name} {rate}: must be more than 0 and at most {MaxRate:N0} events per second per path"));
}

/// <summary>Parse errors in words a user reads: no .NET type names.</summary>
internal static partial class ParseErrors
{
    /// <summary>The message for <paramref name="error"/>, with a conversion failure named by what the option expects.</summary>
    public static string Describe(ParseError error)
    {
        var option = error.SymbolResult switch
        {
            OptionResult o => o.Option,
            ArgumentResult { Parent: OptionResult o } => o.Option,
            _ => null,
        };
        if (option is not null && Expected(option.ValueType) is { } expected && error.SymbolResult is { } result &&
            result.Tokens.FirstOrDefault(t => !Parses(option.ValueType, t.Value)) is { } bad)
        {
            return $"{option.Name} '{bad.Value}': expected {expected}";
        }
        return Sanitize(error.Message);
    }

    /// <summary>Replaces any .NET type name left in <paramref name="message"/> by a word.</summary>
    public static string Sanitize(string message) => TypeName().Replace(message, m => Expected(m.Groups["type"].Value) ?? "a value");

    private static string? Expected(Type type)
    {
        var t = Nullable.GetUnderlyingType(type) ?? (type.IsArray ? type.GetElementType()! : type);
        return Expected(t.FullName ?? "");
    }

    private static string? Expected(string typeName) => typeName switch
    {
        "System.Int32" or "System.Int64" or "System.Int16" or "System.UInt32" or "System.UInt64" => "a whole number",
        "System.Double" or "System.Single" or "System.Decimal" => "a number",
        "System.Boolean" => "true or false",
        _ => null,
    };

    private static bool Parses(Type type, string token)
    {
        var t = Nullable.GetUnderlyingType(type) ?? (type.IsArray ? type.GetElementType()! : type);
        var inv = CultureInfo.InvariantCulture;
        return t == typeof(int) ? int.TryParse(token, NumberStyles.Integer, inv, out _)
            : t == typeof(long) ? long.TryParse(token, NumberStyles.Integer, inv, out _)
            : t == typeof(double) ? double.TryParse(token, NumberStyles.Float, inv, out _)
            : t == typeof(bool) ? bool.TryParse(token, out _)
            : true;
    }

    // 'System.Nullable`1[System.Int32]', System.Double, ...: the type inside a Nullable if there is one.
    [GeneratedRegex(@"'?System\.Nullable`1\[(?<type>System\.[A-Za-z0-9_.]+)\]'?|'?(?<type>System\.[A-Z][A-Za-z0-9_.`\[\]]*)'?")]
    private static partial Regex TypeName();
}
