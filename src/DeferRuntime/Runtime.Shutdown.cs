using System.Diagnostics;
using DeferRuntime.Cpus;
using DeferRuntime.Softirqs;
using DeferRuntime.Tasklets;

namespace DeferRuntime;

// Shutdown: the drain, the stop of every thread, and the report.
public sealed partial class Runtime
{
    /// <summary>
    /// How long the threads still running get to exit once shutdown is past its deadline (or gave up
    /// early: its token fired), waits on runtime threads giving up meanwhile (<see cref="IsDead"/>).
    /// Idle threads need well under a millisecond to wake and exit; the rest is room for a loaded machine,
    /// where a woken thread may wait a scheduler slice or two (a few ms) for its core. A thread that has not
    /// exited by then is left behind and reported, so this is most of what shutdown may overrun its bound by.
    /// </summary>
    internal static readonly TimeSpan ExitGrace = TimeSpan.FromMilliseconds(15);

    /// <summary>
    /// Orderly shutdown: refuses new requests from threads of no CPU, runs everything accepted (pending
    /// softirqs, tasklets and calls, and what they chain), then stops and joins every thread, all within
    /// <see cref="RuntimeOptions.ShutdownTimeout"/> and a short bound whatever a handler does (see
    /// <see cref="Shutdown"/>). Disposing twice is harmless. Throws <see cref="TimeoutException"/> (after
    /// stopping the threads) if work was still pending at the timeout, e.g. a disabled tasklet left
    /// scheduled, or if a thread never returned from a handler: the message names what was abandoned and
    /// each thread left running, with what it runs.
    /// </summary>
    public void Dispose()
    {
        var report = RunSynchronously(ShutdownCoreAsync(Options.ShutdownTimeout, sync: true, CancellationToken.None));
        ThrowIfDisposeLeftWork(report);
    }

    /// <summary>
    /// <see cref="Dispose"/>, awaited: the same orderly shutdown within <see cref="RuntimeOptions.ShutdownTimeout"/>,
    /// and the same <see cref="TimeoutException"/> if work was abandoned or a thread left behind, but no
    /// thread blocks while it waits (see <see cref="ShutdownAsync(TimeSpan, CancellationToken)"/>).
    /// </summary>
    public async ValueTask DisposeAsync()
    {
        var report = await ShutdownCoreAsync(Options.ShutdownTimeout, sync: false, CancellationToken.None).ConfigureAwait(false);
        ThrowIfDisposeLeftWork(report);
    }

    private void ThrowIfDisposeLeftWork(RuntimeShutdownReport? report)
    {
        if (report is not null && (report.Abandoned is not null || report.StuckThreads.Count > 0))
        {
            throw new TimeoutException(DescribeTimeout(report, Options.ShutdownTimeout));
        }
    }

    /// <summary>The result of the shutdown core run with sync: true, which never awaits anything incomplete.</summary>
    private static RuntimeShutdownReport? RunSynchronously(ValueTask<RuntimeShutdownReport?> shutdown)
    {
        Debug.Assert(shutdown.IsCompleted, "the synchronous shutdown awaited something");
        return shutdown.GetAwaiter().GetResult();
    }

    private static string DescribeTimeout(RuntimeShutdownReport report, TimeSpan timeout)
    {
        string after = $"after {timeout.TotalSeconds:0.###} s";
        string stuck = string.Join(", ", report.StuckThreads);
        return report.Abandoned is { } leftOver
            ? $"Runtime shutdown: work still pending {after} was abandoned: {leftOver}{(stuck.Length > 0 ? $"; threads left running: {stuck}" : "")}"
            : $"Runtime shutdown: threads still running {after} were left behind: {stuck}";
    }

    /// <summary>
    /// The orderly shutdown of <see cref="Dispose"/> with a caller's bound, reporting instead of throwing
    /// (what a host calls within its shutdown timeout): refuses new requests from threads of no CPU, runs
    /// everything accepted until <paramref name="timeout"/> has passed or <paramref name="cancellationToken"/>
    /// is cancelled, then stops and joins the threads. Returns what could not finish. Called again, or
    /// after <see cref="Dispose"/>, it waits for the first shutdown and returns its report.
    /// </summary>
    /// <remarks>
    /// <para>Bounded whatever a handler does: every join is bounded by what is left of
    /// <paramref name="timeout"/>. Once it has passed (or the token fired) with work still pending or a
    /// thread still running, the runtime gives up: waits on its threads (a contended spinlock past its
    /// spinning phase, a synchronous IPI, tasklet_kill, flushes) throw <see cref="ObjectDisposedException"/>
    /// instead of waiting for a thread that may never return, no callback starts any more, every thread
    /// gets 15 ms more to exit, and those that did not (a hard-IRQ handler, softirq, tasklet or work item
    /// that never returns) are left behind, as the background threads they are, and listed in
    /// <see cref="RuntimeShutdownReport.StuckThreads"/> with what they run.</para>
    /// <para>Measured on the 2-vCPU development VM (2026-12-08), a work item stuck on an ordered workqueue
    /// with 100 items behind it, 20 runs of Shutdown(250 ms) each after a first one: it returned 16.1 to
    /// 25.4 ms after the timeout, median 17.4 ms (ShutdownAsync: 17.4 to 24.4, median 18.1), i.e. those
    /// 15 ms and about two more; every run listed the 100 as not started and the stuck one as still
    /// running. The first shutdown of a process also compiles this path (tens of ms more). What no bound
    /// here covers is the calling thread itself waiting for a CPU: on the same VM loaded by other test runs
    /// (load average ~10), one run in ten was 45 to 250 ms late, lost before the drain's deadline check or a join's
    /// wake-up got to run.</para>
    /// </remarks>
    public RuntimeShutdownReport Shutdown(TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(timeout, TimeSpan.Zero);
        return RunSynchronously(ShutdownCoreAsync(timeout, sync: true, cancellationToken)) ?? _shutdownReport!;
    }

    /// <summary>
    /// <see cref="Shutdown"/>, awaited: the same drain, bound, contract and report, for a caller that must
    /// not block a thread (an ASP.NET Core or Generic Host stop path). Its waits (the drain's look, the
    /// wait for the workqueues, the joins) are timer-driven awaits of about a millisecond each instead of
    /// spins and blocking joins; the work itself is done by the runtime's threads either way. Called
    /// again, or after <see cref="Dispose"/>, it waits for the first shutdown and returns its report.
    /// </summary>
    public async Task<RuntimeShutdownReport> ShutdownAsync(TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(timeout, TimeSpan.Zero);
        return await ShutdownCoreAsync(timeout, sync: false, cancellationToken).ConfigureAwait(false) ?? _shutdownReport!;
    }

    /// <summary><see cref="ShutdownAsync(TimeSpan, CancellationToken)"/> bounded by <see cref="RuntimeOptions.ShutdownTimeout"/>.</summary>
    public Task<RuntimeShutdownReport> ShutdownAsync(CancellationToken cancellationToken = default) =>
        ShutdownAsync(Options.ShutdownTimeout, cancellationToken);

    /// <summary>
    /// What is pending now (softirqs, tasklets by name, hard IRQs, due timers, workqueue items in flight),
    /// as shutdown reports it when it gives up; empty when nothing is. A racy snapshot, for reports.
    /// </summary>
    public string DescribePendingWork() =>
        string.Join("; ", _cpus.Where(c => !c.IsQuiescent).Select(DescribePending).Append(Wq.DescribeInFlight()).Where(p => p.Length > 0));

    private RuntimeShutdownReport? _shutdownReport; // written once by the shutting-down thread before _stopped is set

    /// <summary>
    /// The shutdown; null if another thread did it (returns once that one has finished). With
    /// <paramref name="sync"/> it never awaits anything incomplete (its waits spin, yield and block, and it
    /// completes before returning); without, every wait is an await, so no thread blocks in it.
    /// </summary>
    private async ValueTask<RuntimeShutdownReport?> ShutdownCoreAsync(TimeSpan timeout, bool sync, CancellationToken cancellationToken)
    {
        foreach (var cpu in _cpus)
        {
            if (cpu.IsCurrentThreadOwned)
            {
                throw new InvalidOperationException($"Runtime.Dispose() from {Thread.CurrentThread.Name}: a runtime cannot shut down from one of its own threads (it would wait for itself).");
            }
        }
        if (ThreadContext.Current is { Role: ThreadRole.IrqThread } irqThread && ReferenceEquals(irqThread.Cpu.Runtime, this))
        {
            throw new InvalidOperationException($"Runtime.Dispose() from irq thread '{Thread.CurrentThread.Name}': shutdown frees every line and waits for its threads, this one included.");
        }
        if ((ThreadContext.Current is { Role: ThreadRole.Worker } worker && ReferenceEquals(worker.Cpu.Runtime, this)) || Wq.IsOwnThread(Thread.CurrentThread))
        {
            throw new InvalidOperationException($"Runtime.Dispose() from workqueue thread '{Thread.CurrentThread.Name}': shutdown drains the workqueues and stops their workers, this one included.");
        }
        if (ThreadContext.Current is { Role: ThreadRole.Task } own && ReferenceEquals(own.Cpu.Runtime, this))
        {
            throw new InvalidOperationException($"Runtime.Dispose() from thread '{Thread.CurrentThread.Name}', which is bound to CPU {own.Cpu.Id}: dispose its CpuBinding first, shutdown waits for every binding.");
        }
        bool first;
        lock (_bindings)
        {
            first = Interlocked.CompareExchange(ref _state, StateStopping, StateRunning) == StateRunning;
        }
        if (!first)
        {
            // Another thread is shutting down (or has): return when it is done, not before. Not
            // cancellable, and needs no bound of its own: that shutdown is bounded by its caller's. Not
            // under the lock, which that shutdown's drain takes to count the bindings.
            if (sync)
            {
                _stopped.Wait(CancellationToken.None);
            }
            else
            {
                await _stoppedTask.Task.ConfigureAwait(false);
            }
            return null;
        }

        long started = Stopwatch.GetTimestamp();
        long deadline = TimestampAfter(started, timeout);
        try
        {
            StartTimerDrain();
            string? leftOver = _panic is null ? await DrainAsync(deadline, sync, cancellationToken).ConfigureAwait(false) : null;
            // Everything accepted ran: the threads are idle and have until the deadline to exit (they
            // need microseconds). Otherwise the drain gave up on something that may never finish: waits
            // on runtime threads give up from now on, and the threads get only ExitGrace.
            long workUntil = deadline;
            if (leftOver is not null || cancellationToken.IsCancellationRequested)
            {
                GiveUp();
                workUntil = Stopwatch.GetTimestamp();
            }
            // Tell every thread to exit, then join them all against one bound, so that an idle thread's
            // exit overlaps with the others' and a stuck one costs the bound once, not once per thread.
            var threads = new List<StoppingThread>();
            // free_irq() of what drivers left requested: their threads run what is pending and exit.
            Irqs.FreeAll(threads);
            // Workers, rescuers and the wq ticker: what was linked after the drain runs first.
            if (Wq.BeginStop())
            {
                var backoff = default(Backoff);
                while (Wq.StillWorking(workUntil))
                {
                    await Pause(sync, ref backoff).ConfigureAwait(false);
                }
                Wq.FinishStop(threads);
            }
            foreach (var cpu in _cpus)
            {
                cpu.Stop(threads);
            }
            var leftBehind = await JoinAllAsync(threads, workUntil, sync).ConfigureAwait(false);
            // Every thread joined or left behind inside a callback: nothing starts from here on (a
            // thread that was joined started nothing after its exit, the others find callbacks closed).
            CloseCallbacks();
            CountAbandonedTimers();
            Wq.CountAbandonedDelayedWork();
            var (notStarted, stillRunning) = SealAndCollect(leftBehind.Select(t => (t.Name, t.Context)).ToArray());
            _shutdownReport = new RuntimeShutdownReport(
                // After a panic nothing was drained: the panic is the report, the lists say what it stranded.
                _panic is null ? DescribeLeftOver(leftOver, notStarted, stillRunning) : leftOver, cancellationToken.IsCancellationRequested, Stopwatch.GetElapsedTime(started),
                AbandonedTimerCount, AbandonedDelayedWorkCount, _panic)
            {
                StuckThreads = leftBehind.Select(t => RuntimeStuckThread.Of(t.Name, t.Context)).ToArray(),
                NotStarted = notStarted,
                StillRunning = stillRunning,
            };
        }
        finally
        {
            Volatile.Write(ref _state, StateStopped);
            _stopped.Set();
            _stoppedTask.TrySetResult();
        }
        return _shutdownReport;
    }

    /// <summary>
    /// The report's one-line account of what did not finish: the items themselves when there are any (the
    /// drain's own description, taken at its deadline, counts items in flight, running and waiting alike),
    /// with the drain's note on threads still bound kept; else the drain's description, or null.
    /// </summary>
    private static string? DescribeLeftOver(string? drainLeftOver, RuntimeShutdownItem[] notStarted, RuntimeShutdownItem[] stillRunning)
    {
        if (notStarted.Length == 0 && stillRunning.Length == 0)
        {
            return drainLeftOver;
        }
        const int Shown = 16;
        var items = stillRunning.Concat(notStarted).ToArray();
        string list = string.Join("; ", items.Take(Shown)) + (items.Length > Shown ? $"; and {items.Length - Shown} more" : "");
        string summary = $"{notStarted.Length} item(s) not started, {stillRunning.Length} still running: {list}";
        string? bound = drainLeftOver?.Split("; ").FirstOrDefault(p => p.StartsWith("threads still bound", StringComparison.Ordinal));
        return bound is null ? summary : $"{bound}; {summary}";
    }

    private static long TimestampAfter(long start, TimeSpan span) =>
        span.TotalSeconds >= (double)(long.MaxValue / 4) / Stopwatch.Frequency
            ? long.MaxValue / 2 // TimeSpan.MaxValue and the like: never, without overflowing
            : start + (long)(span.TotalSeconds * Stopwatch.Frequency);

    /// <summary>
    /// Shutdown stops waiting for what may never finish (<see cref="StateGaveUp"/>): from now on
    /// <see cref="IsDead"/> is true, so runtime threads spinning or waiting on one that never returns
    /// give up with an exception, which their callback's guard reports, and exit.
    /// </summary>
    private void GiveUp()
    {
        Interlocked.CompareExchange(ref _state, StateGaveUp, StateStopping);
        CloseCallbacks();
        foreach (var cpu in _cpus)
        {
            cpu.Kick();
        }
    }

    /// <summary>
    /// Joins every thread told to exit, until <paramref name="workUntil"/>; if some are still running
    /// then, gives up (<see cref="GiveUp"/>) and joins them until <see cref="ExitGrace"/> later. Returns
    /// those that never exited, with their contexts.
    /// </summary>
    private async ValueTask<(string Name, ThreadContext? Context)[]> JoinAllAsync(List<StoppingThread> threads, long workUntil, bool sync)
    {
        var running = new List<StoppingThread>();
        foreach (var t in threads)
        {
            if (!await JoinUntilAsync(t.Thread, workUntil, sync).ConfigureAwait(false))
            {
                running.Add(t);
            }
        }
        if (running.Count == 0)
        {
            return [];
        }
        GiveUp();
        long until = TimestampAfter(Math.Max(workUntil, Stopwatch.GetTimestamp()), ExitGrace);
        var leftBehind = new List<(string, ThreadContext?)>();
        foreach (var t in running)
        {
            if (!await JoinUntilAsync(t.Thread, until, sync).ConfigureAwait(false))
            {
                leftBehind.Add((t.Thread.Name ?? $"managed thread {t.Thread.ManagedThreadId}", t.Context()));
            }
        }
        return leftBehind.ToArray();
    }

    /// <summary>
    /// <see cref="JoinUntil"/>, or without blocking: looks at the thread every millisecond or so (a
    /// timer-driven await) until it has exited or <paramref name="until"/> has passed.
    /// </summary>
    private static async ValueTask<bool> JoinUntilAsync(Thread thread, long until, bool sync)
    {
        if (sync)
        {
            return JoinUntil(thread, until);
        }
        while (true)
        {
            if (ReferenceEquals(thread, Thread.CurrentThread) || JoinedNow(thread))
            {
                return true;
            }
            if (Stopwatch.GetTimestamp() >= until)
            {
                return false;
            }
            await Task.Delay(1).ConfigureAwait(false);
        }
    }

    /// <summary>The thread has exited (a thread created but not started yet has not).</summary>
    private static bool JoinedNow(Thread thread)
    {
        try
        {
            return thread.Join(0);
        }
        catch (ThreadStateException)
        {
            return false; // a kworker created just before shutdown, not started yet by its creator: it will be
        }
    }

    /// <summary>One wait of a polling loop: the backoff's spin, yield or sleep, or an await of about a millisecond.</summary>
    private static ValueTask Pause(bool sync, ref Backoff backoff)
    {
        if (sync)
        {
            backoff.Wait();
            return default;
        }
        return new ValueTask(Task.Delay(1));
    }

    /// <summary>Thread.Join() until the Stopwatch timestamp <paramref name="until"/>: true if the thread exited (or is the caller).</summary>
    private static bool JoinUntil(Thread thread, long until)
    {
        if (ReferenceEquals(thread, Thread.CurrentThread))
        {
            return true;
        }
        while (true)
        {
            long left = until - Stopwatch.GetTimestamp();
            int ms = left <= 0 ? 0 : (int)Math.Min(int.MaxValue, (left * 1000 + Stopwatch.Frequency - 1) / Stopwatch.Frequency);
            try
            {
                if (thread.Join(ms))
                {
                    return true;
                }
            }
            catch (ThreadStateException)
            {
                // A kworker created just before shutdown, not started yet by its creator: it will be.
                Thread.Yield();
            }
            if (left <= 0)
            {
                return false;
            }
        }
    }

    /// <summary>
    /// Waits until no thread is bound with BindCurrentThread, every CPU is quiescent and no handler
    /// finished while that was being checked, or until <paramref name="deadline"/> has passed or
    /// <paramref name="cancellationToken"/> is cancelled: then returns what is still pending (the live
    /// bindings first). The CPUs run the work meanwhile; this only watches and kicks.
    /// </summary>
    private async ValueTask<string?> DrainAsync(long deadline, bool sync, CancellationToken cancellationToken)
    {
        // Frozen workqueues are thawed: their items were accepted too.
        Wq.Thaw();
        var backoff = default(Backoff);
        while (_panic is null)
        {
            foreach (var cpu in _cpus)
            {
                cpu.Kick();
            }
            // Bindings first: a bound thread's requests bypass the in-flight counts below, so only once
            // the last binding is seen released (under the lock its release takes) is all it did visible.
            bool bound = LiveBindingCount() != 0;
            long before = CompletionSum();
            // The controller first: its in-flight assertions must be seen drained before the CPUs'
            // pending vectors are read (the same ordering argument as VirtualCpu.IsQuiescent).
            // The workqueues last: a CPU's in-flight count of foreign requests is read before the
            // workqueues' in-flight items, so a foreign queue_work() is seen either as in flight or as
            // linked. Work items queueing anything are themselves in flight until they finish, and a
            // finish moves the completion sum.
            bool quiet = !bound && Irqs.IsQuiescent && _cpus.All(c => c.IsQuiescent) && Wq.IsQuiescent;
            if (quiet && CompletionSum() == before)
            {
                return null;
            }
            if (Stopwatch.GetTimestamp() > deadline || cancellationToken.IsCancellationRequested)
            {
                var parts = new List<string>();
                if (LiveBindings() is { Length: > 0 } leaked)
                {
                    parts.Add($"threads still bound with BindCurrentThread (dispose their CpuBinding before shutdown): {string.Join(", ", leaked)}");
                }
                string pending = DescribePendingWork();
                if (pending.Length > 0)
                {
                    parts.Add(pending);
                }
                else if (parts.Count == 0)
                {
                    parts.Add("work kept arriving from handlers while shutdown looked");
                }
                return string.Join("; ", parts);
            }
            await Pause(sync, ref backoff).ConfigureAwait(false);
        }
        return null;
    }

    private long CompletionSum()
    {
        long sum = Irqs.CompletionSum + Wq.CompletionSum;
        foreach (var cpu in _cpus)
        {
            sum += cpu.CompletionSum;
        }
        return sum;
    }

    private static string DescribePending(VirtualCpu cpu)
    {
        var parts = new List<string>();
        int pending = Volatile.Read(ref cpu.Line.SoftirqPending);
        if (pending != 0)
        {
            parts.Add("softirqs " + string.Join(",", Enumerable.Range(0, SoftirqTable.VectorCount).Where(i => (pending & (1 << i)) != 0).Select(i => SoftirqTable.Names[i])));
        }
        foreach (var (head, kind) in new[]
        {
            (Volatile.Read(ref cpu.Line.TaskletHead), "tasklets"), (Volatile.Read(ref cpu.Line.HiTaskletHead), "hi tasklets"),
            (Volatile.Read(ref cpu.LocalHead), "tasklets"), (Volatile.Read(ref cpu.LocalHiHead), "hi tasklets"),
        })
        {
            var names = new List<string>();
            for (var t = head; t is not null; t = ((IIntrusiveNode<Tasklet>)t).Next)
            {
                names.Add($"'{t.Name}'{(t.IsDisabled ? " (disabled)" : "")}");
            }
            if (names.Count > 0)
            {
                parts.Add($"{kind} {string.Join(", ", names)}");
            }
        }
        if (cpu.AnyIrqPending())
        {
            parts.Add("hard IRQs");
        }
        if (cpu.Timers.HasDueEvent())
        {
            parts.Add("timers due");
        }
        if (cpu.Ksoftirqd.IsRunning)
        {
            parts.Add("ksoftirqd running");
        }
        return $"CPU {cpu.Id}: {(parts.Count == 0 ? "busy" : string.Join(", ", parts))}";
    }
}
