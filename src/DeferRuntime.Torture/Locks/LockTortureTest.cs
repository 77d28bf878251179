using System.Globalization;
using DeferRuntime.Locking;
using DeferRuntime.Torture.Harness;

namespace DeferRuntime.Torture.Locks;

/// <summary>
/// lock_torture_writer() / lock_torture_reader() for one lock type on its own runtime: writers (and
/// readers) bound to virtual CPUs take and release the lock in a loop, with locktorture's delays inside
/// the hold (an occasional long hold, short udelays, a rare yield), stutter pauses between operations
/// and shuffles of their CPU; every hold is checked by an <see cref="ExclusionGuard"/>, and the irq and
/// bh variants also by a <see cref="ContextProbe"/>.
/// </summary>
internal sealed class LockTortureTest : IDisposable
{
    private readonly TortureRun _run;
    private readonly Runtime _runtime;
    private readonly TortureLock _lock;
    private readonly ExclusionGuard _guard = new();
    private readonly LoadControl _control;
    private readonly PlacementLog _placement;
    private readonly ContextProbe? _probe;
    private readonly int _writers;
    private readonly int _readers;
    private readonly int _longHoldMicroseconds;
    private readonly PerThread _writes;
    private readonly PerThread _writeFails;
    private readonly PerThread _reads;
    private readonly PerThread _readFails;
    private readonly PerThread _longHolds;
    private readonly PerThread _contextViolations;

    private LockTortureTest(TortureRun run, Runtime runtime, string type)
    {
        _run = run;
        _runtime = runtime;
        var o = run.Options;
        // locktorture's split: a lock with a read side gets CPUs writers and CPUs readers by default.
        bool readSide = TortureLock.HasReadSide(type);
        _writers = o.Writers ?? (readSide ? o.CpuCount : 2 * o.CpuCount);
        _readers = readSide ? o.Readers ?? o.CpuCount : 0;
        if (type == TortureLockTypes.LockBusted)
        {
            _writers = Math.Max(2, _writers); // the forced overlap needs writers 0 and 1
        }
        _lock = TortureLock.Create(type, _writers);
        _longHoldMicroseconds = (int)o.LongHold.TotalMicroseconds;
        _control = new LoadControl(o.Stutter, o.ShuffleInterval);
        _placement = new PlacementLog(runtime.Options.Pinning);
        _probe = _lock.Context == HeldContext.None ? null : new ContextProbe(runtime, _lock.Context);
        _writes = new PerThread(_writers);
        _writeFails = new PerThread(_writers);
        _reads = new PerThread(_readers);
        _readFails = new PerThread(_readers);
        _longHolds = new PerThread(_writers + _readers);
        _contextViolations = new PerThread(_writers);
    }

    /// <summary>Boots a runtime, tortures lock type <paramref name="type"/> on it for the run's duration, shuts it down, and reports.</summary>
    public static LockTortureResult Run(TortureRun run, string type)
    {
        var runtime = run.Boot();
        var faults = new FaultInjector(0, runtime.Faults); // locks inject nothing: any fault is the runtime's own
        LockTortureTest? test = null;
        var problems = new List<string>();
        TimeSpan ran = TimeSpan.Zero;
        try
        {
            test = new LockTortureTest(run, runtime, type);
            ran = test.Torture(problems);
        }
        finally
        {
            Suites.SuiteSupport.Shutdown(runtime, problems);
            faults.Dispose();
            test?.Dispose();
        }
        return test!.Result(ran, problems, faults.Account());
    }

    private TimeSpan Torture(List<string> problems)
    {
        var threads = new LoadThreads();
        for (int i = 0; i < _writers; i++)
        {
            int tid = i;
            threads.Start($"lock_torture_writer/{tid}", () => Writer(tid));
        }
        for (int i = 0; i < _readers; i++)
        {
            int tid = i;
            threads.Start($"lock_torture_reader/{tid}", () => Reader(tid));
        }
        _control.Start();
        _probe?.Start();
        var ran = _run.RunLoad(_lock.Name, () => string.Create(CultureInfo.InvariantCulture,
            $"Writes: {_writes.Sum()}{(_readers > 0 ? $"  Reads: {_reads.Sum()}" : "")}  Fail: {_writeFails.Sum() + _readFails.Sum()}"));
        _control.Stop();
        // A writer spinning in a deadlocked lock never comes back: the join ceiling turns that into a
        // reported hang (plus the long hold a writer may be in the middle of).
        problems.AddRange(threads.Join(TortureRun.Ceiling + _run.Options.LongHold));
        if (!threads.AnyAlive)
        {
            // Not with a thread still inside: freeing its line or lock under it would only add noise.
            _probe?.Dispose();
            _lock.Dispose();
        }
        return ran;
    }

    public void Dispose() => _control.Dispose();

    private void Writer(int tid)
    {
        var rng = new TortureRandom(_run.Seed, tid);
        using var place = new CpuPlacer(_runtime, _control, _placement, bind: true, firstCpu: tid);
        long acquired = 0, fails = 0, longHolds = 0, contextViolations = 0;
        try
        {
            do
            {
                place.MaybeShuffle(ref rng);
                _lock.WriteLock(tid);
                int cpu = place.Cpu;
                long before = _probe?.Read(cpu) ?? 0;
                fails += _guard.EnterWrite(tid, out long counter);
                acquired++;
                _lock.WriteHeld(tid);
                longHolds += WriteDelay(ref rng);
                fails += _guard.ExitWrite(tid, counter);
                if (_probe is not null && _probe.Read(cpu) != before)
                {
                    contextViolations++;
                }
                _lock.WriteUnlock(tid);
                if ((acquired & 255) == 0)
                {
                    // Progress only; the final counts are written below.
                    Volatile.Write(ref _writes[tid], acquired);
                    Volatile.Write(ref _writeFails[tid], fails);
                }
                _control.StutterWait();
            }
            while (!_control.StopRequested);
        }
        finally
        {
            Volatile.Write(ref _writes[tid], acquired);
            Volatile.Write(ref _writeFails[tid], fails);
            Volatile.Write(ref _longHolds[tid], longHolds);
            Volatile.Write(ref _contextViolations[tid], contextViolations);
        }
    }

    private void Reader(int tid)
    {
        var rng = new TortureRandom(_run.Seed, 1000 + tid);
        using var place = new CpuPlacer(_runtime, _control, _placement, bind: true, firstCpu: _writers + tid);
        long acquired = 0, fails = 0, longHolds = 0;
        try
        {
            do
            {
                place.MaybeShuffle(ref rng);
                _lock.ReadLock(tid);
                fails += _guard.EnterRead();
                acquired++;
                longHolds += ReadDelay(ref rng);
                fails += _guard.ExitRead();
                _lock.ReadUnlock(tid);
                if ((acquired & 255) == 0)
                {
                    Volatile.Write(ref _reads[tid], acquired);
                    Volatile.Write(ref _readFails[tid], fails);
                }
                _control.StutterWait();
            }
            while (!_control.StopRequested);
        }
        finally
        {
            Volatile.Write(ref _reads[tid], acquired);
            Volatile.Write(ref _readFails[tid], fails);
            Volatile.Write(ref _longHolds[_writers + tid], longHolds);
        }
    }

    /// <summary>
    /// torture_spin_lock_write_delay(): mostly nothing, like likely code; sometimes a 2 µs udelay; rarely a
    /// long hold, which forces massive contention; very rarely a yield inside the hold, so the holder is
    /// descheduled and waiters must cope (spin, then yield, then nap). Returns 1 for a long hold.
    /// </summary>
    private int WriteDelay(ref TortureRandom rng)
    {
        int longHold = 0;
        if (_longHoldMicroseconds > 0 && rng.Chance(_run.Options.LongHoldProbability))
        {
            Delay.Udelay(_longHoldMicroseconds);
            longHold = 1;
        }
        if (rng.OneIn(_writers * 400L))
        {
            Delay.Udelay(2);
        }
        if (rng.OneIn(_writers * 20_000L))
        {
            Thread.Yield();
        }
        return longHold;
    }

    /// <summary>torture_rwsem_read_delay(), shortened: readers hold longer than writers, to overlap each other.</summary>
    private int ReadDelay(ref TortureRandom rng)
    {
        int longHold = 0;
        if (_longHoldMicroseconds > 0 && rng.Chance(_run.Options.LongHoldProbability))
        {
            Delay.Udelay(_longHoldMicroseconds);
            longHold = 1;
        }
        if (rng.OneIn(_readers * 200L))
        {
            Delay.Udelay(10);
        }
        return longHold;
    }

    private LockTortureResult Result(TimeSpan ran, List<string> problems, FaultAccounting faults)
    {
        var writes = AcquisitionStats.From(_writes.ToArray(), _writeFails.ToArray());
        var reads = _readers > 0 ? AcquisitionStats.From(_reads.ToArray(), _readFails.ToArray()) : null;
        long fails = writes.Fail + (reads?.Fail ?? 0);
        long contextViolations = _contextViolations.Sum();
        var checks = new List<TortureCheck>
        {
            new("exclusion", fails == 0, string.Create(CultureInfo.InvariantCulture,
                $"{fails} violations in {writes.Total + (reads?.Total ?? 0)} acquisitions{(_lock is BustedLock busted ? $" (lock_busted: writers 0 and 1 forced to overlap {busted.ForcedOverlaps} time(s))" : "")}")),
            new("guarded counter", _guard.Counter == writes.Total, string.Create(CultureInfo.InvariantCulture,
                $"plain counter {_guard.Counter}, write acquisitions {writes.Total}{(_guard.Counter != writes.Total ? $": {writes.Total - _guard.Counter} increments lost to overlapping holds" : "")}")),
        };
        if (_probe is not null)
        {
            checks.Add(new($"{_probe.Name}s off in hold", contextViolations == 0, string.Create(CultureInfo.InvariantCulture,
                $"{contextViolations} holds saw a {_probe.Name} run on their CPU ({_probe.Events} delivered during the test)")));
        }
        checks.Add(new("threads", problems.Count == 0, problems.Count == 0
            ? string.Create(CultureInfo.InvariantCulture, $"{_writers} writers and {_readers} readers started and stopped cleanly")
            : string.Join("; ", problems)));
        checks.Add(faults.Check());
        return new LockTortureResult
        {
            LockType = _lock.Name,
            Busted = _lock.IsBusted,
            Writers = _writers,
            Readers = _readers,
            DurationSeconds = ran.TotalSeconds,
            Writes = writes,
            Reads = reads,
            GuardedCounter = _guard.Counter,
            HeldContext = _probe?.Name,
            ContextViolations = contextViolations,
            ContextEvents = _probe?.Events ?? 0,
            LongHolds = _longHolds.Sum(),
            Stutters = _control.Stutters,
            Shuffles = _placement.Moves,
            Placement = _placement.Describe(),
            Faults = faults,
            Checks = checks,
        };
    }
}
