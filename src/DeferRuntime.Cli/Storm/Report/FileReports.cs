using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace DeferRuntime.Cli.Storm.Report;

/// <summary>--json and --csv.</summary>
internal static class FileReports
{
    private static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        DictionaryKeyPolicy = null, // path names are keys as they are ("wq-bound")
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    public static string ToJson(StormDocument document) => JsonSerializer.Serialize(document, Json);

    public static void WriteJson(string path, StormDocument document)
    {
        CreateDirectoryOf(path);
        File.WriteAllText(path, ToJson(document), new UTF8Encoding(false));
    }

    /// <summary>CSV columns, in order: one row per run and path.</summary>
    public static readonly string[] CsvColumns =
    [
        "run", "path", "irq", "requested_rate", "generated", "delivered", "coalesced", "latched", "irq_runs", "reraises", "handled", "lost",
        "batches", "events_per_batch", "throughput_per_s", "injected_faults",
        "top_count", "top_p50_us", "top_p90_us", "top_p99_us", "top_p999_us", "top_p9999_us", "top_max_us",
        "start_count", "start_p50_us", "start_p90_us", "start_p99_us", "start_p999_us", "start_p9999_us", "start_max_us",
        "end_count", "end_p50_us", "end_p90_us", "end_p99_us", "end_p999_us", "end_p9999_us", "end_max_us",
        // Latencies above are from each event's intended time; the same stages from its actual assert, and the generator's own lag:
        "top_assert_p50_us", "top_assert_p99_us", "top_assert_max_us",
        "start_assert_p50_us", "start_assert_p99_us", "start_assert_max_us",
        "end_assert_p50_us", "end_assert_p99_us", "end_assert_max_us",
        "gen_lag_p50_us", "gen_lag_p99_us", "gen_lag_max_us",
    ];

    public static void WriteCsv(string path, IReadOnlyList<StormRunResult> runs)
    {
        CreateDirectoryOf(path);
        var sb = new StringBuilder();
        sb.AppendLine(string.Join(',', CsvColumns));
        foreach (var run in runs)
        {
            foreach (var p in run.Paths)
            {
                var cells = new List<string> { Quote(run.Label), p.Name };
                cells.AddRange(new double[]
                {
                    p.Irq, p.RequestedRate, p.Generated, p.Delivered, p.Coalesced, p.Latched, p.IrqRuns, p.Reraises, p.Handled, p.Lost,
                    p.Batches, p.EventsPerBatch, p.ThroughputPerSecond, p.InjectedFaults,
                }.Select(F));
                foreach (var s in new[] { p.TopHalf, p.BottomHalfStart, p.BottomHalfEnd })
                {
                    cells.AddRange(new double[] { s.Count, s.P50Us, s.P90Us, s.P99Us, s.P999Us, s.P9999Us, s.MaxUs }.Select(F));
                }
                foreach (var s in new[] { p.TopHalfFromAssert, p.BottomHalfStartFromAssert, p.BottomHalfEndFromAssert, p.GeneratorLag })
                {
                    cells.AddRange(s is null ? ["", "", ""] : new double[] { s.P50Us, s.P99Us, s.MaxUs }.Select(F));
                }
                sb.AppendLine(string.Join(',', cells));
            }
        }
        File.WriteAllText(path, sb.ToString(), new UTF8Encoding(false));
    }

    private static string F(double v) => v.ToString("0.###", CultureInfo.InvariantCulture);

    private static string Quote(string s) => s.Contains(',', StringComparison.Ordinal) || s.Contains('"', StringComparison.Ordinal) ? $"\"{s.Replace("\"", "\"\"", StringComparison.Ordinal)}\"" : s;

    internal static void CreateDirectoryOf(string path)
    {
        string? dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (!string.IsNullOrEmpty(dir))
        {
            Directory.CreateDirectory(dir);
        }
    }
}
