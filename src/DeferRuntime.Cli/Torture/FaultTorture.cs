using DeferRuntime.Cli.Storm.Faults;
using Spectre.Console;

namespace DeferRuntime.Cli.Torture;

/// <summary>
/// The fault tests of <c>deferrt torture --fault</c>: each injected fault on a runtime of its own, with
/// the same checks the storm makes of it (the spurious detector's "nobody cared" disable, ksoftirqd's
/// take-over with work still progressing, the stall watchdog's lockup report with other pools running),
/// printed in locktorture's end-of-test format. Every verdict is a count or a flag; the waits for them are
/// bounded only as hang guards.
/// </summary>
internal static class FaultTorture
{
    private static readonly TimeSpan Ceiling = TimeSpan.FromSeconds(30);

    /// <summary>Runs the faults <paramref name="plan"/> asks for (throw-every is the suites' own); true when every check held.</summary>
    public static bool Run(FaultPlan plan, int cpus, IAnsiConsole console)
    {
        bool held = true;
        if (plan.IrqNone)
        {
            held &= Test(console, "irq-none", cpus, TimeSpan.FromSeconds(30), runtime =>
            {
                using var fault = new SpuriousLineFault(runtime);
                fault.Start();
                var r = fault.Finish(Ceiling);
                return [($"the spurious detector disabled IRQ {r.Irq} after {r.Unhandled:N0} unhandled", r.Disabled && r.Warning is not null, r.Warning ?? "no 'nobody cared' report")];
            });
        }
        if (plan.SelfRaisingSoftirq)
        {
            held &= Test(console, "self-raising-softirq", cpus, TimeSpan.FromSeconds(30), runtime =>
            {
                var fault = new SelfRaisingSoftirqFault(runtime);
                fault.Start();
                var r = fault.Finish(Ceiling);
                fault.Stop();
                return
                [
                    ("ksoftirqd/0 took over", r.KsoftirqdTakeovers > 0, $"{r.KsoftirqdTakeovers:N0} take-overs, {r.Runs:N0} runs"),
                    ("a work item on CPU 0 ran during the flood", r.WorkProgressed, r.ProbeLatencyUs is { } us ? $"queue -> start {us:N0} µs" : "the probe never ran"),
                ];
            });
        }
        if (plan.StuckWork)
        {
            held &= Test(console, "stuck-work", cpus, TimeSpan.FromMilliseconds(500), detectBlocked: false, runtime =>
            {
                using var fault = new StuckWorkFault(runtime, runtime.SystemWq, Ceiling);
                fault.Start();
                var r = fault.Finish();
                return
                [
                    ("the stall watchdog reported the pool", r.WatchdogReported, r.Report ?? $"no report in {r.StallMs:N0} ms"),
                    ("the highpri and unbound pools ran during the stall", r.HighpriPoolRan && r.UnboundPoolRan, $"highpri {(r.HighpriPoolRan ? "ran" : "did NOT run")}, unbound {(r.UnboundPoolRan ? "ran" : "did NOT run")}"),
                    ("the item queued behind it ran once it was released", r.VictimRanAfter, $"stalled {r.StallMs:N0} ms"),
                ];
            });
        }
        return held;
    }

    private static bool Test(IAnsiConsole console, string name, int cpus, TimeSpan watchdog, Func<Runtime, (string Check, bool Holds, string Detail)[]> body) =>
        Test(console, name, cpus, watchdog, detectBlocked: true, body);

    private static bool Test(IAnsiConsole console, string name, int cpus, TimeSpan watchdog, bool detectBlocked, Func<Runtime, (string Check, bool Holds, string Detail)[]> body)
    {
        console.WriteLine($"[fault] {name}: starting");
        (string Check, bool Holds, string Detail)[] checks;
        var runtime = Runtime.Boot(new RuntimeOptions { CpuCount = cpus, WorkqueueWatchdogThreshold = watchdog, WorkqueueDetectBlockedOutside = detectBlocked });
        try
        {
            checks = body(runtime);
        }
        finally
        {
            runtime.Dispose();
        }
        bool held = checks.All(c => c.Holds);
        foreach (var (check, holds, detail) in checks)
        {
            console.WriteLine($"{name}-torture: {(holds ? "held" : "!!! failed")}: {check} ({detail})");
        }
        console.WriteLine($"{name}-torture:--- End of test: {(held ? "SUCCESS" : "FAILURE")}: fault={name} cpus={cpus}");
        return held;
    }
}
