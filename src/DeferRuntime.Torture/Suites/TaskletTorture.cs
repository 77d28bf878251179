using System.Globalization;
using DeferRuntime.Locking;
using DeferRuntime.Tasklets;
using DeferRuntime.Torture.Harness;

namespace DeferRuntime.Torture.Suites;

/// <summary>
/// Tasklet torture: many threads (half bound to CPUs, half of no CPU, all shuffled) schedule a handful of
/// tasklets as fast as they can, with tasklet_schedule and tasklet_hi_schedule; the tasklets themselves
/// schedule others from softirq context; a thread disables and enables them meanwhile. Checks the
/// tasklet_struct contract: a tasklet never runs on two CPUs at once, never runs between
/// tasklet_disable() and tasklet_enable(), and every schedule is followed by a run.
/// </summary>
/// <remarks>
/// <para>Accounting, consistent with the kernel's SCHED bit: a schedule that finds SCHED clear sets it and
/// causes exactly one run; one that finds it set adds nothing (it is coalesced). Which of the two a call
/// was is not observable (tasklet_schedule returns void), so the books are: runs ≤ schedules, and
/// coalesced = schedules − runs; the runtime's own run count must equal the runs the test counted.</para>
/// <para>"Every schedule is followed by a run", without relying on timing: before each call the scheduler
/// bumps the tasklet's generation; each run reads the generation at its start. A schedule announced as
/// generation g has been served once a run has read g or later. Schedulers occasionally wait for that
/// (bounded only to catch a hang), and at the end every tasklet must have served its last generation. A
/// lost SCHED bit (set but never queued) stops all later runs of the tasklet, which this catches.</para>
/// </remarks>
internal sealed class TaskletTorture : IStormTest<TaskletTortureResult>
{
    private readonly TortureRun _run;
    private readonly Runtime _runtime;
    private readonly LoadControl _control;
    private readonly PlacementLog _placement;
    private readonly FaultInjector _faults;
    private readonly Subject[] _subjects;
    private readonly int _schedulers;
    private readonly PerThread _schedules;
    private long _chained;        // A: schedules made by tasklet callbacks
    private long _concurrent;     // A: runs that found their tasklet already running
    private long _whileDisabled;  // A: runs between Disable() returning and Enable()
    private long _stalledWaits;   // A: mid-run waits for a run that hit the hang ceiling
    private long _servedWaits;    // A: mid-run waits that saw their schedule served
    private long _disables;       // disabler thread only
    private long _chainsInFlight; // A: callbacks between deciding to chain and having scheduled

    [ThreadStatic]
    private static TortureRandom t_rng;

    [ThreadStatic]
    private static bool t_rngSeeded;

    private sealed class Subject
    {
        public required Tasklet Tasklet;
        public long Requested;        // A: generation, bumped before every schedule call
        public long LastSeen;         // A: the highest generation a run read at its start
        public long Runs;             // A: callback entries
        public int Running;           // A: 1 while the callback runs
        public int DisabledConfirmed; // A: 1 between Disable() returning and Enable()
    }

    private TaskletTorture(TortureRun run, Runtime runtime)
    {
        _run = run;
        _runtime = runtime;
        var o = run.Options;
        _control = new LoadControl(o.Stutter, o.ShuffleInterval);
        _placement = new PlacementLog(runtime.Options.Pinning);
        _faults = new FaultInjector(o.FaultEvery, runtime.Faults);
        _schedulers = o.Writers ?? 2 * o.CpuCount;
        _schedules = new PerThread(_schedulers);
        _subjects = new Subject[Math.Max(4, 2 * o.CpuCount)];
        for (int i = 0; i < _subjects.Length; i++)
        {
            Subject? s = null;
            var tasklet = runtime.CreateTasklet(_ => Callback(s!), $"torture_tasklet/{i}");
            s = new Subject { Tasklet = tasklet };
            _subjects[i] = s;
        }
    }

    public static TaskletTortureResult Run(TortureRun run) => SuiteSupport.Run(run, static (r, runtime) => new TaskletTorture(r, runtime));

    public FaultInjector Faults => _faults;

    public void Dispose() => _control.Dispose();

    public TimeSpan Torture(List<string> problems)
    {
        var threads = new LoadThreads();
        for (int i = 0; i < _schedulers; i++)
        {
            int tid = i;
            threads.Start($"tasklet_torture_scheduler/{tid}", () => Scheduler(tid));
        }
        threads.Start("tasklet_torture_disabler", Disabler);
        _control.Start();
        var ran = _run.RunLoad(TortureRunner.TaskletTest, () => string.Create(CultureInfo.InvariantCulture,
            $"Schedules: {_schedules.Sum() + Interlocked.Read(ref _chained)}  Runs: {_subjects.Sum(s => Interlocked.Read(ref s.Runs))}  Concurrent: {Interlocked.Read(ref _concurrent)}"));
        _control.Stop();
        problems.AddRange(threads.Join(TortureRun.Ceiling));
        if (threads.AnyAlive)
        {
            return ran;
        }

        // Every announced schedule must be served. First let chains that began before the stop finish
        // (tasklet_kill() below would otherwise swallow one that schedules after it took SCHED).
        SuiteSupport.WaitUntil(() => Interlocked.Read(ref _chainsInFlight) == 0);
        foreach (var s in _subjects)
        {
            SuiteSupport.WaitUntil(() => Volatile.Read(ref s.LastSeen) >= Volatile.Read(ref s.Requested));
        }
        foreach (var s in _subjects)
        {
            s.Tasklet.Kill(); // tasklet_kill(): none scheduled or running after this
        }
        return ran;
    }

    private void Scheduler(int tid)
    {
        var rng = new TortureRandom(_run.Seed, 2000 + tid);
        // Even threads are bound to a CPU (the local path), odd ones belong to no CPU (routed and kicked).
        using var place = new CpuPlacer(_runtime, _control, _placement, bind: tid % 2 == 0, firstCpu: tid / 2);
        long schedules = 0;
        try
        {
            do
            {
                place.MaybeShuffle(ref rng);
                var s = _subjects[rng.Next(_subjects.Length)];
                long generation = Interlocked.Increment(ref s.Requested);
                if (rng.OneIn(4))
                {
                    s.Tasklet.HiSchedule();
                }
                else
                {
                    s.Tasklet.Schedule();
                }
                schedules++;
                if (rng.OneIn(256))
                {
                    // Now and then, insist on being served before going on.
                    if (SuiteSupport.WaitUntil(() => Volatile.Read(ref s.LastSeen) >= generation))
                    {
                        Interlocked.Increment(ref _servedWaits);
                    }
                    else
                    {
                        Interlocked.Increment(ref _stalledWaits);
                    }
                }
                if ((schedules & 255) == 0)
                {
                    Volatile.Write(ref _schedules[tid], schedules);
                }
                _control.StutterWait();
            }
            while (!_control.StopRequested);
        }
        finally
        {
            Volatile.Write(ref _schedules[tid], schedules);
        }
    }

    /// <summary>tasklet_disable() / tasklet_enable() on random tasklets while they are being scheduled.</summary>
    private void Disabler()
    {
        var rng = new TortureRandom(_run.Seed, 2999);
        do
        {
            var s = _subjects[rng.Next(_subjects.Length)];
            s.Tasklet.Disable(); // waits for a running instance
            Volatile.Write(ref s.DisabledConfirmed, 1);
            Delay.Udelay(rng.Next(50));
            Volatile.Write(ref s.DisabledConfirmed, 0);
            s.Tasklet.Enable(); // a schedule that came meanwhile runs now
            _disables++;
            Delay.Udelay(100); // leave them enabled most of the time
            _control.StutterWait();
        }
        while (!_control.StopRequested);
    }

    private void Callback(Subject s)
    {
        if (Interlocked.Exchange(ref s.Running, 1) != 0)
        {
            Interlocked.Increment(ref _concurrent);
        }
        try
        {
            if (Volatile.Read(ref s.DisabledConfirmed) != 0)
            {
                Interlocked.Increment(ref _whileDisabled);
            }
            SuiteSupport.AtomicMax(ref s.LastSeen, Volatile.Read(ref s.Requested));
            Interlocked.Increment(ref s.Runs);
            ref var rng = ref Rng();
            if (rng.OneIn(4))
            {
                Delay.Udelay(1 + rng.Next(3)); // widen the window in which a second CPU could wrongly start it
            }
            if (rng.OneIn(8))
            {
                // In flight before looking at the stop flag: once the end of the test has seen no chain in
                // flight after the stop, no new one can begin (see Torture).
                Interlocked.Increment(ref _chainsInFlight);
                if (!_control.StopRequested)
                {
                    var other = _subjects[rng.Next(_subjects.Length)];
                    Interlocked.Increment(ref other.Requested);
                    other.Tasklet.Schedule(); // from softirq context: this CPU's own list
                    Interlocked.Increment(ref _chained);
                }
                Interlocked.Decrement(ref _chainsInFlight);
            }
            _faults.MaybeThrow($"tasklet '{s.Tasklet.Name}'");
        }
        finally
        {
            Volatile.Write(ref s.Running, 0);
        }
    }

    private ref TortureRandom Rng()
    {
        if (!t_rngSeeded)
        {
            t_rng = new TortureRandom(_run.Seed, 3000 + Environment.CurrentManagedThreadId);
            t_rngSeeded = true;
        }
        return ref t_rng;
    }

    public TaskletTortureResult Result(TimeSpan ran, List<string> problems)
    {
        long schedules = _schedules.Sum() + Interlocked.Read(ref _chained);
        long runs = _subjects.Sum(s => Interlocked.Read(ref s.Runs));
        long runtimeRuns = _subjects.Sum(s => s.Tasklet.RunCount);
        long unserved = _subjects.Sum(s => Math.Max(0, Volatile.Read(ref s.Requested) - Volatile.Read(ref s.LastSeen)));
        long stalled = Interlocked.Read(ref _stalledWaits);
        long lost = unserved + stalled;
        var faults = _faults.Account();
        var checks = new List<TortureCheck>
        {
            new("no concurrent runs", _concurrent == 0, string.Create(CultureInfo.InvariantCulture,
                $"{_concurrent} runs started while the same tasklet was running, in {runs} runs")),
            new("disable", _whileDisabled == 0, string.Create(CultureInfo.InvariantCulture,
                $"{_whileDisabled} runs inside {_disables} tasklet_disable()/tasklet_enable() windows")),
            new("no lost schedule", lost == 0, string.Create(CultureInfo.InvariantCulture,
                $"{unserved} schedule(s) never followed by a run at the end, {stalled} mid-run wait(s) hung; {Interlocked.Read(ref _servedWaits)} mid-run waits served")),
            new("accounting", runs == runtimeRuns && runs <= schedules && (schedules == 0 || runs > 0), string.Create(CultureInfo.InvariantCulture,
                $"schedules {schedules} = runs {runs} + coalesced {schedules - runs}; the runtime counted {runtimeRuns} runs")),
            new("threads", problems.Count == 0, problems.Count == 0
                ? string.Create(CultureInfo.InvariantCulture, $"{_schedulers} schedulers and 1 disabler started and stopped cleanly")
                : string.Join("; ", problems)),
            faults.Check(),
        };
        var perTasklet = _subjects.Select(s => Interlocked.Read(ref s.Runs)).ToArray();
        return new TaskletTortureResult
        {
            Tasklets = _subjects.Length,
            Schedulers = _schedulers,
            DurationSeconds = ran.TotalSeconds,
            Schedules = schedules,
            ChainedSchedules = Interlocked.Read(ref _chained),
            Runs = runs,
            RuntimeRuns = runtimeRuns,
            Coalesced = schedules - runs,
            ConcurrentRuns = _concurrent,
            RunsWhileDisabled = _whileDisabled,
            LostSchedules = lost,
            Disables = _disables,
            MaxRuns = perTasklet.Max(),
            MinRuns = perTasklet.Min(),
            Stutters = _control.Stutters,
            Shuffles = _placement.Moves,
            Placement = _placement.Describe(),
            Faults = faults,
            Checks = checks,
        };
    }
}
