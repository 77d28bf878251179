using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace DeferRuntime.Torture;

/// <summary>
/// The end-of-test report of a torture run, locktorture's "End of test: SUCCESS/FAILURE" for every test:
/// per lock type, the writers' and readers' statistics; the tasklet, workqueue, per-CPU and shutdown
/// suites' books; every check with its verdict. <see cref="Render"/> prints it in locktorture's format;
/// <see cref="ToJson"/> / <see cref="FromJson"/> give a stable machine-readable shape.
/// </summary>
public sealed class TortureReport
{
    /// <summary>The JSON schema's name and version; bumped when a field changes meaning or goes away.</summary>
    public const string SchemaVersion = "deferruntime-torture/1";

    private static readonly JsonSerializerOptions JsonOptions = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        WriteIndented = true,
        // A report file, never embedded in HTML: keep "+" and "'" in the check details readable.
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    /// <summary><see cref="SchemaVersion"/> of the producer.</summary>
    public string Schema { get; init; } = SchemaVersion;

    /// <summary>When the run started.</summary>
    public DateTimeOffset Started { get; init; }

    /// <summary>How long the whole run took, in seconds.</summary>
    public double ElapsedSeconds { get; init; }

    /// <summary>The parameters used.</summary>
    public required TortureSettings Settings { get; init; }

    /// <summary>The machine.</summary>
    public required TortureEnvironment Environment { get; init; }

    /// <summary>One result per lock type run, in order.</summary>
    public IReadOnlyList<LockTortureResult> Locks { get; init; } = [];

    /// <summary>The tasklet suite, if it ran.</summary>
    public TaskletTortureResult? Tasklets { get; init; }

    /// <summary>The workqueue suite, if it ran.</summary>
    public WorkqueueTortureResult? Workqueues { get; init; }

    /// <summary>The per-CPU data suite, if it ran.</summary>
    public PerCpuTortureResult? PerCpu { get; init; }

    /// <summary>The shutdown-under-load suite, if it ran.</summary>
    public ShutdownTortureResult? Shutdown { get; init; }

    /// <summary>The run was cancelled: later tests did not run, and the one running stopped early.</summary>
    public bool Cancelled { get; init; }

    /// <summary>
    /// Every check of every test held and the run was not cancelled: the tool's exit code 0. The
    /// fairness flag "???" does not count, as in locktorture (it depends on how loaded the machine is).
    /// </summary>
    public bool Passed => !Cancelled && Failures.Count == 0;

    /// <summary>The checks that failed, as "test: check: detail".</summary>
    public IReadOnlyList<string> Failures =>
        [.. AllChecks().Where(t => !t.Check.Passed).Select(t => $"{t.Test}: {t.Check.Name}: {t.Check.Detail}")];

    /// <summary>The report as JSON (camelCase, indented): the shape of this type.</summary>
    public string ToJson() => JsonSerializer.Serialize(this, JsonOptions);

    /// <summary>Reads a report written by <see cref="ToJson"/>.</summary>
    public static TortureReport FromJson(string json) =>
        JsonSerializer.Deserialize<TortureReport>(json, JsonOptions) ?? throw new JsonException("torture report: the JSON is null.");

    /// <summary>
    /// The report in locktorture's format: per lock type "Writes:  Total: N  Max/Min: max/min ???  Fail: N !!!"
    /// and "--- End of test: SUCCESS: parameters", the same style for the other suites, failed checks
    /// marked "!!!", and a last line with the verdict.
    /// </summary>
    public string Render()
    {
        var sb = new StringBuilder();
        var s = Settings;
        sb.Append(CultureInfo.InvariantCulture,
            $"torture: {s.CpuCount} CPUs ({Environment.ProcessorCount} cores, {Environment.OperatingSystem}, {Environment.Framework}), seed {s.Seed}: ");
        sb.Append(CultureInfo.InvariantCulture,
            $"duration {Ms(s.DurationSeconds * 1000)} per test, stutter {Ms(s.StutterSeconds * 1000)}, shuffle {Ms(s.ShuffleIntervalSeconds * 1000)}, long hold {Ms(s.LongHoldMilliseconds)} (p {s.LongHoldProbability.ToString("g3", CultureInfo.InvariantCulture)}), faults {(s.FaultEvery > 0 ? $"every {s.FaultEvery}th call" : "off")}\n");
        sb.Append(CultureInfo.InvariantCulture, $"torture: placement: {Environment.Placement}\n");
        foreach (var l in Locks)
        {
            RenderLock(sb, l);
        }
        if (Tasklets is { } t)
        {
            RenderTasklets(sb, t);
        }
        if (Workqueues is { } w)
        {
            RenderWorkqueues(sb, w);
        }
        if (PerCpu is { } c)
        {
            RenderPerCpu(sb, c);
        }
        if (Shutdown is { } d)
        {
            RenderShutdown(sb, d);
        }
        int tests = Locks.Count + (Tasklets is null ? 0 : 1) + (Workqueues is null ? 0 : 1) + (PerCpu is null ? 0 : 1) + (Shutdown is null ? 0 : 1);
        if (Passed)
        {
            sb.Append(CultureInfo.InvariantCulture, $"torture: End of run: SUCCESS ({tests} tests, every check held, {ElapsedSeconds:0.0} s)\n");
        }
        else
        {
            var failed = FailedTests();
            sb.Append(CultureInfo.InvariantCulture,
                $"torture: End of run: FAILURE{(Cancelled ? " (cancelled)" : "")}: {(failed.Count > 0 ? string.Join(", ", failed) : "no test failed, but the run did not finish")} !!!\n");
        }
        return sb.ToString();
    }

    private void RenderLock(StringBuilder sb, LockTortureResult l)
    {
        string p = $"{l.LockType}-torture:";
        sb.Append(CultureInfo.InvariantCulture, $"{p} {l.Writes.Render(write: true)}\n");
        if (l.Reads is { } reads)
        {
            sb.Append(CultureInfo.InvariantCulture, $"{p} {reads.Render(write: false)}\n");
        }
        sb.Append(CultureInfo.InvariantCulture,
            $"{p} Guarded counter: {l.GuardedCounter}/{l.Writes.Total}  Long holds: {l.LongHolds}  Stutters: {l.Stutters}  Shuffles: {l.Shuffles} ({l.Placement})\n");
        if (l.HeldContext is { } ctx)
        {
            sb.Append(CultureInfo.InvariantCulture, $"{p} {ctx}s during holds on the holder's CPU: {l.ContextViolations} ({l.ContextEvents} delivered){(l.ContextViolations != 0 ? " !!!" : "")}\n");
        }
        RenderChecks(sb, p, l.Checks);
        sb.Append(CultureInfo.InvariantCulture,
            $"{p}--- End of test: {(l.Passed ? "SUCCESS" : "FAILURE")}: nwriters_stress={l.Writers} nreaders_stress={l.Readers} stutter={Ms(Settings.StutterSeconds * 1000)} shuffle_interval={Ms(Settings.ShuffleIntervalSeconds * 1000)} long_hold={Ms(Settings.LongHoldMilliseconds)} duration={l.DurationSeconds:0.00}s\n");
    }

    private static void RenderTasklets(StringBuilder sb, TaskletTortureResult t)
    {
        const string p = "tasklet-torture:";
        sb.Append(CultureInfo.InvariantCulture,
            $"{p} Schedules: {t.Schedules} (chained {t.ChainedSchedules})  Runs: {t.Runs}  Coalesced: {t.Coalesced}  Concurrent: {t.ConcurrentRuns}  While disabled: {t.RunsWhileDisabled}  Lost: {t.LostSchedules}{(t.ConcurrentRuns + t.RunsWhileDisabled + t.LostSchedules != 0 ? " !!!" : "")}\n");
        sb.Append(CultureInfo.InvariantCulture,
            $"{p} Runs per tasklet Max/Min: {t.MaxRuns}/{t.MinRuns}  Disables: {t.Disables}  Stutters: {t.Stutters}  Shuffles: {t.Shuffles} ({t.Placement})  Faults: injected {t.Faults.Injected}, reported {t.Faults.Reported}\n");
        RenderChecks(sb, p, t.Checks);
        sb.Append(CultureInfo.InvariantCulture,
            $"{p}--- End of test: {(t.Passed ? "SUCCESS" : "FAILURE")}: ntasklets={t.Tasklets} nschedulers={t.Schedulers} duration={t.DurationSeconds:0.00}s\n");
    }

    private static void RenderWorkqueues(StringBuilder sb, WorkqueueTortureResult w)
    {
        const string p = "workqueue-torture:";
        foreach (var q in w.Workqueues)
        {
            long fail = q.Reentrant + q.MaxActiveExceeded + q.OrderViolations + q.FlushViolations + (q.Queued - q.Run - q.Cancelled != 0 ? 1 : 0);
            sb.Append(CultureInfo.InvariantCulture,
                $"{p} {q.Name} ({q.Kind}{(q.MaxActive > 0 ? $", max_active {q.MaxActive}" : "")}): Queued: {q.Queued}  Run: {q.Run}  Cancelled: {q.Cancelled}  Reentrant: {q.Reentrant}  Concurrent max: {q.MaxConcurrent}  Flushes: {q.Flushes}  Fail: {fail}{(fail != 0 ? " !!!" : "")}\n");
        }
        sb.Append(CultureInfo.InvariantCulture,
            $"{p} Stutters: {w.Stutters}  Shuffles: {w.Shuffles} ({w.Placement})  Faults: injected {w.Faults.Injected}, reported {w.Faults.Reported}\n");
        RenderChecks(sb, p, w.Checks);
        sb.Append(CultureInfo.InvariantCulture,
            $"{p}--- End of test: {(w.Passed ? "SUCCESS" : "FAILURE")}: nworkqueues={w.Workqueues.Count} nstormers={w.Stormers} duration={w.DurationSeconds:0.00}s\n");
    }

    private static void RenderPerCpu(StringBuilder sb, PerCpuTortureResult c)
    {
        const string p = "percpu-torture:";
        foreach (var d in c.Data)
        {
            double perSecond = c.DurationSeconds > 0 ? d.Tallied / c.DurationSeconds : 0;
            sb.Append(CultureInfo.InvariantCulture,
                $"{p} {d.Name} ({d.SharedBy}): Counter: {d.Counter}  Tallied: {d.Tallied}  Lost: {d.Lost}  Overlaps: {d.Overlaps}  ({perSecond:0}/s){(d.Lost != 0 || d.Overlaps != 0 ? " !!!" : "")}\n");
            foreach (var byContext in d.Sites.GroupBy(s => s.Context))
            {
                sb.Append(CultureInfo.InvariantCulture,
                    $"{p}   {d.Name} by {byContext.Key}: {string.Join(", ", byContext.Select(s => string.Create(CultureInfo.InvariantCulture, $"{s.Protection} {s.Increments}")))}\n");
            }
        }
        sb.Append(CultureInfo.InvariantCulture,
            $"{p} IPIs: sent {c.IpisSent} (busy {c.IpisBusy}), ran {c.IpiRuns}  Tasklets: scheduled {c.TaskletSchedules}, ran {c.TaskletRuns}  Softirqs: raised {c.SoftirqRaises}, ran {c.SoftirqRuns}  BH work: queued {c.BhWorkQueued}, ran {c.BhWorkRuns}  Work item runs: {c.WorkItemRuns}\n");
        sb.Append(CultureInfo.InvariantCulture,
            $"{p} Stutters: {c.Stutters}  Shuffles: {c.Shuffles} ({c.Placement})  Faults: injected {c.Faults.Injected}, reported {c.Faults.Reported}{(c.Busted ? "  BUSTED: tasks update irq under preempt_disable only" : "")}\n");
        RenderChecks(sb, p, c.Checks);
        sb.Append(CultureInfo.InvariantCulture,
            $"{p}--- End of test: {(c.Passed ? "SUCCESS" : "FAILURE")}: ncpus={c.Cpus} nthreads_per_cpu={c.ThreadsPerCpu} nworkitems_per_cpu={c.WorkItemsPerCpu}{(c.Busted ? " busted" : "")} duration={c.DurationSeconds:0.00}s\n");
    }

    private static void RenderShutdown(StringBuilder sb, ShutdownTortureResult d)
    {
        const string p = "shutdown-torture:";
        long lost = (d.WorkAccepted - d.WorkRun) + d.TaskletSchedulesLost + d.SoftirqRaisesLost;
        sb.Append(CultureInfo.InvariantCulture,
            $"{p} Work: accepted {d.WorkAccepted} (during shutdown {d.WorkAcceptedDuringShutdown}), ran {d.WorkRun}  Tasklets: scheduled {d.TaskletSchedules}, ran {d.TaskletRuns}  Softirqs: raised {d.SoftirqRaises}, ran {d.SoftirqRuns}\n");
        sb.Append(CultureInfo.InvariantCulture,
            $"{p} Refused: {d.Refused} (ObjectDisposedException)  Lost: {lost}{(lost != 0 ? " !!!" : "")}  Dispose: {d.DisposeSeconds * 1000:0} ms  Shuffles: {d.Shuffles} ({d.Placement})  Faults: injected {d.Faults.Injected}, reported {d.Faults.Reported}\n");
        RenderChecks(sb, p, d.Checks);
        sb.Append(CultureInfo.InvariantCulture,
            $"{p}--- End of test: {(d.Passed ? "SUCCESS" : "FAILURE")}: nthreads={d.LoadThreads} load={d.LoadSeconds:0.00}s\n");
    }

    /// <summary>Failed checks one per line, marked "!!!"; the passing ones named on one line.</summary>
    private static void RenderChecks(StringBuilder sb, string prefix, IReadOnlyList<TortureCheck> checks)
    {
        foreach (var c in checks.Where(c => !c.Passed))
        {
            sb.Append(CultureInfo.InvariantCulture, $"{prefix} !!! {c.Name}: {c.Detail}\n");
        }
        var held = checks.Where(c => c.Passed).Select(c => c.Name).ToArray();
        if (held.Length > 0)
        {
            sb.Append(CultureInfo.InvariantCulture, $"{prefix} held: {string.Join(", ", held)}\n");
        }
    }

    private List<string> FailedTests()
    {
        var failed = Locks.Where(l => !l.Passed).Select(l => l.LockType).ToList();
        if (Tasklets is { Passed: false })
        {
            failed.Add("tasklet");
        }
        if (Workqueues is { Passed: false })
        {
            failed.Add("workqueue");
        }
        if (PerCpu is { Passed: false })
        {
            failed.Add("percpu");
        }
        if (Shutdown is { Passed: false })
        {
            failed.Add("shutdown");
        }
        return failed;
    }

    private IEnumerable<(string Test, TortureCheck Check)> AllChecks()
    {
        foreach (var l in Locks)
        {
            foreach (var c in l.Checks)
            {
                yield return (l.LockType, c);
            }
        }
        foreach (var c in Tasklets?.Checks ?? [])
        {
            yield return ("tasklet", c);
        }
        foreach (var c in Workqueues?.Checks ?? [])
        {
            yield return ("workqueue", c);
        }
        foreach (var c in PerCpu?.Checks ?? [])
        {
            yield return ("percpu", c);
        }
        foreach (var c in Shutdown?.Checks ?? [])
        {
            yield return ("shutdown", c);
        }
    }

    private static string Ms(double milliseconds) =>
        milliseconds == 0 ? "off"
        : milliseconds >= 1000 && milliseconds % 1000 == 0 ? string.Create(CultureInfo.InvariantCulture, $"{milliseconds / 1000:0}s")
        : string.Create(CultureInfo.InvariantCulture, $"{milliseconds:0.###}ms");
}
