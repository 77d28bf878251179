using System.Diagnostics;
using System.Runtime.ExceptionServices;
using DeferRuntime.Platform;

namespace DeferRuntime.Devices;

/// <summary>
/// A synthetic interrupt storm: one device thread that asserts any set of lines, each at its own rate
/// with constant, Poisson or bursty arrivals, for a duration or an exact event count. Each event carries
/// two timestamps in its line's FIFO (<see cref="StormLineSource"/>), which the line's hard-IRQ handler
/// drains: its intended time (when the schedule said it was due) and its assert time (when the generator
/// got to it), so latency can be measured per event, from either, without allocating.
/// </summary>
/// <remarks>
/// <para>What runs where: the <c>storm</c> thread belongs to no CPU (a device). It paces every line
/// against <see cref="Stopwatch"/> deadlines kept in a min-heap. On Linux it sleeps with
/// clock_nanosleep() to 20 µs before each deadline (timer slack 1 ns), then spins: it uses no CPU between
/// events, so a busy cpu/N of the same priority does not hold it off for a time slice. Elsewhere it
/// spins when the next deadline is microseconds away, yields or naps when it is further, and sleeps
/// only when it is more than 2 ms away, so Thread.Sleep's millisecond granularity never shapes the arrivals.</para>
/// <para>Honesty about pacing: one thread can only assert so fast, and the OS may take its CPU. The
/// schedule never moves: a late generator asserts every event that fell due meanwhile as fast as it can,
/// each keeping its intended time, so a stall of the "hardware" shows as latency from the intended time
/// (no coordinated omission), while the assert time says how much of it was the generator's own lag.
/// More than <see cref="StormOptions.MaxLag"/> behind, it also says so (<see cref="FellBehind"/>, the
/// stalls, the late events, the report's achieved rate and maximum lag). A run that ends while it is
/// behind finishes the events due within the duration first (<see cref="StormReport.CatchUp"/>).</para>
/// <para>Nothing is dropped: events that find a line's FIFO full wait in the generator's backlog and are
/// handed over as the driver drains; at the end the generator keeps running until every backlog is in the
/// FIFOs. Once the driver has drained them, generated == handled on every line.</para>
/// <para>Shutdown: stop the storm (<see cref="Stop"/>, <see cref="Join"/>) before disposing the runtime;
/// the runtime refuses assertions from threads of no CPU once its shutdown begins.</para>
/// <para>Field legend: <c>I:</c> set at creation (or at Start); <c>G:</c> written by the storm thread only,
/// read by others with <see cref="Volatile"/> or after it ended.</para>
/// </remarks>
public sealed class StormGenerator : IDisposable
{
    // Waiting for a deadline this far away or more sleeps for real (Thread.Sleep(1) lasts 1-2 ms), where
    // an absolute-deadline sleep is not available.
    private static readonly long SleepTicks = Stopwatch.Frequency * 2 / 1000;
    // From here to SleepTicks, a usleep(50) nap (about 60-110 µs with the default timer slack).
    private static readonly long NapTicks = Stopwatch.Frequency / 5000;
    // From here to NapTicks, a yield; below it, a spin: a yield can cost a timeslice on a busy core.
    private static readonly long YieldTicks = Stopwatch.Frequency / 50_000;
    // Linux: sleep to this long before the deadline (timer slack 1 ns), then spin the rest. Covers the
    // usual wake-up delay of a timed sleep, so the spin is short and the thread sleeps between events
    // instead of yielding: a thread that sleeps is scheduled promptly when it wakes, while one that
    // yields in a loop waits behind a busy same-priority cpu/N for a time slice (milliseconds of lag).
    private static readonly long WakeMarginTicks = Stopwatch.Frequency / 50_000;
    // At most this long in one sleep, so backlogs are still handed over while a slow line waits.
    private static readonly long LongestSleepTicks = Stopwatch.Frequency / 1000;

    private readonly Runtime _runtime; // I
    private readonly StormOptions _options; // I
    private readonly StormLineSource[] _sources; // I
    private Thread? _thread; // I (at Start)
    private volatile bool _done; // set when the storm thread has finished (or failed)
    private int _started; // A: 1 once Start ran
    private volatile bool _stop; // set by Stop: end generation, then hand over the backlog
    private volatile bool _abandon; // set by Dispose when the backlog cannot be handed over
    private ExceptionDispatchInfo? _fault; // G, read after _done

    // G: written by the storm thread; others read them with Volatile (or after _done).
    private long _generated;
    private long _startTicks;
    private long _generationEndTicks;
    private long _maxLagTicks;
    private long _lateEvents; // events asserted more than MaxLag after their intended time
    private long _stalls; // stretches of late events
    private long _lateLagTicks; // the stalls' largest lags, summed
    private long _catchUpTicks; // how long past the duration generation went on, catching up
    private string? _pinError; // G, read after _done: why the storm thread was not pinned to DeviceCores
    private long _lateRunDelayNs; // of it, the generator's OS run delay across their waits (-1: not measurable here)
    private int _fellBehind;
    private long _allocatedBytes;
    private long _abandoned;
    private long _backlogStalls;
    private int _gen0, _gen1, _gen2;
    private TimeSpan _gcPause;

    /// <summary>Creates a storm over <paramref name="options"/>' lines; request their IRQs (draining each line's source) before <see cref="Start"/>.</summary>
    public StormGenerator(Runtime runtime, StormOptions options)
    {
        ArgumentNullException.ThrowIfNull(runtime);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        foreach (var line in options.Lines)
        {
            if ((uint)line.Irq >= (uint)runtime.Irqs.LineCount)
            {
                throw new ArgumentOutOfRangeException(nameof(options), line.Irq, $"IRQ {line.Irq} does not exist; the controller has lines 0 to {runtime.Irqs.LineCount - 1} (RuntimeOptions.IrqLines).");
            }
        }
        _runtime = runtime;
        _options = options;
        _sources = new StormLineSource[options.Lines.Count];
        for (int i = 0; i < _sources.Length; i++)
        {
            _sources[i] = new StormLineSource(runtime.Irqs, options.Lines[i], i, options.RingCapacity);
        }
    }

    /// <summary>The lines' sources, in <see cref="StormOptions.Lines"/> order; pass each as the dev cookie of its line's handler.</summary>
    public IReadOnlyList<StormLineSource> Sources => _sources;

    /// <summary>The source of line <paramref name="irq"/>.</summary>
    public StormLineSource SourceOf(int irq) =>
        Array.Find(_sources, s => s.Irq == irq) ?? throw new ArgumentOutOfRangeException(nameof(irq), irq, $"IRQ {irq} is not one of this storm's lines.");

    /// <summary>Events generated so far over all lines.</summary>
    public long Generated => Volatile.Read(ref _generated);

    /// <summary>True once the generator fell more than <see cref="StormOptions.MaxLag"/> behind its schedule: the requested rate was more than one thread can pace.</summary>
    public bool FellBehind => Volatile.Read(ref _fellBehind) != 0;

    /// <summary>True once generation is over and every backlog has been handed to the FIFOs (or the run failed).</summary>
    public bool IsCompleted => _done;

    /// <summary>Starts the storm thread. Once.</summary>
    public void Start()
    {
        if (Interlocked.Exchange(ref _started, 1) != 0)
        {
            throw new InvalidOperationException("StormGenerator.Start(): a storm runs once; create another generator for another run.");
        }
        _runtime.ThrowIfNotAccepting("StormGenerator.Start()");
        foreach (var source in _sources)
        {
            source.Prepare();
        }
        _thread = new Thread(Run) { Name = "storm", IsBackground = true };
        _thread.Start();
    }

    /// <summary>Ends generation early; the backlog is still handed over (nothing generated is dropped).</summary>
    public void Stop() => _stop = true;

    /// <summary>Waits until the storm is complete; rethrows what stopped it (for example assertions refused by a runtime shutting down).</summary>
    /// <returns>False if <paramref name="timeout"/> passed first.</returns>
    public bool Join(TimeSpan timeout)
    {
        if (_thread is null)
        {
            throw new InvalidOperationException("StormGenerator.Join(): the storm was never started.");
        }
        if (!_thread.Join(timeout))
        {
            return false;
        }
        _fault?.Throw();
        return true;
    }

    /// <summary>Stops the storm and waits for it; a backlog that the driver does not take within 5 s is abandoned and counted in the report.</summary>
    public void Dispose()
    {
        _stop = true;
        if (_thread is not null && !_thread.Join(TimeSpan.FromSeconds(5)))
        {
            _abandon = true;
            _thread.Join();
        }
    }

    /// <summary>The storm's report: per-line counts, pacing and GC activity during the run.</summary>
    public StormReport GetReport()
    {
        var lines = _sources.Select(s => s.GetStats()).ToArray();
        long start = Volatile.Read(ref _startTicks);
        long end = Volatile.Read(ref _generationEndTicks);
        if (start != 0 && end == 0)
        {
            end = Stopwatch.GetTimestamp();
        }
        var elapsed = start == 0 ? TimeSpan.Zero : Stopwatch.GetElapsedTime(start, end);
        long generated = Volatile.Read(ref _generated);
        bool done = _done;
        return new StormReport(
            lines, elapsed, _options.Lines.Sum(l => l.RatePerSecond),
            elapsed > TimeSpan.Zero ? generated / elapsed.TotalSeconds : 0,
            FellBehind, Stopwatch.GetElapsedTime(0, Volatile.Read(ref _maxLagTicks)), Volatile.Read(ref _lateEvents),
            Stopwatch.GetElapsedTime(0, Volatile.Read(ref _lateLagTicks)), Volatile.Read(ref _lateRunDelayNs) is var rd and >= 0 ? TimeSpan.FromTicks(rd / 100) : null,
            generated, lines.Sum(l => l.Handled), Volatile.Read(ref _backlogStalls), Volatile.Read(ref _abandoned), done,
            done ? _gen0 : 0, done ? _gen1 : 0, done ? _gen2 : 0, done ? _gcPause : TimeSpan.Zero, done ? _allocatedBytes : 0)
        {
            Stalls = Volatile.Read(ref _stalls),
            CatchUp = Stopwatch.GetElapsedTime(0, Volatile.Read(ref _catchUpTicks)),
            DeviceCores = _options.DeviceCores is { Count: > 0 } cores ? cores.ToArray() : [],
            PinError = done ? _pinError : null,
        };
    }

    // ---- the storm thread (G) ----

    private void Run()
    {
        try
        {
            int gen0 = GC.CollectionCount(0), gen1 = GC.CollectionCount(1), gen2 = GC.CollectionCount(2);
            var pause = GC.GetTotalPauseDuration();
            if (_options.DeviceCores is { Count: > 0 } cores)
            {
                _pinError = ThreadPlacement.PinCurrentThreadToCores(cores.ToArray());
            }
            // Its timed sleeps end at their deadline, not up to 50 µs later (refused only off Linux,
            // where the pacing falls back to naps and yields).
            Nap.UsePreciseTimerSlack();
            var pacer = new Pacer(_sources, _options);
            long allocated = GC.GetAllocatedBytesForCurrentThread();
            Generate(pacer);
            HandOverBacklog();
            _allocatedBytes = GC.GetAllocatedBytesForCurrentThread() - allocated;
            _gen0 = GC.CollectionCount(0) - gen0;
            _gen1 = GC.CollectionCount(1) - gen1;
            _gen2 = GC.CollectionCount(2) - gen2;
            _gcPause = GC.GetTotalPauseDuration() - pause;
        }
#pragma warning disable CA1031 // a device thread must not take the process down: the failure is rethrown by Join
        catch (Exception e)
#pragma warning restore CA1031
        {
            _fault = ExceptionDispatchInfo.Capture(e);
        }
        finally
        {
            _done = true;
        }
    }

    private void Generate(Pacer pacer)
    {
        // Stalls are split by where the time went: a wait for a CPU of this OS shows in the thread's run
        // delay; a vCPU the hypervisor did not run shows nowhere (the OS counts it as the thread running,
        // or as its sleep). One pread per event while on time, allocation-free.
        using var schedstat = ThreadSchedStat.OpenForCurrentThread();
        if (schedstat is null)
        {
            Volatile.Write(ref _lateRunDelayNs, -1);
        }
        long start = Stopwatch.GetTimestamp();
        Volatile.Write(ref _startTicks, start);
        pacer.Begin(start);
        long end = _options.Duration is { } d ? start + (long)(d.TotalSeconds * Stopwatch.Frequency) : long.MaxValue;
        long remaining = _options.EventCount ?? long.MaxValue;
        long maxLag = (long)(_options.MaxLag.TotalSeconds * Stopwatch.Frequency);
        int backlogLimit = _options.BacklogLimit;
        long stallAfter = _options.StallAfterEvents;
        long now = start;
        // The current stall (a stretch of events more than maxLag late): its largest lag, and the run
        // delay read before the wait that ended late.
        bool late = false;
        long stallLag = 0, stallRunDelayBefore = -1, runDelayBefore = -1;

        while (remaining > 0 && !_stop)
        {
            int line = pacer.Next(out long due);
            if (due >= end)
            {
                // Nothing else falls inside the run: let the duration run out, so the achieved rate is
                // measured over the time asked for.
                now = WaitUntil(end);
                break;
            }
            if (!late && schedstat is not null)
            {
                runDelayBefore = ThreadSchedStat.ReadRunDelayNs(schedstat);
            }
            now = WaitUntil(due);
            if (stallAfter > 0 && _generated >= stallAfter)
            {
                stallAfter = 0;
                Thread.Sleep(_options.StallFor); // the test hook: the OS took the generator's CPU
                now = Stopwatch.GetTimestamp();
            }
            if (_stop)
            {
                break;
            }
            long lag = now - due;
            if (lag > _maxLagTicks)
            {
                Volatile.Write(ref _maxLagTicks, lag);
            }
            if (lag > maxLag)
            {
                if (!late)
                {
                    late = true;
                    stallLag = 0;
                    stallRunDelayBefore = runDelayBefore;
                    Volatile.Write(ref _fellBehind, 1);
                    Volatile.Write(ref _stalls, _stalls + 1);
                }
                stallLag = Math.Max(stallLag, lag);
            }
            else if (late)
            {
                late = false;
                EndStall(schedstat, stallLag, stallRunDelayBefore);
            }

            // No re-anchoring: the event keeps its intended time (due), however late it is asserted.
            var source = _sources[line];
            long burst = source.Line.Arrival == StormArrival.Bursty ? Math.Min(source.Line.BurstLength, remaining) : 1;
            long asserted = now;
            for (long i = 0; i < burst; i++)
            {
                if (source.Backlog >= backlogLimit)
                {
                    if (!WaitForRoom(source, backlogLimit))
                    {
                        break;
                    }
                    asserted = Stopwatch.GetTimestamp();
                }
                else if (i > 0)
                {
                    asserted = Stopwatch.GetTimestamp(); // each event of a burst stamped as it is asserted
                }
                source.Produce(due, asserted);
                if (asserted - due > maxLag)
                {
                    Volatile.Write(ref _lateEvents, _lateEvents + 1);
                }
                remaining--;
                Volatile.Write(ref _generated, _generated + 1);
            }
            pacer.Advance(line);
        }
        if (late)
        {
            EndStall(schedstat, stallLag, stallRunDelayBefore);
        }
        if (now > end)
        {
            Volatile.Write(ref _catchUpTicks, now - end);
        }
        Volatile.Write(ref _generationEndTicks, now);
    }

    /// <summary>A stall is over: adds its largest lag, and the run delay across it (capped at that lag: some of it may predate the deadline).</summary>
    private void EndStall(Microsoft.Win32.SafeHandles.SafeFileHandle? schedstat, long stallLag, long runDelayBefore)
    {
        Volatile.Write(ref _lateLagTicks, _lateLagTicks + stallLag);
        // A read that failed (-1) on either side gives no figure for this stall, rather than a difference
        // that would count the whole lag as run delay.
        if (schedstat is not null && runDelayBefore >= 0 && ThreadSchedStat.ReadRunDelayNs(schedstat) is var after and >= 0)
        {
            long lagNs = (long)(stallLag * (1e9 / Stopwatch.Frequency));
            Volatile.Write(ref _lateRunDelayNs, _lateRunDelayNs + Math.Clamp(after - runDelayBefore, 0, lagNs));
        }
    }

    /// <summary>Waits for <paramref name="deadline"/>, handing backlog over meanwhile. Returns the time it woke at (one clock read per stage).</summary>
    private long WaitUntil(long deadline)
    {
        while (true)
        {
            long now = Stopwatch.GetTimestamp();
            long left = deadline - now;
            if (left <= 0 || _stop)
            {
                return now;
            }
            FlushBacklogs();
            if (Nap.CanSleepUntil)
            {
                if (left > WakeMarginTicks)
                {
                    Nap.Until(now + Math.Min(left - WakeMarginTicks, LongestSleepTicks));
                }
                else
                {
                    Thread.SpinWait(16);
                }
            }
            else if (left > SleepTicks)
            {
                Thread.Sleep(1);
            }
            else if (left > NapTicks)
            {
                Nap.Short();
            }
            else if (left > YieldTicks)
            {
                Thread.Yield();
            }
            else
            {
                Thread.SpinWait(16);
            }
        }
    }

    /// <summary>
    /// A line's backlog is at its limit: stop generating until its driver makes room (the schedule slips,
    /// which the lag accounting reports). False if the storm was stopped meanwhile.
    /// </summary>
    private bool WaitForRoom(StormLineSource source, int limit)
    {
        Volatile.Write(ref _backlogStalls, _backlogStalls + 1);
        var backoff = default(Cpus.Backoff);
        while (true)
        {
            source.FlushBacklog();
            if (source.Backlog < limit)
            {
                return true;
            }
            if (_stop || _abandon)
            {
                return false;
            }
            backoff.Wait();
        }
    }

    private bool FlushBacklogs()
    {
        bool empty = true;
        foreach (var source in _sources)
        {
            if (source.HasBacklog)
            {
                empty &= source.FlushBacklog();
            }
        }
        return empty;
    }

    /// <summary>After generation: the backlog goes into the FIFOs as the drivers make room; never dropped, unless Dispose gives up on a driver that stopped draining.</summary>
    private void HandOverBacklog()
    {
        var backoff = default(Cpus.Backoff);
        while (!FlushBacklogs())
        {
            if (_abandon)
            {
                Volatile.Write(ref _abandoned, _sources.Sum(s => (long)s.Backlog));
                return;
            }
            backoff.Wait();
        }
    }

    /// <summary>
    /// The schedule: each line's next due time in a binary min-heap, so choosing the next event costs
    /// O(log lines) whatever the number of lines. Due times are doubles in Stopwatch ticks so that
    /// fractional intervals do not drift (exact to the tick for 2^53 ticks, about 100 days).
    /// </summary>
    private sealed class Pacer
    {
        private readonly StormLine[] _lines;
        private readonly double[] _due;
        private readonly double[] _interval; // mean ticks between arrivals (between bursts under Bursty)
        private readonly int[] _heap;
        private readonly Random _random;

        public Pacer(StormLineSource[] sources, StormOptions options)
        {
            _lines = sources.Select(s => s.Line).ToArray();
            _due = new double[_lines.Length];
            _interval = new double[_lines.Length];
            _heap = Enumerable.Range(0, _lines.Length).ToArray();
            _random = new Random(options.Seed);
            for (int i = 0; i < _lines.Length; i++)
            {
                var line = _lines[i];
                int perArrival = line.Arrival == StormArrival.Bursty ? line.BurstLength : 1;
                _interval[i] = perArrival * Stopwatch.Frequency / line.RatePerSecond;
            }
        }

        public void Begin(long start)
        {
            for (int i = 0; i < _due.Length; i++)
            {
                _due[i] = start + NextInterval(i);
            }
            for (int i = _heap.Length / 2 - 1; i >= 0; i--)
            {
                SiftDown(i);
            }
        }

        public int Next(out long due)
        {
            int line = _heap[0];
            due = (long)_due[line];
            return line;
        }

        public void Advance(int line)
        {
            _due[line] += NextInterval(line);
            SiftDown(0);
        }

        private double NextInterval(int line) => _lines[line].Arrival == StormArrival.Poisson
            // Exponential inter-arrival: -ln(U) times the mean, with U in (0, 1].
            ? -Math.Log(1.0 - _random.NextDouble()) * _interval[line]
            : _interval[line];

        private void SiftDown(int i)
        {
            int n = _heap.Length;
            while (true)
            {
                int smallest = i;
                int left = 2 * i + 1;
                int right = left + 1;
                if (left < n && _due[_heap[left]] < _due[_heap[smallest]])
                {
                    smallest = left;
                }
                if (right < n && _due[_heap[right]] < _due[_heap[smallest]])
                {
                    smallest = right;
                }
                if (smallest == i)
                {
                    return;
                }
                (_heap[i], _heap[smallest]) = (_heap[smallest], _heap[i]);
                i = smallest;
            }
        }
    }
}
