using System.Diagnostics;
using System.Globalization;
using DeferRuntime.Cpus;
using DeferRuntime.Softirqs;
using DeferRuntime.Tasklets;
using DeferRuntime.Torture.Harness;
using DeferRuntime.Workqueues;

namespace DeferRuntime.Torture.Suites;

/// <summary>
/// Shutdown under load, the module-unload half of torture.c (torture_cleanup while kthreads still run):
/// load threads queue work on a bound and an unbound workqueue, schedule tasklets and raise a softirq,
/// and work items and tasklets chain more of the same, when Runtime.Dispose() begins, and they keep
/// going while it runs. DESIGN §3's promise is checked exactly: everything accepted ran, nothing was
/// lost, and what was not accepted was refused with the documented ObjectDisposedException.
/// </summary>
/// <remarks>
/// <para>Threads of no CPU keep calling until they are refused (each ends with exactly one refusal).
/// Threads bound to a CPU are the runtime's own tasks, which shutdown waits for (their requests bypass
/// the refusal): they stop when Runtime.IsShutDown turns true and release their binding, as a kthread
/// stops at module unload; what they queued meanwhile must run too.</para>
/// <para>Accepted means: queue_work returned true; tasklet_schedule or raise_softirq returned without
/// throwing. Work is counted per item (accepted = run). Tasklets and softirqs use generations, as the
/// tasklet suite does: a call announced as generation g and accepted must be followed by a run that read
/// g or later (per tasklet; per CPU for the softirq, raised only from threads bound to that CPU).</para>
/// </remarks>
internal sealed class ShutdownTorture : IDisposable
{
    private const int ItemsPerQueue = 8;
    private const int Stride = 8; // longs per cache line

    private readonly TortureRun _run;
    private readonly Runtime _runtime;
    private readonly LoadControl _control;
    private readonly PlacementLog _placement;
    private readonly FaultInjector _faults;
    private readonly Workqueue[] _wqs;
    private readonly Item[] _items;
    private readonly Subject[] _tasklets;
    private readonly long[] _softirqRequested;   // A: per CPU generation, bumped before each raise on that CPU
    private readonly long[] _softirqAccepted;    // A: per CPU, highest generation whose raise returned
    private readonly long[] _softirqSeen;        // A: per CPU, highest generation a handler run read at its start
    private readonly int _threads;
    private readonly List<string> _unexpected = []; // L: itself
    private long _softirqRaises;      // A
    private long _softirqRuns;        // A
    private long _taskletSchedules;   // A
    private long _refused;            // A
    private long _foreignRefused;     // A: refusals that ended a thread of no CPU
    private long _acceptedDuringShutdown; // A
    private int _disposing;           // A: 1 once Dispose() has been called

    [ThreadStatic]
    private static TortureRandom t_rng;

    [ThreadStatic]
    private static bool t_rngSeeded;

    private sealed class Item
    {
        public required WorkStruct Work;
        public required Workqueue Wq;
        public long Accepted; // A
        public long Runs;     // A
    }

    private sealed class Subject
    {
        public required Tasklet Tasklet;
        public long Requested; // A: generation, bumped before every schedule call
        public long Accepted;  // A: highest generation whose schedule returned
        public long LastSeen;  // A: highest generation a run read at its start
        public long Runs;      // A
    }

    private ShutdownTorture(TortureRun run, Runtime runtime)
    {
        _run = run;
        _runtime = runtime;
        var o = run.Options;
        // Shuffle, not stutter: a pause just as Dispose() begins would take the load away from it.
        _control = new LoadControl(TimeSpan.Zero, o.ShuffleInterval);
        _placement = new PlacementLog(runtime.Options.Pinning);
        _faults = new FaultInjector(o.FaultEvery, runtime.Faults);
        _threads = o.Writers ?? 2 * o.CpuCount;
        int cpus = runtime.Cpus.Count;
        _softirqRequested = new long[(cpus + 1) * Stride];
        _softirqAccepted = new long[(cpus + 1) * Stride];
        _softirqSeen = new long[(cpus + 1) * Stride];
        _wqs = [runtime.AllocWorkqueue("shutdown_bound"), runtime.AllocWorkqueue("shutdown_unbound", WorkqueueFlags.Unbound)];
        var items = new List<Item>();
        foreach (var wq in _wqs)
        {
            for (int i = 0; i < ItemsPerQueue; i++)
            {
                Item? it = null;
                var work = new WorkStruct(_ => Function(it!), $"{wq.Name}/{i}");
                it = new Item { Work = work, Wq = wq };
                items.Add(it);
            }
        }
        _items = [.. items];
        _tasklets = new Subject[Math.Max(4, 2 * cpus)];
        for (int i = 0; i < _tasklets.Length; i++)
        {
            Subject? s = null;
            var tasklet = runtime.CreateTasklet(_ => Callback(s!), $"shutdown_tasklet/{i}");
            s = new Subject { Tasklet = tasklet };
            _tasklets[i] = s;
        }
        runtime.OpenSoftirq(SoftirqVector.Block, SoftirqHandler);
    }

    public static ShutdownTortureResult Run(TortureRun run)
    {
        var runtime = run.Boot();
        ShutdownTorture? test;
        try
        {
            test = new ShutdownTorture(run, runtime);
        }
        catch
        {
            runtime.Dispose();
            throw;
        }
        using (test)
        {
            return test.Torture();
        }
    }

    public void Dispose()
    {
        _control.Dispose();
        _faults.Dispose();
    }

    private ShutdownTortureResult Torture()
    {
        var problems = new List<string>();
        var threads = new LoadThreads();
        for (int i = 0; i < _threads; i++)
        {
            int tid = i;
            threads.Start($"shutdown_torture_load/{tid}", () => Load(tid));
        }
        _control.Start();
        var loaded = _run.RunLoad(TortureRunner.ShutdownTest, () => string.Create(CultureInfo.InvariantCulture,
            $"Work: {_items.Sum(i => Interlocked.Read(ref i.Accepted))}  Tasklets: {Interlocked.Read(ref _taskletSchedules)}  Softirqs: {Interlocked.Read(ref _softirqRaises)}"));

        // The test itself: shut down while the load keeps coming.
        _run.Report(TortureRunner.ShutdownTest, loaded, "Runtime.Dispose() under load");
        Volatile.Write(ref _disposing, 1);
        var clock = Stopwatch.StartNew();
        string? disposeError = null;
        try
        {
            _runtime.Dispose();
        }
#pragma warning disable CA1031 // what Dispose() throws is this test's result
        catch (Exception e)
#pragma warning restore CA1031
        {
            disposeError = $"{e.GetType().Name}: {e.Message}";
        }
        var disposeTime = clock.Elapsed;
        _control.Stop();
        // Threads of no CPU end at their refusal, bound ones once they saw the shutdown.
        problems.AddRange(threads.Join(TortureRun.Ceiling));
        var refusedAfter = ProbeRefusals();
        return Result(loaded, disposeTime, disposeError, refusedAfter, problems);
    }

    private void Load(int tid)
    {
        var rng = new TortureRandom(_run.Seed, 6000 + tid);
        bool bound = tid % 2 == 0;
        CpuPlacer? place = null;
        try
        {
            place = new CpuPlacer(_runtime, _control, _placement, bind: bound, firstCpu: tid / 2);
            // A bound thread stops when shutdown begins (shutdown waits for its binding); a thread of no
            // CPU goes on until it is refused.
            while (!bound || !_runtime.IsShutDown)
            {
                place.MaybeShuffle(ref rng);
                int r = rng.Next(100);
                if (r < 50)
                {
                    QueueWork(_items[rng.Next(_items.Length)]);
                }
                else if (r < 80 || !bound)
                {
                    ScheduleTasklet(_tasklets[rng.Next(_tasklets.Length)], rng.OneIn(4));
                }
                else
                {
                    RaiseSoftirq(place.Cpu);
                }
            }
        }
        catch (ObjectDisposedException)
        {
            // The documented refusal: "the runtime has been shut down and accepts no new work".
            Interlocked.Increment(ref _refused);
            if (!bound)
            {
                Interlocked.Increment(ref _foreignRefused);
            }
        }
#pragma warning disable CA1031 // any other failure of a request is a finding of this test
        catch (Exception e)
#pragma warning restore CA1031
        {
            lock (_unexpected)
            {
                _unexpected.Add($"{Thread.CurrentThread.Name}: {e.GetType().Name}: {e.Message}");
            }
        }
        finally
        {
            place?.Dispose();
        }
    }

    private void QueueWork(Item it)
    {
        if (it.Wq.Queue(it.Work))
        {
            Interlocked.Increment(ref it.Accepted);
            if (Volatile.Read(ref _disposing) != 0)
            {
                Interlocked.Increment(ref _acceptedDuringShutdown);
            }
        }
    }

    private void ScheduleTasklet(Subject s, bool hi)
    {
        long generation = Interlocked.Increment(ref s.Requested);
        if (hi)
        {
            s.Tasklet.HiSchedule();
        }
        else
        {
            s.Tasklet.Schedule();
        }
        // Returned without throwing: accepted (scheduled, or merged with a pending run).
        SuiteSupport.AtomicMax(ref s.Accepted, generation);
        Interlocked.Increment(ref _taskletSchedules);
    }

    /// <summary>raise_softirq(BLOCK) from a thread bound to <paramref name="cpu"/>: the handler must run on that CPU afterwards.</summary>
    private void RaiseSoftirq(int cpu)
    {
        long generation = Interlocked.Increment(ref _softirqRequested[(cpu + 1) * Stride]);
        _runtime.RaiseSoftirq(SoftirqVector.Block);
        SuiteSupport.AtomicMax(ref _softirqAccepted[(cpu + 1) * Stride], generation);
        Interlocked.Increment(ref _softirqRaises);
    }

    private void Function(Item it)
    {
        Interlocked.Increment(ref it.Runs);
        ref var rng = ref Rng();
        // Chains, accepted during shutdown too: a work item of the runtime may queue work and schedule
        // tasklets while Dispose() drains (fewer than one child per run on average, so it ends).
        if (rng.OneIn(4))
        {
            QueueWork(_items[rng.Next(_items.Length)]);
        }
        if (rng.OneIn(8))
        {
            ScheduleTasklet(_tasklets[rng.Next(_tasklets.Length)], hi: false);
        }
        _faults.MaybeThrow($"work item '{it.Work.Name}'");
    }

    private void Callback(Subject s)
    {
        SuiteSupport.AtomicMax(ref s.LastSeen, Volatile.Read(ref s.Requested));
        Interlocked.Increment(ref s.Runs);
        ref var rng = ref Rng();
        if (rng.OneIn(4))
        {
            QueueWork(_items[rng.Next(_items.Length)]); // work queued from softirq context, during shutdown too
        }
        _faults.MaybeThrow($"tasklet '{s.Tasklet.Name}'");
    }

    private void SoftirqHandler()
    {
        int cpu = CpuContext.CurrentCpuId;
        SuiteSupport.AtomicMax(ref _softirqSeen[(cpu + 1) * Stride], Volatile.Read(ref _softirqRequested[(cpu + 1) * Stride]));
        Interlocked.Increment(ref _softirqRuns);
        _faults.MaybeThrow("softirq BLOCK");
    }

    private ref TortureRandom Rng()
    {
        if (!t_rngSeeded)
        {
            t_rng = new TortureRandom(_run.Seed, 7000 + Environment.CurrentManagedThreadId);
            t_rngSeeded = true;
        }
        return ref t_rng;
    }

    /// <summary>After shutdown, each kind of request from a thread of no CPU must be refused with ObjectDisposedException.</summary>
    private List<string> ProbeRefusals()
    {
        var wrong = new List<string>();
        Probe("queue_work()", () => _wqs[0].Queue(_items[0].Work), wrong);
        Probe("tasklet_schedule()", () => _tasklets[0].Tasklet.Schedule(), wrong);
        Probe("raise_softirq()", () => _runtime.RaiseSoftirq(SoftirqVector.Block), wrong);
        return wrong;
    }

    private static void Probe(string call, Action action, List<string> wrong)
    {
        try
        {
            action();
            wrong.Add($"{call} after shutdown was accepted");
        }
        catch (ObjectDisposedException)
        {
        }
#pragma warning disable CA1031 // the wrong exception is a finding
        catch (Exception e)
#pragma warning restore CA1031
        {
            wrong.Add($"{call} after shutdown threw {e.GetType().Name}, not ObjectDisposedException");
        }
    }

    private ShutdownTortureResult Result(TimeSpan loaded, TimeSpan disposeTime, string? disposeError, List<string> refusedAfter, List<string> problems)
    {
        long workAccepted = _items.Sum(i => Interlocked.Read(ref i.Accepted));
        long workRun = _items.Sum(i => Interlocked.Read(ref i.Runs));
        var lostWork = _items.Where(i => i.Accepted != i.Runs).ToArray();
        long taskletsLost = _tasklets.Count(s => Volatile.Read(ref s.LastSeen) < Volatile.Read(ref s.Accepted));
        int cpus = _runtime.Cpus.Count;
        long softirqsLost = Enumerable.Range(0, cpus).Count(c => Volatile.Read(ref _softirqSeen[(c + 1) * Stride]) < Volatile.Read(ref _softirqAccepted[(c + 1) * Stride]));
        int foreign = _threads / 2;
        string[] unexpected;
        lock (_unexpected)
        {
            unexpected = [.. _unexpected];
        }
        var faults = _faults.Account();
        var checks = new List<TortureCheck>
        {
            new("dispose", disposeError is null, disposeError ?? string.Create(CultureInfo.InvariantCulture,
                $"Runtime.Dispose() returned after {disposeTime.TotalMilliseconds:0} ms under load")),
            new("no work lost", lostWork.Length == 0, lostWork.Length == 0
                ? string.Create(CultureInfo.InvariantCulture, $"accepted {workAccepted} = run {workRun} ({Interlocked.Read(ref _acceptedDuringShutdown)} accepted after Dispose() began)")
                : string.Join(", ", lostWork.Take(5).Select(i => string.Create(CultureInfo.InvariantCulture, $"'{i.Work.Name}': accepted {i.Accepted}, ran {i.Runs}")))),
            new("no tasklet lost", taskletsLost == 0, string.Create(CultureInfo.InvariantCulture,
                $"{taskletsLost} of {_tasklets.Length} tasklets had an accepted schedule with no run after it ({Interlocked.Read(ref _taskletSchedules)} schedules, {_tasklets.Sum(s => s.Runs)} runs)")),
            new("no softirq lost", softirqsLost == 0, string.Create(CultureInfo.InvariantCulture,
                $"{softirqsLost} of {cpus} CPUs had an accepted raise with no handler run after it ({Interlocked.Read(ref _softirqRaises)} raises, {Interlocked.Read(ref _softirqRuns)} runs)")),
            new("refusals", unexpected.Length == 0 && Interlocked.Read(ref _foreignRefused) == foreign && refusedAfter.Count == 0,
                unexpected.Length > 0 ? "unexpected: " + string.Join("; ", unexpected)
                : refusedAfter.Count > 0 ? string.Join("; ", refusedAfter)
                : string.Create(CultureInfo.InvariantCulture,
                    $"{Interlocked.Read(ref _foreignRefused)} of {foreign} threads of no CPU ended refused with ObjectDisposedException ({Interlocked.Read(ref _refused)} refusals in all); queue, schedule and raise refused after shutdown")),
            new("threads", problems.Count == 0, problems.Count == 0
                ? string.Create(CultureInfo.InvariantCulture, $"{_threads} load threads stopped once shut out")
                : string.Join("; ", problems)),
            faults.Check(),
        };
        return new ShutdownTortureResult
        {
            LoadThreads = _threads,
            LoadSeconds = loaded.TotalSeconds,
            DisposeSeconds = disposeTime.TotalSeconds,
            WorkAccepted = workAccepted,
            WorkRun = workRun,
            WorkAcceptedDuringShutdown = Interlocked.Read(ref _acceptedDuringShutdown),
            TaskletSchedules = Interlocked.Read(ref _taskletSchedules),
            TaskletRuns = _tasklets.Sum(s => Interlocked.Read(ref s.Runs)),
            TaskletSchedulesLost = taskletsLost,
            SoftirqRaises = Interlocked.Read(ref _softirqRaises),
            SoftirqRuns = Interlocked.Read(ref _softirqRuns),
            SoftirqRaisesLost = softirqsLost,
            Refused = Interlocked.Read(ref _refused),
            UnexpectedErrors = unexpected,
            DisposeError = disposeError,
            Shuffles = _placement.Moves,
            Placement = _placement.Describe(),
            Faults = faults,
            Checks = checks,
        };
    }
}
