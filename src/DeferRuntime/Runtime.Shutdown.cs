using System.Diagnostics;
using DeferRuntime.Cpus;
using DeferRuntime.Softirqs;
using DeferRuntime.Tasklets;

namespace DeferRuntime;

// Shutdown: the drain, the stop of every thread, and the report.
public sealed partial class Runtime
{
    /// <summary>
    /// Orderly shutdown: refuses new requests from threads of no CPU, runs everything accepted (pending
    /// softirqs, tasklets and calls, and what they chain), then stops and joins every thread. Disposing
    /// twice is harmless. Throws <see cref="TimeoutException"/> (after stopping the threads) if work was
    /// still pending at <see cref="RuntimeOptions.ShutdownTimeout"/>, e.g. a disabled tasklet left scheduled.
    /// </summary>
    public void Dispose()
    {
        var report = ShutdownCore(Options.ShutdownTimeout, TimeSpan.FromSeconds(5), CancellationToken.None);
        if (report is { Abandoned: { } leftOver })
        {
            throw new TimeoutException($"Runtime shutdown: work still pending after {Options.ShutdownTimeout.TotalSeconds:0.#} s was abandoned: {leftOver}");
        }
    }

    /// <summary>
    /// The orderly shutdown of <see cref="Dispose"/> with a caller's bound, reporting instead of throwing
    /// (what a host calls within its shutdown timeout): refuses new requests from threads of no CPU, runs
    /// everything accepted until <paramref name="timeout"/> has passed or <paramref name="cancellationToken"/>
    /// is cancelled, then stops and joins the threads (a worker stuck in an item is left behind after a
    /// short bounded join). Returns what could not finish. Called again, or after <see cref="Dispose"/>, it
    /// waits for the first shutdown and returns its report.
    /// </summary>
    public RuntimeShutdownReport Shutdown(TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(timeout, TimeSpan.Zero);
        return ShutdownCore(timeout, TimeSpan.FromMilliseconds(250), cancellationToken) ?? _shutdownReport!;
    }

    /// <summary>
    /// What is pending now (softirqs, tasklets by name, hard IRQs, due timers, workqueue items in flight),
    /// as shutdown reports it when it gives up; empty when nothing is. A racy snapshot, for reports.
    /// </summary>
    public string DescribePendingWork() =>
        string.Join("; ", _cpus.Where(c => !c.IsQuiescent).Select(DescribePending).Append(Wq.DescribeInFlight()).Where(p => p.Length > 0));

    private RuntimeShutdownReport? _shutdownReport; // written once by the shutting-down thread before _stopped is set

    /// <summary>The shutdown; null if another thread did it (returns once that one has finished).</summary>
    private RuntimeShutdownReport? ShutdownCore(TimeSpan timeout, TimeSpan stuckWorkerJoin, CancellationToken cancellationToken)
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
        lock (_bindings)
        {
            if (Interlocked.CompareExchange(ref _state, StateStopping, StateRunning) != StateRunning)
            {
                // Another thread is shutting down (or has): return when it is done, not before. Not
                // cancellable: that shutdown is bounded by its own caller.
                _stopped.Wait(CancellationToken.None);
                return null;
            }
        }

        string? leftOver = null;
        long started = Stopwatch.GetTimestamp();
        try
        {
            StartTimerDrain();
            leftOver = _panic is null ? Drain(timeout, cancellationToken) : null;
            // free_irq() of what drivers left requested: their threads are idle after the drain.
            Irqs.FreeAll();
            // Workers, rescuers and the wq ticker: idle after the drain (or stuck in an item, which a
            // bounded join leaves behind; briefly when the drain already gave up on it).
            Wq.Stop(leftOver is null ? TimeSpan.FromSeconds(5) : stuckWorkerJoin);
            foreach (var cpu in _cpus)
            {
                cpu.Stop();
            }
            foreach (var cpu in _cpus)
            {
                cpu.Join();
            }
            CountAbandonedTimers();
            Wq.CountAbandonedDelayedWork();
            _shutdownReport = new RuntimeShutdownReport(
                leftOver, cancellationToken.IsCancellationRequested, Stopwatch.GetElapsedTime(started),
                AbandonedTimerCount, AbandonedDelayedWorkCount, _panic);
        }
        finally
        {
            Volatile.Write(ref _state, StateStopped);
            _stopped.Set();
        }
        return _shutdownReport;
    }

    /// <summary>
    /// Waits until every CPU is quiescent and no handler finished while that was being checked, or until
    /// <paramref name="timeoutSpan"/> has passed or <paramref name="cancellationToken"/> is cancelled: then
    /// returns what is still pending.
    /// </summary>
    private string? Drain(TimeSpan timeoutSpan, CancellationToken cancellationToken)
    {
        long timeout = (long)(timeoutSpan.TotalSeconds * Stopwatch.Frequency);
        long deadline = Stopwatch.GetTimestamp() + timeout;
        var backoff = default(Backoff);
        string? leakedBindings = null;
        while (LiveBindings() is { Length: > 0 } bound)
        {
            if (Stopwatch.GetTimestamp() > deadline || cancellationToken.IsCancellationRequested)
            {
                leakedBindings = $"threads still bound with BindCurrentThread (dispose their CpuBinding before shutdown): {string.Join(", ", bound)}";
                break;
            }
            backoff.Wait();
        }

        // Drain what was accepted even when a binding leaked: the rest of the work must not be lost.
        // Frozen workqueues are thawed: their items were accepted too.
        Wq.Thaw();
        deadline = Stopwatch.GetTimestamp() + timeout;
        backoff = default;
        while (_panic is null)
        {
            foreach (var cpu in _cpus)
            {
                cpu.Kick();
            }
            long before = CompletionSum();
            // The controller first: its in-flight assertions must be seen drained before the CPUs'
            // pending vectors are read (the same ordering argument as VirtualCpu.IsQuiescent).
            // The workqueues last: a CPU's in-flight count of foreign requests is read before the
            // workqueues' in-flight items, so a foreign queue_work() is seen either as in flight or as
            // linked. Work items queueing anything are themselves in flight until they finish, and a
            // finish moves the completion sum.
            bool quiet = Irqs.IsQuiescent && _cpus.All(c => c.IsQuiescent) && Wq.IsQuiescent;
            if (quiet && CompletionSum() == before)
            {
                return leakedBindings;
            }
            if (Stopwatch.GetTimestamp() > deadline || cancellationToken.IsCancellationRequested)
            {
                string pending = DescribePendingWork();
                if (pending.Length == 0)
                {
                    pending = "work kept arriving from handlers while shutdown looked";
                }
                return leakedBindings is null ? pending : $"{leakedBindings}; {pending}";
            }
            backoff.Wait();
        }
        return leakedBindings;
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
