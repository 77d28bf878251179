using System.Diagnostics;
using System.Globalization;
using System.Reflection;
using System.Runtime.InteropServices;
using DeferRuntime.Cli.Platform;
using DeferRuntime.Cli.Storm.Faults;
using DeferRuntime.Cli.Storm.Paths;
using DeferRuntime.Cli.Storm.Report;
using DeferRuntime.Cpus;
using DeferRuntime.Devices;

namespace DeferRuntime.Cli.Storm;

/// <summary>
/// One storm run: boots a runtime, loads a driver per path, warms up, then drives the measured storm —
/// the synthetic lines from one <see cref="StormGenerator"/> thread, the NIC from its sender thread —
/// injects the faults, waits until every event is handled, and collects the report before shutdown.
/// </summary>
/// <remarks>
/// Order matters at the end: generation ends, the faults are finished (the flood stopped, the stuck item
/// released), the drain is awaited, the report is read with the drivers still loaded, then devices stop,
/// lines are freed and the runtime shuts down (it refuses assertions from devices once that begins).
/// </remarks>
internal sealed class StormRunner
{
    private const int HandoffCapacity = 1 << 16;
    private static readonly TimeSpan FaultCeiling = TimeSpan.FromSeconds(30);

    // --duration 0: a storm this long is one that runs until interrupted.
    private static readonly TimeSpan UntilStopped = TimeSpan.FromDays(365);

    private readonly StormSettings _s;
    private readonly StormProgress _progress;
    private readonly IntervalLog? _intervals; // --histogram-log: sampled from the wait, never from a handler
    private string _label = "storm";
    private readonly StormInterrupt _interrupt;
    private readonly DeviceCorePlan _plan;
    private bool _interrupted; // the measured storm was ended by the interrupt
    private readonly List<StormPath> _paths = [];
    private long _throwsReported; // A: InjectedFaultException records seen in the fault log
    private long _faultLogAtStart;
    private string? _deviceNiceError; // why the device threads did not get cpu/N's nice, or null

    private StormRunner(StormSettings settings, StormProgress progress, IntervalLog? intervals, StormInterrupt? interrupt)
    {
        _s = settings;
        _progress = progress;
        _intervals = intervals;
        _interrupt = interrupt ?? StormInterrupt.Manual();
        _plan = DeviceCorePlan.Resolve(settings.DeviceCores, settings.Cpus);
    }

    /// <summary>
    /// Runs the storm; <paramref name="intervals"/> (--histogram-log) is sampled at each progress tick;
    /// <paramref name="interrupt"/>, once requested, ends it early (drained and reported in full).
    /// </summary>
    public static StormRunResult Run(StormSettings settings, string label, StormProgress progress, IntervalLog? intervals = null, StormInterrupt? interrupt = null) =>
        new StormRunner(settings, progress, intervals, interrupt).Run(label);

    private StormRunResult Run(string label)
    {
        _label = label;
        var options = new RuntimeOptions
        {
            CpuCount = _s.Cpus,
            Pinning = _s.Pin,
            IdlePolicy = _s.IdlePolicy,
            Priorities = _s.Priorities,
            CpuNice = _s.CpuNice,
            KsoftirqdNice = _s.KsoftirqdNice,
            LetKsoftirqdDoItsJob = _s.LetKsoftirqdDoItsJob,
            IrqTimeAccounting = true,
            WorkqueueWatchdogThreshold = _s.WatchdogThreshold,
            // The stuck-work fault blocks where the pool must not see it (see StuckWorkFault).
            WorkqueueDetectBlockedOutside = !_s.Faults.StuckWork,
        };
        // The CPUs go on the cores the devices leave them (see DeviceCorePlan).
        var runtime = _plan.BootOnCpuCores(() => Runtime.Boot(options));
        SpuriousLineFault? irqNone = null;
        SelfRaisingSoftirqFault? selfRaising = null;
        StuckWorkFault? stuck = null;
        var problems = new List<string>();
        StormRunResult? result = null;
        try
        {
            runtime.Faults.Faulted += (_, record) =>
            {
                if (record.Exception is InjectedFaultException)
                {
                    Interlocked.Increment(ref _throwsReported);
                }
            };
            var context = new PathContext(runtime, (long)(_s.Work.TotalSeconds * Stopwatch.Frequency), _s.Faults.ThrowEvery, HandoffCapacity, _plan.DeviceCores);
            foreach (var kind in _s.Paths)
            {
                _paths.Add(kind switch
                {
                    StormPathKind.HardIrq => new HardIrqPath(context),
                    StormPathKind.Tasklet => new TaskletPath(context),
                    StormPathKind.Softirq => new SoftirqPath(context),
                    StormPathKind.ThreadedIrq => new ThreadedIrqPath(context),
                    StormPathKind.Napi => new NapiNicPath(context),
                    _ => new WorkqueuePath(kind, context),
                });
            }
            foreach (var path in _paths)
            {
                if (path is LinePath line)
                {
                    line.Request();
                }
                else if (path is NapiNicPath nic)
                {
                    nic.Start();
                }
            }
            if (_s.Faults.IrqNone)
            {
                irqNone = new SpuriousLineFault(runtime);
            }
            if (_s.Faults.SelfRaisingSoftirq)
            {
                selfRaising = new SelfRaisingSoftirqFault(runtime);
            }
            if (_s.Faults.StuckWork)
            {
                var wq = _paths.OfType<WorkqueuePath>().FirstOrDefault(p => p.Kind == StormPathKind.WorkqueueBound)?.Workqueue ?? runtime.SystemWq;
                stuck = new StuckWorkFault(runtime, wq, FaultCeiling);
            }

            if (_s.Warmup > TimeSpan.Zero && !_interrupt.Requested)
            {
                // Tiered JIT and first workers: the measured storm starts with every handler compiled
                // and every pool populated. Its events count nowhere but /proc.
                RunPhase(runtime, "warm-up", _s.Warmup, _s.Seed + 1, measured: false, problems);
            }

            // Start the measured storm with the set-up's garbage collected: a collection during it is the
            // storm's own (the report counts them; the GC is our SMI).
            GC.Collect();
            GC.WaitForPendingFinalizers();
            foreach (var path in _paths)
            {
                path.BeginMeasurement();
            }
            var cpuBefore = runtime.Cpus.Select(Snapshot).ToArray();
            var unboundBefore = runtime.GetUnboundWorkerCpuTime();
            var softnetBefore = SoftnetSqueeze(runtime);
            int gen0 = GC.CollectionCount(0), gen1 = GC.CollectionCount(1), gen2 = GC.CollectionCount(2);
            var pause = GC.GetTotalPauseDuration();
            Interlocked.Exchange(ref _throwsReported, 0);
            _faultLogAtStart = runtime.Faults.Count;
            long allocatedBefore = GC.GetTotalAllocatedBytes(precise: false);

            var (storm, faultReports) = RunPhase(runtime, "storm", _s.RunsUntilStopped ? UntilStopped : _s.Duration, _s.Seed, measured: true, problems, irqNone, selfRaising, stuck);

            var gc = new GcInfo(GC.CollectionCount(0) - gen0, GC.CollectionCount(1) - gen1, GC.CollectionCount(2) - gen2,
                (GC.GetTotalPauseDuration() - pause).TotalMilliseconds, GC.GetTotalAllocatedBytes(precise: false) - allocatedBefore);
            result = Collect(runtime, label, storm, faultReports, cpuBefore, unboundBefore, softnetBefore, gc, problems);
        }
        finally
        {
            selfRaising?.Stop();
            stuck?.Dispose();
            foreach (var path in _paths)
            {
                path.Dispose();
            }
            irqNone?.Dispose();
            try
            {
                runtime.Dispose();
            }
            catch (TimeoutException e)
            {
                problems.Add($"runtime shutdown: {e.Message}");
            }
        }
        return result! with { Passed = problems.Count == 0, Problems = problems, Interrupted = _interrupted };
    }

    private sealed record FaultReports(SpuriousReport? IrqNone, SelfRaisingReport? SelfRaising, StuckWorkReport? Stuck);

    /// <summary>One storm over every path: generate for <paramref name="duration"/>, finish the faults, wait for the drain.</summary>
    private (StormReport? Storm, FaultReports Faults) RunPhase(
        Runtime runtime, string phase, TimeSpan duration, int seed, bool measured, List<string> problems,
        SpuriousLineFault? irqNone = null, SelfRaisingSoftirqFault? selfRaising = null, StuckWorkFault? stuck = null)
    {
        var lines = _paths.OfType<LinePath>().ToList();
        var nic = _paths.OfType<NapiNicPath>().SingleOrDefault();
        StormGenerator? generator = null;
        if (lines.Count > 0)
        {
            generator = new StormGenerator(runtime, new StormOptions
            {
                Lines = lines.Select(p => new StormLine(p.Irq, _s.Rates[p.Kind]) { Arrival = _s.Arrival, BurstLength = _s.BurstLength }).ToList(),
                Duration = duration,
                Seed = seed,
                DeviceCores = _plan.DeviceCores,
                StallAfterEvents = measured ? _s.GeneratorStallAfterEvents : 0,
                StallFor = _s.GeneratorStall,
            });
            for (int i = 0; i < lines.Count; i++)
            {
                lines[i].Attach(generator.Sources[i]);
            }
        }
        try
        {
            // The device threads inherit this thread's nice: give them cpu/N's (see DeviceThreadPriority).
            using (var devicePriority = _s.Priorities == PriorityPolicy.None ? default : DeviceThreadPriority.Raise(_s.CpuNice))
            {
                if (measured && devicePriority.Error is { } refused)
                {
                    _deviceNiceError = refused;
                }
                generator?.Start();
                nic?.StartSending(duration, _s.Rates[StormPathKind.Napi], _s.Arrival, _s.BurstLength, seed);
            }
            if (measured)
            {
                irqNone?.Start();
                selfRaising?.Start();
                stuck?.Start();
            }

            var expected = _paths.ToDictionary(p => p, p => duration == UntilStopped ? 1 : _s.Rates[p.Kind] * duration.TotalSeconds);
            var ceiling = Stopwatch.StartNew();
            var limit = duration + _s.DrainTimeout;
            if (measured)
            {
                _intervals?.Begin(_label, _paths);
            }
            bool stopped = false;
            _progress.Track(phase, _paths, expected, () =>
            {
                if (measured)
                {
                    _intervals?.Tick();
                }
                if (!stopped && _interrupt.Requested)
                {
                    // Ctrl-C: generation ends now; what was generated drains (within the drain timeout from here).
                    stopped = true;
                    _interrupted |= measured;
                    generator?.Stop();
                    nic?.StopSending();
                    limit = ceiling.Elapsed + _s.DrainTimeout;
                }
                return ((generator?.IsCompleted ?? true) && !(nic?.IsSending ?? false) && _paths.All(p => p.Drained)) || ceiling.Elapsed > limit;
            });

            var faults = new FaultReports(irqNone?.Finish(FaultCeiling), selfRaising?.Finish(FaultCeiling), stuck?.Finish());
            // The faults may have held events back (a stalled pool, a CPU owned by ksoftirqd): wait again.
            var drain = Stopwatch.StartNew();
            while (!_paths.All(p => p.Drained) && drain.Elapsed < _s.DrainTimeout)
            {
                Thread.Sleep(5);
            }
            if (measured && _paths.All(p => p.Drained))
            {
                Settle(runtime);
            }
            if (measured)
            {
                _intervals?.Finish();
            }
            if (generator is not null && !generator.IsCompleted)
            {
                problems.Add($"{phase}: the generator had not handed over its backlog after the drain timeout ({_s.DrainTimeout.TotalSeconds:0.#} s)");
                generator.Stop();
            }
            generator?.Dispose();
            nic?.StopSending();
            nic?.JoinSender();
            var report = generator?.GetReport();
            if (generator is not null && !generator.Join(TimeSpan.Zero))
            {
                problems.Add($"{phase}: the storm generator did not finish");
            }
            if (!measured)
            {
                foreach (var path in _paths.Where(p => !p.Drained))
                {
                    problems.Add($"{phase}: path {path.Name} did not drain ({path.Handled:N0} of {path.Generated:N0})");
                }
            }
            return (report, faults);
        }
        catch
        {
            generator?.Stop();
            nic?.StopSending();
            throw;
        }
    }

    /// <summary>
    /// Every event is handled, but the counters that describe how may still be moving: a replayed edge that
    /// found the FIFO empty may be running, the NIC's device thread counts an interrupt before it asserts,
    /// NET_RX counts a poll's packets after it returns. Wait (a hang guard, not a timing check) until the
    /// lines are idle and those counters agree, so the identities are read at rest.
    /// </summary>
    private void Settle(Runtime runtime)
    {
        var deadline = Stopwatch.StartNew();
        while (!Settled(runtime) && deadline.Elapsed < TimeSpan.FromSeconds(5))
        {
            Thread.Sleep(5);
        }
    }

    private bool Settled(Runtime runtime)
    {
        foreach (var path in _paths)
        {
            if (path is LinePath { Baseline: { } b } line)
            {
                var now = runtime.Irqs.GetStats(line.Irq);
                if (now.InProgress || now.Pending || now.Asserts - b.Asserts != (now.Runs - b.Runs) + (now.Coalesced - b.Coalesced))
                {
                    return false;
                }
            }
            else if (path is NapiNicPath { NicBaseline: { } nb, NapiBaseline: { } napiBefore } nic)
            {
                var stats = nic.NicStats;
                if (stats.Interrupts - nb.Interrupts != (stats.Delivered - nb.Delivered) + (stats.Coalesced - nb.Coalesced) + (stats.Latched - nb.Latched) ||
                    nic.NapiStats.Packets - napiBefore.Packets != nic.Handled + nic.FaultCharge)
                {
                    return false;
                }
            }
        }
        return true;
    }

    private static CpuSnapshot Snapshot(VirtualCpu cpu) => new(
        cpu.HardirqEntryCount, cpu.KsoftirqdWakeupCount, cpu.ParkCount, cpu.LocalTimerInterruptCount, cpu.IpiCallCount, cpu.GetCpuTime());

    private sealed record CpuSnapshot(long Hardirqs, long Ksoftirqd, long Parks, long Timer, long Ipis, CpuTimeStats Time);

    private static long SoftnetSqueeze(Runtime runtime) =>
        Enumerable.Range(0, runtime.Cpus.Count).Sum(c => runtime.NetRx.GetSoftnetStats(c).TimeSqueeze);

    private StormRunResult Collect(
        Runtime runtime, string label, StormReport? storm, FaultReports faultReports, CpuSnapshot[] cpuBefore,
        TimeSpan? unboundBefore, long softnetBefore, GcInfo gc, List<string> problems)
    {
        var identities = new List<IdentityCheck>();
        var paths = new List<PathResult>();
        double elapsed = storm?.Elapsed.TotalSeconds ?? 0;
        NapiResult? napi = null;
        foreach (var path in _paths)
        {
            long generated = path.Generated, handled = path.Handled;
            long delivered, coalesced, latched, runs, reraises = 0;
            double pathElapsed = elapsed;
            if (path is LinePath line)
            {
                var device = line.DeviceStats!;
                var lineStats = runtime.Irqs.GetStats(line.Irq);
                var baseline = line.Baseline!;
                delivered = device.Delivered;
                coalesced = device.Coalesced;
                latched = device.Latched;
                runs = lineStats.Runs - baseline.Runs;
                reraises = line.Reraises;
                long lineAsserts = lineStats.Asserts - baseline.Asserts;
                long lineCoalesced = lineStats.Coalesced - baseline.Coalesced;
                identities.Add(Identity($"{path.Name}: device asserted = generated", device.Asserted == device.Generated,
                    $"asserted {device.Asserted:N0}, generated {device.Generated:N0} (backlog {device.Backlog:N0})"));
                identities.Add(Identity($"{path.Name}: asserted = delivered + coalesced + latched", device.Asserted == delivered + coalesced + latched,
                    $"{device.Asserted:N0} = {delivered:N0} + {coalesced:N0} + {latched:N0}"));
                identities.Add(Identity($"{path.Name}: line asserts = device + driver re-raises", lineAsserts == device.Asserted + reraises,
                    $"{lineAsserts:N0} = {device.Asserted:N0} + {reraises:N0}"));
                identities.Add(Identity($"{path.Name}: line asserts = handler runs + coalesced", lineAsserts == runs + lineCoalesced,
                    $"{lineAsserts:N0} = {runs:N0} + {lineCoalesced:N0}"));
                identities.Add(Identity($"{path.Name}: taken by the top half = generated", device.Handled == generated,
                    $"{device.Handled:N0} of {generated:N0}"));
            }
            else
            {
                var nic = (NapiNicPath)path;
                var stats = nic.NicStats;
                var before = nic.NicBaseline!;
                var napiStats = nic.NapiStats;
                var napiBefore = nic.NapiBaseline!;
                var lineStats = runtime.Irqs.GetStats(nic.Irq);
                delivered = stats.Delivered - before.Delivered;
                coalesced = stats.Coalesced - before.Coalesced;
                latched = stats.Latched - before.Latched;
                runs = lineStats.Runs - nic.LineBaseline!.Runs;
                pathElapsed = nic.Elapsed.TotalSeconds;
                long interrupts = stats.Interrupts - before.Interrupts;
                long packets = napiStats.Packets - napiBefore.Packets;
                napi = new NapiResult(
                    runs, napiStats.Schedules - napiBefore.Schedules, napiStats.Polls - napiBefore.Polls,
                    napiStats.FullWeightPolls - napiBefore.FullWeightPolls, napiStats.CompleteDone - napiBefore.CompleteDone,
                    packets, runs == 0 ? 0 : (double)packets / runs, stats.ReadyWhileMasked - before.ReadyWhileMasked,
                    SoftnetSqueeze(runtime) - softnetBefore, stats.KernelDrops, nic.Window, nic.WindowStalls, nic.LateArrivals, nic.BadFrames);
                identities.Add(Identity("napi: device interrupts = delivered + coalesced + latched", interrupts == delivered + coalesced + latched,
                    $"{interrupts:N0} = {delivered:N0} + {coalesced:N0} + {latched:N0}"));
                identities.Add(Identity("napi: packets NAPI counted = handled + charge of polls that threw", packets == handled + nic.FaultCharge,
                    $"{packets:N0} = {handled:N0} + {nic.FaultCharge:N0}"));
                identities.Add(Identity("napi: no frame corrupt", nic.BadFrames == 0, $"{nic.BadFrames} bad frames"));
                identities.Add(Identity("napi: the kernel dropped no datagram", stats.KernelDrops is null or 0,
                    stats.KernelDrops is null ? "not visible here (no /proc/net/udp)" : $"{stats.KernelDrops} dropped at the socket"));
            }
            long lost = generated - handled;
            identities.Add(Identity($"{path.Name}: generated = handled + lost, lost = 0", lost == 0, $"{generated:N0} = {handled:N0} + {lost:N0}"));
            var hists = new[] { path.Latency.Merge(LatencyStage.TopHalf), path.Latency.Merge(LatencyStage.BottomHalfStart), path.Latency.Merge(LatencyStage.BottomHalfEnd) };
            long unordered = path.Latency.Unordered(LatencyStage.TopHalf) + path.Latency.Unordered(LatencyStage.BottomHalfStart) + path.Latency.Unordered(LatencyStage.BottomHalfEnd);
            paths.Add(new PathResult(
                path.Name, path.Kind.Describe(), path.Irq, _s.Rates[path.Kind], generated, delivered, coalesced, latched, runs, reraises,
                handled, lost, path.Batches, path.Batches == 0 ? 0 : (double)handled / path.Batches,
                pathElapsed > 0 ? handled / pathElapsed : 0, path.InjectedFaults,
                LatencyStats.From(hists[0]), LatencyStats.From(hists[1]), LatencyStats.From(hists[2]))
            {
                Histograms = hists,
                TopHalfFromAssert = LatencyStats.From(path.Latency.Merge(LatencyStage.TopHalf, fromAssert: true)),
                BottomHalfStartFromAssert = LatencyStats.From(path.Latency.Merge(LatencyStage.BottomHalfStart, fromAssert: true)),
                BottomHalfEndFromAssert = LatencyStats.From(path.Latency.Merge(LatencyStage.BottomHalfEnd, fromAssert: true)),
                GeneratorLag = LatencyStats.From(path.Latency.MergeGeneratorLag()),
                UnorderedSamples = unordered,
            });
            if (lost != 0)
            {
                problems.Add($"path {path.Name}: {lost:N0} of {generated:N0} events LOST (not handled within the drain timeout)");
            }
        }

        long throwsInjected = _paths.Sum(p => p.InjectedFaults);
        long throwsReported = Interlocked.Read(ref _throwsReported);
        if (_s.Faults.ThrowEvery > 0)
        {
            identities.Add(Identity("throw-every: every injected throw reported in the fault log", throwsInjected == throwsReported && throwsInjected > 0,
                $"{throwsInjected:N0} injected, {throwsReported:N0} reported"));
        }
        if (faultReports.IrqNone is { } spurious)
        {
            identities.Add(Identity($"irq-none: the spurious detector disabled IRQ {spurious.Irq}", spurious.Disabled && spurious.Warning is not null,
                spurious.Warning ?? $"not disabled after {spurious.HandlerRuns:N0} unhandled runs"));
        }
        if (faultReports.SelfRaising is { } raising)
        {
            identities.Add(Identity("self-raising-softirq: ksoftirqd/0 took over", raising.KsoftirqdTakeovers > 0, $"{raising.KsoftirqdTakeovers:N0} take-overs, {raising.Runs:N0} runs"));
            identities.Add(Identity("self-raising-softirq: a work item on CPU 0 ran during the flood", raising.WorkProgressed,
                raising.ProbeLatencyUs is { } us ? $"queue -> start {us:N0} µs" : "the probe never ran"));
        }
        if (faultReports.Stuck is { } stuck)
        {
            identities.Add(Identity("stuck-work: the stall watchdog reported the pool", stuck.WatchdogReported, stuck.Report ?? $"no report in {stuck.StallMs:N0} ms"));
            identities.Add(Identity("stuck-work: other pools ran during the stall", stuck.HighpriPoolRan && stuck.UnboundPoolRan,
                $"highpri pool {(stuck.HighpriPoolRan ? "ran" : "did NOT run")}, unbound pool {(stuck.UnboundPoolRan ? "ran" : "did NOT run")}"));
            identities.Add(Identity("stuck-work: the item behind it ran once released", stuck.VictimRanAfter, $"stalled {stuck.StallMs:N0} ms"));
        }
        foreach (var failed in identities.Where(i => !i.Holds))
        {
            problems.Add($"identity failed: {failed.Name}: {failed.Detail}");
        }

        var cpus = runtime.Cpus.Select((cpu, i) =>
        {
            var now = Snapshot(cpu);
            var before = cpuBefore[i];
            return new CpuResult(cpu.Id, cpu.Core, now.Hardirqs - before.Hardirqs, now.Ksoftirqd - before.Ksoftirqd, now.Parks - before.Parks,
                now.Timer - before.Timer, now.Ipis - before.Ipis, new CpuTimeInfo(
                    Ms(now.Time.HardIrq, before.Time.HardIrq), Ms(now.Time.Softirq, before.Time.Softirq), Ms(now.Time.Ksoftirqd, before.Time.Ksoftirqd),
                    Ms(now.Time.Workers, before.Time.Workers), Ms(now.Time.IrqThreads, before.Time.IrqThreads), Ms(now.Time.CpuThread, before.Time.CpuThread)));
        }).ToArray();

        var recent = runtime.Faults.Recent.TakeLast(8).Select(f => f.ToString()).ToArray();
        var faults = new FaultsResult(_s.Faults.ToSpecs(), throwsInjected, throwsReported, runtime.Faults.Count - _faultLogAtStart,
            faultReports.IrqNone, faultReports.SelfRaising, faultReports.Stuck, recent);
        string devicePriority = _s.Priorities == PriorityPolicy.None ? "unchanged"
            : _deviceNiceError is null ? $"nice {_s.CpuNice}: granted" : $"nice {_s.CpuNice}: REFUSED ({_deviceNiceError})";
        var generator = storm is null
            ? new GeneratorInfo(0, 0, 0, false, 0, 0, 0, null, 0, 0, 0, devicePriority)
            : new GeneratorInfo(storm.RequestedRate, storm.AchievedRate, storm.Elapsed.TotalSeconds, storm.FellBehind, storm.MaxLag.TotalMicroseconds,
                storm.LateEvents, storm.LateLag.TotalMilliseconds, storm.LateRunDelay?.TotalMilliseconds, storm.BacklogStalls, storm.Abandoned, storm.GeneratorAllocatedBytes, devicePriority,
                storm.Stalls, storm.CatchUp.TotalMilliseconds);
        if (storm is { Abandoned: > 0 })
        {
            problems.Add($"the generator abandoned {storm.Abandoned:N0} backlogged events");
        }

        var deviceThreads = new List<string>();
        var pinErrors = new List<string>();
        if (_paths.OfType<LinePath>().Any())
        {
            deviceThreads.Add("storm");
            if (storm?.PinError is { } e)
            {
                pinErrors.Add($"storm: {e}");
            }
        }
        if (_paths.OfType<NapiNicPath>().SingleOrDefault() is { } nicPath)
        {
            deviceThreads.Add("nic-sender");
            deviceThreads.Add("nic/storm-nic");
            pinErrors.AddRange(nicPath.PinErrors);
        }
        var topology = _plan.Describe(runtime.Cpus.Select(c => (c.Id, c.Core)).ToArray(), runtime.Options.Pinning, deviceThreads, pinErrors);

        return new StormRunResult(
            label, true, [], Machine(runtime), Options(runtime), runtime.Placements.Select(p =>
                new PlacementInfo(p.Thread, p.Cpu, p.Core, p.Pinned, p.PinError, p.Priority, p.PriorityGranted, p.PriorityError)).ToArray(),
            generator, paths,
            new TotalsInfo(paths.Sum(p => p.Generated), paths.Sum(p => p.Handled), paths.Sum(p => p.Lost), throwsInjected),
            identities, cpus, MsDelta(runtime.GetUnboundWorkerCpuTime(), unboundBefore), napi, faults, gc,
            new ProcTables(runtime.Irqs.RenderInterrupts(), runtime.RenderSoftirqs(), runtime.NetRx.RenderSoftnetStat()))
        { Topology = topology };
    }

    private static IdentityCheck Identity(string name, bool holds, string detail) => new(name, holds, detail);

    private static double? Ms(TimeSpan? now, TimeSpan? before) => now is { } n && before is { } b ? (n - b).TotalMilliseconds : null;

    private static double? MsDelta(TimeSpan? now, TimeSpan? before) => Ms(now, before);

    private static MachineInfo Machine(Runtime runtime) => new(
        Environment.MachineName, RuntimeInformation.OSDescription, RuntimeInformation.FrameworkDescription,
        RuntimeInformation.ProcessArchitecture.ToString(), Environment.ProcessorCount, runtime.Cpus.Select(c => c.Core).ToArray(),
        Stopwatch.Frequency, typeof(StormRunner).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "?");

    private OptionsInfo Options(Runtime runtime) => new(
        _s.Preset, _s.Cpus, _s.Duration.TotalSeconds, _s.Warmup.TotalSeconds, _s.Arrival.ToString().ToLowerInvariant(), _s.BurstLength,
        _s.Paths.ToDictionary(p => p.CliName(), p => _s.Rates[p]), _s.Paths.Select(p => p.CliName()).ToArray(),
        _s.IdlePolicy.ToString().ToLowerInvariant(), _s.Pin, _s.Priorities.ToString().ToLowerInvariant(), _s.CpuNice, _s.KsoftirqdNice,
        _s.LetKsoftirqdDoItsJob, _s.Work.TotalMicroseconds, _s.WatchdogThreshold.TotalMilliseconds, _s.Faults.ToSpecs(), _s.Seed,
        runtime.Hz, runtime.Options.IrqTimeAccounting);

    /// <summary>A short label of the settings, for the report header.</summary>
    public static string Describe(StormSettings s) => string.Create(CultureInfo.InvariantCulture,
        $"preset {s.Preset}: {s.Cpus} CPUs, {(s.RunsUntilStopped ? "until Ctrl-C" : $"{s.Duration.TotalSeconds:0.##} s")} (+{s.Warmup.TotalSeconds:0.##} s warm-up), {s.Arrival.ToString().ToLowerInvariant()} arrivals, idle {s.IdlePolicy.ToString().ToLowerInvariant()}, pinning {(s.Pin ? "on" : "off")}, priorities {s.Priorities.ToString().ToLowerInvariant()}");
}
