using DeferRuntime.Cpus;
using DeferRuntime.Devices;
using DeferRuntime.Interrupts;
using DeferRuntime.Softirqs;
using DeferRuntime.Tasklets;
using DeferRuntime.Timers;
using DeferRuntime.Workqueues;

namespace DeferRuntime;

// Shutdown's accounting of accepted work: no callback starts once shutdown gives up, and the report
// names every accepted item that did not finish, as not started or still running.
public sealed partial class Runtime
{
    private int _callbacksClosed; // A: 1 once shutdown gave up: no callback starts from then on
    private readonly List<RuntimeShutdownItem> _refused = []; // under itself: callbacks refused before the report was built
    private bool _refusedSealed; // under _refused: the report is built; later refusals are already in it (see SealAndCollect)

    /// <summary>No callback of this runtime starts any more (shutdown gave up). PERF: one load.</summary>
    internal bool CallbacksClosed => Volatile.Read(ref _callbacksClosed) != 0;

    /// <summary>
    /// From now on no callback starts: every thread of the runtime checks this at the start of each one
    /// (<see cref="VirtualCpu.RunCallback"/>), after publishing what it starts. The process-wide barrier
    /// is the closing side of that asymmetric Dekker pair: once it returns, every thread either sees the
    /// close at its next check, or has published a callback it had already started, which the report
    /// lists as still running if its thread is left behind.
    /// </summary>
    private void CloseCallbacks()
    {
        if (Interlocked.Exchange(ref _callbacksClosed, 1) == 0)
        {
            Interlocked.MemoryBarrierProcessWide();
        }
    }

    /// <summary>A callback that found callbacks closed: it does not run, and is reported as not started.</summary>
    internal void RefuseCallback<T>(ThreadContext ctx, T state, Func<T, string> describe)
    {
        var item = ItemOf(ctx, typeof(T).IsValueType ? null : state, ctx.RunningSoftirq, describe(state), ShutdownItemState.NotStarted, thread: null);
        lock (_refused)
        {
            if (!_refusedSealed)
            {
                _refused.Add(item);
            }
        }
    }

    /// <summary>
    /// Builds the report's two lists once every thread that could be joined was: what was refused so far,
    /// what is still queued anywhere (including a left-behind thread's running batch), and what the
    /// left-behind threads are running. Later refusals are not added: a left-behind thread that returns
    /// from its callback refuses only items that were queued or in its batch here, so already listed.
    /// </summary>
    private (RuntimeShutdownItem[] NotStarted, RuntimeShutdownItem[] StillRunning) SealAndCollect(IReadOnlyList<(string Name, ThreadContext? Context)> leftBehind)
    {
        var notStarted = new List<RuntimeShutdownItem>();
        lock (_refused)
        {
            _refusedSealed = true;
            notStarted.AddRange(_refused);
        }
        foreach (var cpu in _cpus)
        {
            cpu.CollectNotStarted(notStarted);
        }
        Irqs.CollectNotStarted(notStarted);
        Wq.CollectNotStarted(notStarted, lockUntil: TimestampAfter(System.Diagnostics.Stopwatch.GetTimestamp(), TimeSpan.FromMilliseconds(5)));

        var stillRunning = new List<RuntimeShutdownItem>();
        foreach (var (name, ctx) in leftBehind)
        {
            if (ctx is null)
            {
                continue;
            }
            object? state = Volatile.Read(ref ctx.RunningState);
            int softirq = Volatile.Read(ref ctx.RunningSoftirq);
            Delegate? describe = Volatile.Read(ref ctx.RunningDescribe);
            if (describe is null && softirq == 0)
            {
                continue; // between callbacks (waiting for a gate, say): it runs nothing of the user's
            }
            string what = ctx.DescribeRunning() ?? (softirq != 0 ? $"softirq {SoftirqTable.Names[softirq - 1]}" : "?");
            stillRunning.Add(ItemOf(ctx, describe is null ? null : state, softirq, what, ShutdownItemState.StillRunning, name));
        }
        return (notStarted.ToArray(), stillRunning.ToArray());
    }

    /// <summary>
    /// A callback's state as a report item: its kind from the state's type (a work item, tasklet, timer,
    /// irq action, IPI call, NAPI poll), or a softirq vector when the state is a value (the softirq loop's).
    /// </summary>
    private static RuntimeShutdownItem ItemOf(ThreadContext ctx, object? state, int runningSoftirq, string described, ShutdownItemState st, string? thread)
    {
        int cpu = ctx.Cpu.Id;
        return state switch
        {
            WorkStruct work => WorkqueueSubsystem.ItemOf(work, cpu, st, thread),
            Tasklet t => new RuntimeShutdownItem(t.Name, ShutdownItemKind.Tasklet, st, cpu, null, thread, t),
            TimerList timer => new RuntimeShutdownItem(timer.Name, ShutdownItemKind.Timer, st, cpu, null, thread, timer),
            Hrtimer hrtimer => new RuntimeShutdownItem(hrtimer.Name, ShutdownItemKind.Timer, st, cpu, null, thread, hrtimer),
            IrqAction action => new RuntimeShutdownItem(
                action.ToString(), ctx.Role == ThreadRole.IrqThread ? ShutdownItemKind.IrqThread : ShutdownItemKind.HardIrq, st, cpu, null, thread, action),
            CallSingleData csd => new RuntimeShutdownItem("IPI call function", ShutdownItemKind.IpiCall, st, cpu, null, thread, csd),
            NetRxSoftirq.Softnet sd => new RuntimeShutdownItem(sd.Current?.Name ?? described, ShutdownItemKind.NapiPoll, st, cpu, null, thread, sd.Current),
            null when runningSoftirq != 0 => new RuntimeShutdownItem(SoftirqTable.Names[runningSoftirq - 1], ShutdownItemKind.Softirq, st, cpu, null, thread, null),
            _ => new RuntimeShutdownItem(described, ShutdownItemKind.Softirq, st, cpu, null, thread, state),
        };
    }
}
