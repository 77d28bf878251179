using System.Globalization;
using DeferRuntime.Devices;
using Spectre.Console;

namespace DeferRuntime.Cli.Storm.Report;

/// <summary>The storm report on the console: Spectre tables (plain text when the output is not a terminal).</summary>
internal static class ConsoleReport
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    public static void Render(IAnsiConsole console, StormRunResult run, bool full)
    {
        var m = run.Machine;
        var o = run.Options;
        // The header names the preset (and, under --compare, the option set of this run).
        string label = run.Label == "storm" ? "" : $" [[{Markup.Escape(run.Label)}]]";
        console.Write(new Rule($"[bold]storm{label}: preset {Markup.Escape(o.Preset)}[/]").LeftJustified());
        console.MarkupLine(Markup.Escape(string.Create(Inv,
            $"machine: {m.HostName}, {m.Os}, {m.Framework}, {m.Architecture}, {m.ProcessorCount} processors; virtual CPUs on cores [{string.Join(",", m.CpuCores)}]")));
        console.MarkupLine(Markup.Escape(string.Create(Inv,
            $"options: preset {o.Preset}, {o.Cpus} CPUs, {o.DurationSeconds:0.##} s (+{o.WarmupSeconds:0.##} s warm-up), {o.Arrival} arrivals (burst {o.BurstLength}), idle {o.IdlePolicy}, pinning {(o.Pinning ? "on" : "off")}, priorities {o.Priorities} (cpu/N nice {o.CpuNice}, ksoftirqd nice {o.KsoftirqdNice}), HZ {o.Hz}, work/event {o.WorkUs:0.##} µs, wq watchdog {o.WatchdogMs:N0} ms, seed {o.Seed}{(o.Faults.Count > 0 ? ", faults: " + string.Join(" ", o.Faults) : "")}")));
        RenderPlacements(console, run, full);
        RenderTopology(console, run);
        var g = run.Generator;
        console.MarkupLine(Markup.Escape(string.Create(Inv,
            $"generator (device threads {g.DeviceThreadPriority}): requested {g.RequestedRate:N0}/s, achieved {g.AchievedRate:N0}/s over {g.ElapsedSeconds:0.###} s, max lag {g.MaxLagUs:N0} µs{(g.FellBehind ? $" -- FELL BEHIND ({g.Stalls:N0} stalls, {g.LateEvents:N0} events more than 1 ms late, {StormReport.DescribeLateLag(TimeSpan.FromMilliseconds(g.LateLagMs), g.LateRunDelayMs is { } rd ? TimeSpan.FromMilliseconds(rd) : null)}): the schedule kept, each late event timed from its intended time (see gen lag)" : "")}{(g.CatchUpMs > 0 ? $"; caught up {g.CatchUpMs:N1} ms past the duration" : "")}{(g.BacklogStalls > 0 ? $"; {g.BacklogStalls:N0} backlog stalls" : "")}")));
        console.WriteLine();

        RenderAccounting(console, run);
        RenderLatency(console, run);
        RenderCpus(console, run);
        if (run.Napi is { } n)
        {
            console.MarkupLine(Markup.Escape(string.Create(Inv,
                $"NAPI: {n.Interrupts:N0} interrupts, {n.Schedules:N0} napi_schedule, {n.Polls:N0} polls ({n.FullWeightPolls:N0} full-weight), {n.CompleteDone:N0} back to interrupts; {n.Packets:N0} packets = {n.PacketsPerInterrupt:0.0} per interrupt; {n.ReadyWhileMasked:N0} readiness while masked; time_squeeze {n.TimeSqueeze:N0}; kernel drops {(n.KernelDrops?.ToString("N0", Inv) ?? "n/a")}; sender window {n.Window}, {n.WindowStalls:N0} stalls, {n.SenderLateArrivals:N0} late sends")));
        }
        RenderFaults(console, run);
        console.MarkupLine(Markup.Escape(string.Create(Inv,
            $"GC during the storm: {run.Gc.Gen0}/{run.Gc.Gen1}/{run.Gc.Gen2} (gen0/1/2), pause {run.Gc.PauseMs:0.00} ms; process allocated {run.Gc.ProcessAllocatedBytes:N0} B, the generator thread {run.Generator.AllocatedBytes:N0} B")));
        if (full)
        {
            console.WriteLine();
            console.WriteLine("/proc/interrupts (since boot, warm-up included):");
            console.Write(new Text(run.Tables.Interrupts));
            console.WriteLine();
            console.WriteLine("/proc/softirqs (since boot, warm-up included):");
            console.Write(new Text(run.Tables.Softirqs));
            if (run.Napi is not null)
            {
                console.WriteLine();
                console.WriteLine("/proc/net/softnet_stat:");
                console.Write(new Text(run.Tables.SoftnetStat));
            }
        }
        console.WriteLine();
        RenderVerdict(console, run);
    }

    private static void RenderPlacements(IAnsiConsole console, StormRunResult run, bool full)
    {
        var placements = run.Placements;
        int pinned = placements.Count(p => p.Pinned), refusedPin = placements.Count(p => p.Core is not null && !p.Pinned);
        int prioGranted = placements.Count(p => p.PriorityGranted), prioRefused = placements.Count(p => !p.PriorityGranted);
        console.MarkupLine(Markup.Escape(string.Create(Inv,
            $"granted by the OS: {pinned}/{placements.Count} threads pinned{(refusedPin > 0 ? $" ({refusedPin} REFUSED)" : "")}, priority granted to {prioGranted}/{placements.Count}{(prioRefused > 0 ? $" ({prioRefused} REFUSED: {placements.First(p => !p.PriorityGranted).PriorityError})" : "")}")));
        if (full)
        {
            var table = new Table().Border(TableBorder.Simple).Title("placements (Runtime.Placements)");
            table.AddColumns("thread", "cpu", "core", "pinned", "priority", "granted");
            foreach (var p in placements)
            {
                table.AddRow(Markup.Escape(p.Thread), p.Cpu.ToString(Inv), p.Core?.ToString(Inv) ?? "-",
                    Markup.Escape(p.Core is null ? "off" : p.Pinned ? "yes" : "NO: " + p.PinError), Markup.Escape(p.Priority),
                    Markup.Escape(p.PriorityGranted ? "yes" : "NO: " + p.PriorityError));
            }
            console.Write(table);
        }
    }

    private static void RenderTopology(IAnsiConsole console, StormRunResult run)
    {
        if (run.Topology is not { } t)
        {
            return;
        }
        string cores = string.Join("; ", t.Cores.Select(c =>
            $"core {c.Core.ToString(Inv)}: {string.Join(", ", c.Cpus.Select(cpu => $"cpu/{cpu.ToString(Inv)}").Concat(c.DeviceThreads))}"));
        string devices = t.DeviceThreadCores.Count > 0 ? "" : "; device threads unpinned (any core)";
        console.MarkupLine(Markup.Escape($"topology (--device-cores {t.DeviceCores}): {(cores.Length > 0 ? cores : "virtual CPUs unpinned")}{devices}"));
        foreach (string w in t.Warnings)
        {
            console.MarkupLine($"[yellow]warning:[/] {Markup.Escape(w)}");
        }
    }

    // The three main tables split, the key column repeated, when the console is narrower than they are (80 columns).
    private static void RenderAccounting(IAnsiConsole console, StormRunResult run)
    {
        var table = new SplitTable("every event accounted", keyColumns: 1).Column("path", right: false).Column("bottom half", right: false)
            .Columns("irq", "rate/s", "generated", "delivered", "coalesced", "latched", "irq runs", "handled", "lost", "ev/batch", "handled/s", "faults");
        foreach (var p in run.Paths)
        {
            table.AddRow(p.Name, Markup.Escape(p.BottomHalf), N(p.Irq), N(p.RequestedRate), N(p.Generated), N(p.Delivered), N(p.Coalesced), N(p.Latched),
                N(p.IrqRuns), N(p.Handled), p.Lost == 0 ? "0" : $"[red bold]{p.Lost:N0}[/]", p.EventsPerBatch.ToString("0.0", Inv),
                N(p.ThroughputPerSecond), N(p.InjectedFaults));
        }
        var t = run.Totals;
        table.AddRow("[bold]total[/]", "", "", "", N(t.Generated), "", "", "", "", N(t.Handled), t.Lost == 0 ? "0" : $"[red bold]{t.Lost:N0}[/]", "", "", N(t.InjectedFaults));
        table.Write(console);
    }

    private static void RenderLatency(IAnsiConsole console, StormRunResult run)
    {
        var table = new SplitTable("latency from intended time, µs (HdrHistogram)", keyColumns: 2)
            .Column("path", right: false).Column("stage", right: false)
            .Columns("count", "p50", "p90", "p99", "p99.9", "p99.99", "max", "p99 assert", "max assert");
        foreach (var p in run.Paths)
        {
            foreach (var (stage, s, a) in new[] { ("top half", p.TopHalf, p.TopHalfFromAssert), ("bh start", p.BottomHalfStart, p.BottomHalfStartFromAssert), ("bh end", p.BottomHalfEnd, p.BottomHalfEndFromAssert) })
            {
                table.AddRow(stage == "top half" ? p.Name : "", stage, N(s.Count), Us(s.P50Us), Us(s.P90Us), Us(s.P99Us), Us(s.P999Us), Us(s.P9999Us), Us(s.MaxUs),
                    a is null ? "-" : Us(a.P99Us), a is null ? "-" : Us(a.MaxUs));
            }
            if (p.GeneratorLag is { } lag)
            {
                table.AddRow("", "gen lag", N(lag.Count), Us(lag.P50Us), Us(lag.P90Us), Us(lag.P99Us), Us(lag.P999Us), Us(lag.P9999Us), Us(lag.MaxUs), "", "");
            }
        }
        table.Write(console);
        long unordered = run.Paths.Sum(p => p.UnorderedSamples);
        console.MarkupLine("assert columns: from the actual assert, without the generator's lag.");
        console.MarkupLine(Markup.Escape(string.Create(Inv,
            $"gen lag: intended time -> assert (napi: -> send), the device's own lateness, included in the latencies from intended time. Stamps before their event: {unordered:N0}{(unordered == 0 ? "" : " (a clock problem: recorded as 0)")}.")));
    }

    private static void RenderCpus(IAnsiConsole console, StormRunResult run)
    {
        var table = new SplitTable("per CPU during the storm (time in ms)", keyColumns: 1)
            .Columns("cpu", "core", "hardirq entries", "ksoftirqd take-overs", "parks", "LOC", "hard-IRQ", "softirq", "ksoftirqd", "kworkers", "irq threads", "cpu/N thread");
        foreach (var c in run.Cpus)
        {
            var t = c.Time;
            table.AddRow(N(c.Cpu), N(c.Core), N(c.HardirqEntries), N(c.KsoftirqdTakeovers), N(c.Parks), N(c.LocalTimerInterrupts),
                Ms(t.HardIrqMs), Ms(t.SoftirqMs), Ms(t.KsoftirqdMs), Ms(t.WorkersMs), Ms(t.IrqThreadsMs), Ms(t.CpuThreadMs));
        }
        table.Write(console);
        console.MarkupLine(Markup.Escape(string.Create(Inv,
            $"unbound kworkers: {Ms(run.UnboundWorkersCpuMs)} ms CPU. hard-IRQ and softirq are wall time inside them (irq time accounting); the rest is thread CPU time; cpu/N's includes its idle polling.")));
    }

    private static void RenderFaults(IAnsiConsole console, StormRunResult run)
    {
        var f = run.Faults;
        if (f.Injected.Count == 0 && f.FaultLogTotal == 0)
        {
            console.MarkupLine("faults: none injected, none reported");
            return;
        }
        console.MarkupLine(Markup.Escape(string.Create(Inv,
            $"faults injected: {(f.Injected.Count == 0 ? "none" : string.Join(" ", f.Injected))}; fault log: {f.FaultLogTotal:N0} records during the storm")));
        if (f.ThrowsInjected > 0 || f.Injected.Any(i => i.StartsWith("throw-every", StringComparison.Ordinal)))
        {
            console.MarkupLine(Markup.Escape(string.Create(Inv, $"  throw-every: {f.ThrowsInjected:N0} handler runs threw, {f.ThrowsReported:N0} reported by the runtime; the CPUs kept running")));
        }
        if (f.IrqNone is { } s)
        {
            console.MarkupLine(Markup.Escape(string.Create(Inv,
                $"  irq-none: IRQ {s.Irq} {(s.Disabled ? "DISABLED by the spurious detector" : "NOT disabled")} after {s.HandlerRuns:N0} runs returning IRQ_NONE: {s.Warning ?? "(no warning)"}")));
        }
        if (f.SelfRaisingSoftirq is { } r)
        {
            console.MarkupLine(Markup.Escape(string.Create(Inv,
                $"  self-raising-softirq: {r.Runs:N0} runs; ksoftirqd/0 took over {r.KsoftirqdTakeovers:N0} times; a work item on CPU 0 {(r.WorkProgressed ? $"ran during the flood (queue -> start {r.ProbeLatencyUs:N0} µs)" : "did NOT run during the flood")}")));
        }
        if (f.StuckWork is { } w)
        {
            console.MarkupLine(Markup.Escape(string.Create(Inv,
                $"  stuck-work: stuck {w.StallMs:N0} ms; watchdog: {w.Report ?? "NO REPORT"}; high-priority pool {(w.HighpriPoolRan ? "kept running" : "did NOT run")}, unbound pool {(w.UnboundPoolRan ? "kept running" : "did NOT run")}; the item behind it {(w.VictimRanAfter ? "ran once released" : "did NOT run")}")));
        }
        foreach (string record in f.Recent.TakeLast(4))
        {
            console.MarkupLine(Markup.Escape("  log: " + (record.Length > 220 ? record[..220] + "..." : record)));
        }
    }

    private static void RenderVerdict(IAnsiConsole console, StormRunResult run)
    {
        int held = run.Identities.Count(i => i.Holds);
        if (run.Passed)
        {
            console.MarkupLine(Markup.Escape(string.Create(Inv,
                $"PASS: {run.Totals.Generated:N0} events generated, {run.Totals.Handled:N0} handled, 0 lost; {held}/{run.Identities.Count} identities hold")));
            return;
        }
        console.MarkupLine($"[red bold]FAIL[/]: {Markup.Escape(string.Create(Inv, $"{run.Totals.Lost:N0} lost; {held}/{run.Identities.Count} identities hold"))}");
        foreach (string problem in run.Problems)
        {
            console.MarkupLine($"  [red]-[/] {Markup.Escape(problem)}");
        }
    }

    private static string N(double v) => v.ToString("N0", Inv);

    private static string N(long v) => v.ToString("N0", Inv);

    private static string N(int v) => v.ToString(Inv);

    private static string Us(double v) => v.ToString(v < 10 ? "0.00" : v < 1000 ? "0.0" : "N0", Inv);

    private static string Ms(double? v) => v is { } x ? x.ToString("N1", Inv) : "n/a";
}
