using System.Diagnostics;

namespace DeferRuntime.Torture.Harness;

/// <summary>
/// One <see cref="TortureRunner.Run"/> in progress: the options with the seed resolved, the caller's
/// progress sink and cancellation, and the helpers every test uses to boot its runtime and run its load
/// for the test's duration.
/// </summary>
internal sealed class TortureRun(TortureOptions options, int seed, IProgress<TortureProgress>? progress, int testCount, CancellationToken cancellation)
{
    /// <summary>How often progress is reported while a test's load runs.</summary>
    private static readonly TimeSpan ProgressInterval = TimeSpan.FromMilliseconds(200);

    /// <summary>Joins and waits that only catch hangs (a deadlocked lock, a lost wake-up): never a verdict by timing.</summary>
    public static readonly TimeSpan Ceiling = TimeSpan.FromSeconds(30);

    public TortureOptions Options => options;

    public int Seed => seed;

    public CancellationToken Cancellation => cancellation;

    public int TestIndex { get; set; }

    public int TestCount => testCount;

    /// <summary>Boots a runtime for one test, with the run's CPU count and pinning.</summary>
    public Runtime Boot()
    {
        var runtimeOptions = new RuntimeOptions { CpuCount = options.CpuCount, Pinning = options.Pinning };
        options.ConfigureRuntime?.Invoke(runtimeOptions);
        var runtime = Runtime.Boot(runtimeOptions);
        PlacementSummary ??= Summarize(runtime);
        return runtime;
    }

    /// <summary>What the OS granted the first runtime's threads at boot, one line.</summary>
    public string? PlacementSummary { get; private set; }

    private static string Summarize(Runtime runtime)
    {
        var placements = runtime.Placements;
        if (!runtime.Options.Pinning)
        {
            return $"pinning off; {Priorities(placements)}";
        }
        var refused = placements.Where(p => p.Core is not null && !p.Pinned).ToArray();
        string pinning = refused.Length == 0
            ? $"{placements.Count} runtime threads pinned"
            : $"pinning refused for {refused.Length} of {placements.Count} runtime threads ({refused[0].Thread}: {refused[0].PinError})";
        return $"{pinning}; {Priorities(placements)}";
    }

    private static string Priorities(IReadOnlyList<Platform.ThreadPlacementReport> placements)
    {
        var refused = placements.Where(p => !p.PriorityGranted).ToArray();
        return refused.Length == 0
            ? "priorities granted"
            : $"priority refused for {refused.Length} of {placements.Count} ({refused[0].Thread}: {refused[0].Priority}: {refused[0].PriorityError})";
    }

    /// <summary>
    /// Lets the load run for <see cref="TortureOptions.Duration"/> (less if the run is cancelled),
    /// reporting <paramref name="status"/> as it goes. Returns how long it actually ran.
    /// </summary>
    public TimeSpan RunLoad(string test, Func<string> status)
    {
        var clock = Stopwatch.StartNew();
        var duration = options.Duration;
        Report(test, TimeSpan.Zero, "starting");
        while (clock.Elapsed < duration && !cancellation.IsCancellationRequested)
        {
            var left = duration - clock.Elapsed;
            // Whole milliseconds, rounded up: WaitOne truncates, and a sub-millisecond rest would spin.
            var nap = left < ProgressInterval ? TimeSpan.FromMilliseconds(Math.Ceiling(left.TotalMilliseconds)) : ProgressInterval;
            cancellation.WaitHandle.WaitOne(nap);
            Report(test, clock.Elapsed, status());
        }
        return clock.Elapsed;
    }

    public void Report(string test, TimeSpan elapsed, string status) =>
        progress?.Report(new TortureProgress(test, TestIndex, testCount, elapsed, options.Duration, status));
}
