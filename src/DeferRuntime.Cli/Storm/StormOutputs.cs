using System.CommandLine;
using DeferRuntime.Cli.Storm.Report;
using Spectre.Console;

namespace DeferRuntime.Cli.Storm;

/// <summary>
/// The storm's output files: --json, --csv, --plot, --hgrm, --histogram-log. Checked before the storm
/// starts (<see cref="Check"/>: a bad path is a usage error, exit 2, and nothing runs); written after it
/// (<see cref="Write"/>: a failure there is reported on stderr and makes the exit code 3 unless a check
/// already failed).
/// </summary>
internal sealed record StormOutputs(string? Json, string? Csv, string? PlotDir, string? HgrmDir, string? HistogramLog)
{
    /// <summary>The options this adds to the storm command besides --json, --csv and --plot (new ones per command: options are not shared).</summary>
    public sealed class Options
    {
        public Option<string?> Hgrm { get; } = new("--hgrm")
        {
            Description = "Write HdrHistogram percentile distributions (.hgrm, µs; HdrHistogram's plotter reads them) per path and stage into this directory",
        };

        public Option<string?> HistogramLog { get; } = new("--histogram-log")
        {
            Description = "Write an HdrHistogram interval log (ns; one histogram per second, path and stage, tagged path/stage) to this file",
        };

        public IEnumerable<Option> All => [Hgrm, HistogramLog];

        public StormOutputs Get(ParseResult parse, string? json, string? csv, string? plot) =>
            new(json, csv, plot, parse.GetValue(Hgrm), parse.GetValue(HistogramLog));
    }

    /// <summary>Checks every path; throws <see cref="CliUsageException"/> naming the first that cannot be written.</summary>
    public void Check()
    {
        foreach (var (option, file) in new[] { ("--json", Json), ("--csv", Csv), ("--histogram-log", HistogramLog) })
        {
            if (file is not null)
            {
                OutputPaths.CheckFile(option, file);
            }
        }
        foreach (var (option, dir) in new[] { ("--plot", PlotDir), ("--hgrm", HgrmDir) })
        {
            if (dir is not null)
            {
                OutputPaths.CheckDirectory(option, dir);
            }
        }
    }

    /// <summary>The interval log, or null without --histogram-log.</summary>
    public IntervalLog? CreateIntervalLog() => HistogramLog is null ? null : new IntervalLog(HistogramLog);

    /// <summary>Writes the files; returns <paramref name="exit"/>, or <see cref="ExitCodes.OutputFailed"/> if it was 0 and a file could not be written.</summary>
    public int Write(IAnsiConsole console, TextWriter error, int exit, StormDocument document, IntervalLog? intervals)
    {
        bool failed = false;
        void Try(string option, string path, Func<string> write)
        {
            try
            {
                console.MarkupLine(Markup.Escape(write()));
            }
            catch (Exception e) when (OutputPaths.IsIo(e))
            {
                error.WriteLine($"error: {option} {path}: could not write: {e.Message}");
                failed = true;
            }
        }
        var runs = document.Runs;
        if (Json is { } json)
        {
            Try("--json", json, () => { FileReports.WriteJson(json, document); return $"wrote {json}"; });
        }
        if (Csv is { } csv)
        {
            Try("--csv", csv, () => { FileReports.WriteCsv(csv, runs); return $"wrote {csv}"; });
        }
        if (PlotDir is { } plot)
        {
            Try("--plot", plot, () => $"wrote {runs.Sum(r => PlotReport.Write(plot, r).Count)} PNGs to {plot}");
        }
        if (HgrmDir is { } hgrm)
        {
            Try("--hgrm", hgrm, () => $"wrote {runs.Sum(r => HgrmReport.Write(hgrm, r).Count)} .hgrm files to {hgrm}");
        }
        if (intervals is not null)
        {
            intervals.Dispose();
            if (intervals.Error is { } e)
            {
                error.WriteLine($"error: {e}");
                failed = true;
            }
            else
            {
                console.MarkupLine(Markup.Escape($"wrote {intervals.Written} interval histograms to {HistogramLog}"));
            }
        }
        return failed && exit == ExitCodes.Passed ? ExitCodes.OutputFailed : exit;
    }
}
