using System.Diagnostics;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text;
using DeferRuntime.Cpus;
using DeferRuntime.Locking;
using DeferRuntime.Platform;

namespace DeferRuntime.Interrupts;

/// <summary>
/// The interrupt controller and the kernel's IRQ API (kernel/irq/manage.c): numbered lines routed to CPUs
/// by affinity, request_irq()/request_threaded_irq()/free_irq() with the kernel's validation,
/// disable/enable with nesting depth, synchronize_irq(), irq_set_affinity(), and /proc/interrupts.
/// </summary>
/// <remarks>
/// <para>What runs where: a device thread asserts a line (<see cref="AssertEdge"/>, <see cref="AssertLevel"/>);
/// the chip latches it and sets the line's vector pending on one CPU of its affinity, lock-free, and
/// kicks that CPU. <c>cpu/N</c> runs the line's flow handler (edge or level) with its irq gate held, the
/// action chain in order, then irq exit runs softirqs. Threaded actions finish on their own
/// <c>irq/L-name</c> thread.</para>
/// <para>Line L is delivered on per-CPU vector <c>16 + L</c>: vector 0 is the CALL_FUNCTION IPI, 1 the
/// local timer, 2–15 are reserved, as the low x86 vectors are.</para>
/// </remarks>
public sealed class IrqController
{
    /// <summary>The first per-CPU vector used by device lines.</summary>
    internal const int FirstDeviceVector = 16;

    /// <summary>The most lines a controller can have (vectors 16–255).</summary>
    public const int MaxLines = VirtualCpu.VectorCount - FirstDeviceVector;

    private readonly IrqDesc[] _descs; // I
    private readonly bool[] _allocated; // L: _allocated
    private PaddedInt32 _foreignInFlight; // A: assertions from threads of no CPU in flight (rundown for shutdown)

    internal IrqController(Runtime runtime, int lines)
    {
        Runtime = runtime;
        _descs = new IrqDesc[lines];
        _allocated = new bool[lines];
        for (int irq = 0; irq < lines; irq++)
        {
            _descs[irq] = new IrqDesc(this, irq, FirstDeviceVector + irq, IrqTrigger.Edge, runtime.Options.CpuCount);
        }
    }

    internal Runtime Runtime { get; }

    /// <summary>Number of lines (see <see cref="RuntimeOptions.IrqLines"/>).</summary>
    public int LineCount => _descs.Length;

    // The spurious detector's clock and quiet period (HZ/10 = 100 ms): a field so that tests can hold
    // the clock still and check the 99,900 threshold exactly, whatever the machine's scheduling.
    internal Func<long> SpuriousClock = Stopwatch.GetTimestamp;
    internal long SpuriousQuietTicks = Stopwatch.Frequency / 10;

    // ---- lines ----

    /// <summary>irq_alloc_desc(): reserves a free line for a device and sets its trigger. Lines can also be used by number without allocating.</summary>
    public int AllocateIrq(IrqTrigger trigger = IrqTrigger.Edge)
    {
        lock (_allocated)
        {
            for (int irq = 0; irq < _allocated.Length; irq++)
            {
                if (!_allocated[irq] && _descs[irq].Actions.Length == 0)
                {
                    _allocated[irq] = true;
                    _descs[irq].SetTrigger(trigger);
                    return irq;
                }
            }
        }
        throw new InvalidOperationException($"irq_alloc_desc(): all {_descs.Length} lines are in use (RuntimeOptions.IrqLines).");
    }

    /// <summary>irq_set_irq_type(): sets a line's trigger; refused while the line has actions (their flags agreed on the old one).</summary>
    public void IrqSetIrqType(int irq, IrqTrigger trigger)
    {
        var desc = Desc(irq, "irq_set_irq_type()");
        if (desc.Actions is { Length: > 0 } actions)
        {
            throw new InvalidOperationException($"irq_set_irq_type(): IRQ {irq} is requested by '{actions[0].Name}'; free it before changing its trigger.");
        }
        desc.SetTrigger(trigger);
    }

    // ---- request / free ----

    /// <summary>request_irq(): installs <paramref name="handler"/> on line <paramref name="irq"/>; it runs in hard-IRQ context on the CPU the line is delivered to.</summary>
    /// <returns>The action; disposing it is free_irq().</returns>
    public IrqAction RequestIrq(int irq, IrqHandler handler, IrqFlags flags, string name, object? devId = null)
    {
        ArgumentNullException.ThrowIfNull(handler);
        return Request(irq, handler, null, flags, name, devId, "request_irq()");
    }

    /// <summary>
    /// request_threaded_irq(): a primary handler (hard-IRQ context; null = one that only wakes the thread,
    /// which needs <see cref="IrqFlags.OneShot"/>) and a thread function run on the action's own
    /// <c>irq/L-name</c> thread when the primary returns <see cref="IrqReturn.WakeThread"/>.
    /// </summary>
    /// <returns>The action; disposing it is free_irq(), which also waits for and stops the thread.</returns>
    public IrqAction RequestThreadedIrq(int irq, IrqHandler? handler, IrqHandler? threadFn, IrqFlags flags, string name, object? devId = null)
        => Request(irq, handler, threadFn, flags, name, devId, "request_threaded_irq()");

    private IrqAction Request(int irq, IrqHandler? handler, IrqHandler? threadFn, IrqFlags flags, string name, object? devId, string caller)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        MightSleep.Check(caller);
        ThrowIfUnusable(caller);
        var desc = Desc(irq, caller);
        if (handler is null && threadFn is null)
        {
            throw new ArgumentException($"{caller}: IRQ {irq} '{name}': needs a primary handler or a thread function (-EINVAL).", nameof(handler));
        }
        if ((flags & IrqFlags.Shared) != 0 && devId is null)
        {
            throw new ArgumentException($"{caller}: IRQ {irq} '{name}': IrqFlags.Shared needs a unique non-null dev cookie, by which free_irq() tells the sharers apart (-EINVAL).", nameof(devId));
        }
        if (handler is null && (flags & IrqFlags.OneShot) == 0)
        {
            throw new ArgumentException($"{caller}: threaded IRQ {irq} '{name}' requested with no primary handler and without IrqFlags.OneShot: the line would be unmasked before the thread serviced the device and fire forever (-EINVAL).", nameof(flags));
        }
        var trigger = TriggerOf(flags, irq, name, caller);

        // Without a primary handler the kernel installs irq_default_primary_handler(): wake the thread.
        // The thread-mask bit is chosen under the line's lock at publication (IrqDesc.TryAdd), so two
        // concurrent requests cannot get the same one.
        var action = new IrqAction(desc, handler ?? DefaultPrimaryHandler, threadFn, flags, name, devId);
        if (threadFn is not null)
        {
            action.Thread = new IrqThread(action);
            action.Thread.Start();
        }
        string? refusal = desc.TryAdd(action, trigger, out _);
        if (refusal is not null)
        {
            action.MarkFreed();
            action.Thread?.Stop(join: true);
            throw new InvalidOperationException($"{caller}: {refusal} (-EBUSY).");
        }
        return action;
    }

    private static readonly IrqHandler DefaultPrimaryHandler = static (_, _) => IrqReturn.WakeThread;

    private static IrqTrigger? TriggerOf(IrqFlags flags, int irq, string name, string caller)
    {
        bool edge = (flags & (IrqFlags.TriggerRising | IrqFlags.TriggerFalling)) != 0;
        bool level = (flags & (IrqFlags.TriggerHigh | IrqFlags.TriggerLow)) != 0;
        if (edge && level)
        {
            throw new ArgumentException($"{caller}: IRQ {irq} '{name}': asks for both an edge and a level trigger.", nameof(flags));
        }
        return edge ? IrqTrigger.Edge : level ? IrqTrigger.Level : null;
    }

    /// <summary>__setup_irq()'s rules for adding an action to a line that already has some; null if allowed.</summary>
    internal static string? CheckShare(IrqDesc desc, IrqAction[] existing, IrqAction action, IrqTrigger? trigger)
    {
        var owner = existing[0];
        if ((owner.Flags & IrqFlags.Shared) == 0)
        {
            return $"IRQ {desc.Irq} is already requested by '{owner.Name}' without IrqFlags.Shared";
        }
        if ((action.Flags & IrqFlags.Shared) == 0)
        {
            return $"IRQ {desc.Irq} is already requested by '{owner.Name}' (shared); '{action.Name}' must also pass IrqFlags.Shared to share it";
        }
        if (trigger is { } t && t != desc.Trigger)
        {
            return $"flags mismatch on IRQ {desc.Irq}: '{action.Name}' asks for a {Describe(t)} trigger, '{owner.Name}' has it {Describe(desc.Trigger)}";
        }
        if (((owner.Flags ^ action.Flags) & IrqFlags.OneShot) != 0)
        {
            return $"flags mismatch on IRQ {desc.Irq}: '{action.Name}' {((action.Flags & IrqFlags.OneShot) != 0 ? "asks for" : "lacks")} IrqFlags.OneShot, '{owner.Name}' {((owner.Flags & IrqFlags.OneShot) != 0 ? "has it" : "does not")}; sharers must agree";
        }
        foreach (var a in existing)
        {
            if (ReferenceEquals(a.DevId, action.DevId))
            {
                return $"IRQ {desc.Irq}: the dev cookie of '{action.Name}' is already used by '{a.Name}' on this line; each sharer needs its own, or free_irq() cannot tell them apart";
            }
        }
        return null;
    }

    private static string Describe(IrqTrigger trigger) => trigger == IrqTrigger.Edge ? "edge" : "level";

    /// <summary>free_irq(): removes the action whose dev cookie is <paramref name="devId"/> from line <paramref name="irq"/> (see <see cref="IrqAction.Dispose"/>).</summary>
    public void FreeIrq(int irq, object? devId)
    {
        var desc = Desc(irq, "free_irq()");
        var action = desc.Actions.FirstOrDefault(a => ReferenceEquals(a.DevId, devId))
            ?? throw new InvalidOperationException($"free_irq(): trying to free already-free IRQ {irq}: no action on it has that dev cookie.");
        Free(action);
    }

    /// <summary>
    /// __free_irq(): unpublish the action (the last one shuts the line down), wait for running handlers
    /// and threads of the line (synchronize_irq), then stop the action's thread.
    /// </summary>
    internal void Free(IrqAction action)
    {
        if (action.IsFreed)
        {
            return;
        }
        if (action.Thread is { IsCurrentThread: true })
        {
            throw new InvalidOperationException($"free_irq() of {action} from its own thread would wait for itself; free it from another thread.");
        }
        CheckNotOwnThread(action.Desc, "free_irq()");
        MightSleep.Check("free_irq()");
        if (!action.MarkFreed())
        {
            return;
        }
        var desc = action.Desc;
        desc.Remove(action);
        bool idle = false;
        try
        {
            if (!Runtime.IsStoppedOrPanicked)
            {
                WaitUntilIdle(desc, "free_irq()");
            }
            idle = true;
        }
        finally
        {
            // After a panic the thread may be stuck in its function forever: tell it to exit, do not join.
            action.Thread?.Stop(join: idle && !Runtime.IsPanicked);
        }
    }

    // ---- disable / enable / synchronize / affinity ----

    /// <summary>disable_irq(): disables the line (nesting) and waits until no handler or thread of it is running. Not from the line's own handler or thread.</summary>
    public void DisableIrq(int irq)
    {
        var desc = Desc(irq, "disable_irq()");
        CheckNotOwnThread(desc, "disable_irq()");
        MightSleep.Check("disable_irq()");
        desc.DisableDepth();
        WaitUntilIdle(desc, "disable_irq()");
    }

    /// <summary>disable_irq_nosync(): disables the line (nesting) without waiting; usable from the line's own handler.</summary>
    public void DisableIrqNoSync(int irq) => Desc(irq, "disable_irq_nosync()").DisableDepth();

    /// <summary>
    /// enable_irq(): undoes one disable; at depth 0 the line is delivered again and an edge that arrived
    /// while disabled is resent. An enable with nothing to undo is reported as the kernel's "Unbalanced
    /// enable for IRQ" warning and otherwise ignored.
    /// </summary>
    public void EnableIrq(int irq)
    {
        var desc = Desc(irq, "enable_irq()");
        if (!desc.EnableDepth())
        {
            Runtime.ReportWarning(ThreadContext.Current?.Cpu.Id ?? -1, $"irq {irq}", $"Unbalanced enable for IRQ {irq}: enable_irq() without a matching disable_irq(); ignored");
        }
    }

    /// <summary>synchronize_irq(): waits until no handler of the line runs on any CPU and no woken thread of it is still running.</summary>
    public void SynchronizeIrq(int irq)
    {
        var desc = Desc(irq, "synchronize_irq()");
        CheckNotOwnThread(desc, "synchronize_irq()");
        MightSleep.Check("synchronize_irq()");
        WaitUntilIdle(desc, "synchronize_irq()");
    }

    /// <summary>
    /// irq_set_affinity(): the CPUs the line may be delivered to. Takes effect for the next assertion;
    /// the line's irq threads move to the first CPU of the mask before their next run.
    /// </summary>
    public void IrqSetAffinity(int irq, params int[] cpus)
    {
        ArgumentNullException.ThrowIfNull(cpus);
        var desc = Desc(irq, "irq_set_affinity()");
        if (cpus.Length == 0)
        {
            throw new ArgumentException($"irq_set_affinity(): IRQ {irq}: the mask is empty; a line needs at least one CPU to be delivered to (-EINVAL).", nameof(cpus));
        }
        foreach (int cpu in cpus)
        {
            if ((uint)cpu >= (uint)Runtime.Cpus.Count)
            {
                throw new ArgumentOutOfRangeException(nameof(cpus), cpu, $"irq_set_affinity(): IRQ {irq}: CPU {cpu} does not exist; this runtime has CPUs 0 to {Runtime.Cpus.Count - 1} (-EINVAL).");
            }
        }
        desc.SetAffinity(cpus.Distinct().ToArray(), desc.Balanced);
    }

    /// <summary>Delivery within the affinity mask: spread across it (balanced, the default) or always its first CPU (as IrqFlags.NoBalancing requests).</summary>
    public void IrqSetBalancing(int irq, bool balanced)
    {
        var desc = Desc(irq, "irq_set_affinity()");
        desc.SetAffinity([.. desc.Affinity], balanced);
    }

    private static void CheckNotOwnThread(IrqDesc desc, string caller)
    {
        foreach (var a in desc.Actions)
        {
            if (a.Thread is { IsCurrentThread: true })
            {
                throw new InvalidOperationException($"{caller} on IRQ {desc.Irq} from its own thread '{Thread.CurrentThread.Name}' would wait for itself; use DisableIrqNoSync().");
            }
        }
    }

    private void WaitUntilIdle(IrqDesc desc, string caller)
    {
        var backoff = default(Backoff);
        while (desc.IsBusy)
        {
            Runtime.ThrowIfDead(caller);
            backoff.Wait();
        }
    }

    // ---- the device side: assertions ----

    /// <summary>A device raises an edge on line <paramref name="irq"/>. Lock-free and allocation-free; see <see cref="IrqAssertResult"/>.</summary>
    public IrqAssertResult AssertEdge(int irq)
    {
        var desc = Desc(irq, "assert");
        if (!EnterAssert())
        {
            return desc.AssertEdge();
        }
        try
        {
            return desc.AssertEdge();
        }
        finally
        {
            ExitAssert();
        }
    }

    /// <summary>A device drives level line <paramref name="irq"/> active; it stays asserted until <see cref="DeassertLevel"/>.</summary>
    public IrqAssertResult AssertLevel(int irq)
    {
        var desc = Desc(irq, "assert");
        if (!EnterAssert())
        {
            return desc.AssertLevel();
        }
        try
        {
            return desc.AssertLevel();
        }
        finally
        {
            ExitAssert();
        }
    }

    /// <summary>A device releases level line <paramref name="irq"/> (typically from its handler, once serviced).</summary>
    public void DeassertLevel(int irq) => Desc(irq, "deassert").DeassertLevel();

    /// <summary>
    /// Rundown protection for assertions from threads of no CPU (device threads): shutdown refuses new
    /// ones and waits for those in flight. Threads of this runtime's CPUs (handlers) are not counted.
    /// Returns true when the caller must call <see cref="ExitAssert"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool EnterAssert()
    {
        var ctx = ThreadContext.Current;
        if (ctx is not null && ReferenceEquals(ctx.Cpu.Runtime, Runtime))
        {
            Runtime.ThrowIfStoppedForTask(ctx, "assert");
            return false;
        }
        Interlocked.Increment(ref _foreignInFlight.Value);
        if (!Runtime.AcceptsForeignWork)
        {
            Interlocked.Decrement(ref _foreignInFlight.Value);
            ThrowIfUnusable("assert");
        }
        return true;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void ExitAssert() => Interlocked.Decrement(ref _foreignInFlight.Value);

    private void ThrowIfUnusable(string caller) => Runtime.ThrowIfNotAccepting(caller);

    // ---- cpu/N ----

    /// <summary>A device vector as shutdown's report names it: <c>irq 5 'eth0'</c>, or the bare vector if no line owns it.</summary>
    internal string DescribeVector(int vector)
    {
        int irq = vector - FirstDeviceVector;
        if ((uint)irq >= (uint)_descs.Length)
        {
            return $"vector {vector}";
        }
        var actions = _descs[irq].Actions;
        return actions.Length == 0 ? $"irq {irq}" : $"irq {irq} '{string.Join(",", actions.Select(a => a.Name))}'";
    }

    /// <summary>The vector of a device line fired on <paramref name="cpu"/>: run the line's flow handler.</summary>
    internal void HandleVector(VirtualCpu cpu, ThreadContext ctx, int vector)
    {
        int irq = vector - FirstDeviceVector;
        if ((uint)irq >= (uint)_descs.Length)
        {
            Runtime.ReportWarning(cpu.Id, $"vector {vector}", $"unexpected IRQ trap at vector {vector} on CPU {cpu.Id}: no line owns it (ack_bad_irq)");
            return;
        }
        _descs[irq].Handle(cpu, ctx);
    }

    /// <summary>True when no assertion is in flight and no line is running a handler or thread (shutdown's check; read before the CPUs').</summary>
    internal bool IsQuiescent
    {
        get
        {
            if (Volatile.Read(ref _foreignInFlight.Value) != 0)
            {
                return false;
            }
            foreach (var desc in _descs)
            {
                if (desc.IsBusy)
                {
                    return false;
                }
            }
            return true;
        }
    }

    /// <summary>Thread-function runs finished, for shutdown's proof that nothing ran while it checked.</summary>
    internal long CompletionSum
    {
        get
        {
            long sum = 0;
            foreach (var desc in _descs)
            {
                foreach (var a in desc.Actions)
                {
                    sum += a.ThreadRuns;
                }
            }
            return sum;
        }
    }

    /// <summary>The line descriptors, for metrics.</summary>
    internal IReadOnlyList<IrqDesc> Lines => _descs;

    /// <summary>Actions requested and not freed yet, over every line (racy: for reports).</summary>
    public int RequestedActionCount => _descs.Sum(d => d.Actions.Count(a => !a.IsFreed));

    /// <summary>
    /// free_irq() of every action still requested, line by line: each waits for the line's running
    /// handlers and threads, as <see cref="FreeIrq"/> does. What a service does at shutdown before it drains
    /// its bottom halves, so that no new top half feeds them. Returns how many actions it freed. May sleep.
    /// </summary>
    public int FreeAllIrqs()
    {
        int freed = 0;
        foreach (var desc in _descs)
        {
            foreach (var action in desc.Actions)
            {
                if (!action.IsFreed)
                {
                    Free(action);
                    freed++;
                }
            }
        }
        return freed;
    }

    /// <summary>
    /// Shutdown, after the drain: closes every line to new requests and frees every action still
    /// requested, telling its thread to exit (after any run already pending) without waiting for a
    /// running handler or thread function: the threads go to <paramref name="threads"/>, which shutdown
    /// joins with a bound, so a function that never returns is reported instead of hanging shutdown.
    /// </summary>
    internal void FreeAll(List<StoppingThread> threads)
    {
        foreach (var desc in _descs)
        {
            foreach (var a in desc.CloseForShutdown())
            {
                if (a.MarkFreed() && a.Thread is { } thread)
                {
                    _threadedAtShutdown.Add(a);
                    thread.Stop(join: false);
                    threads.Add(new StoppingThread(thread.Thread, () => thread.Context));
                }
            }
        }
    }

    // ---- reporting ----

    private readonly List<IrqAction> _threadedAtShutdown = []; // S: the threaded actions FreeAll stopped, for the report

    /// <summary>
    /// Adds each threaded handler woken (IRQTF_RUNTHREAD) and never run to <paramref name="into"/> as not
    /// started. Called by shutdown after its joins.
    /// </summary>
    internal void CollectNotStarted(List<RuntimeShutdownItem> into)
    {
        foreach (var a in _threadedAtShutdown)
        {
            if (a.Thread is { IsRunPending: true } thread)
            {
                into.Add(new RuntimeShutdownItem(a.ToString(), ShutdownItemKind.IrqThread, ShutdownItemState.NotStarted, thread.BoundCpu, null, null, a));
            }
        }
    }

    /// <summary>CPU time of the live irq threads bound to CPU <paramref name="cpu"/>, in ns; -1 without per-thread clocks.</summary>
    internal long IrqThreadCpuNs(int cpu)
    {
        if (ThreadCpuClock.Create() == ThreadCpuClock.None)
        {
            return -1;
        }
        long sum = 0;
        foreach (var desc in _descs)
        {
            foreach (var action in desc.Actions)
            {
                if (action.Thread is { } thread && thread.BoundCpu == cpu)
                {
                    sum += Math.Max(0, thread.CpuNs);
                }
            }
        }
        return sum;
    }

    /// <summary>A consistent snapshot of line <paramref name="irq"/>'s descriptor and counts.</summary>
    public IrqLineStats GetStats(int irq) => Desc(irq, "irq stats").Snapshot();

    /// <summary>
    /// /proc/interrupts: one row per line that has actions or has fired — chain runs per CPU, trigger,
    /// the action names — then the coalesced, replayed and unhandled counts; then the per-CPU rows for
    /// the local timer (LOC) and the function-call IPI (CAL).
    /// </summary>
    public string RenderInterrupts()
    {
        var cpus = Runtime.Cpus;
        var sb = new StringBuilder();
        sb.Append(' ', 5);
        foreach (var cpu in cpus)
        {
            sb.Append(CultureInfo.InvariantCulture, $" {"CPU" + cpu.Id.ToString(CultureInfo.InvariantCulture),10}");
        }
        sb.AppendLine();
        foreach (var desc in _descs)
        {
            var s = desc.Snapshot();
            if (s.Actions.Count == 0 && s.Runs == 0 && s.Asserts == 0)
            {
                continue;
            }
            sb.Append(CultureInfo.InvariantCulture, $"{s.Irq,4}:");
            foreach (long runs in s.PerCpuRuns)
            {
                sb.Append(CultureInfo.InvariantCulture, $" {runs,10}");
            }
            sb.Append(CultureInfo.InvariantCulture, $"  {(s.Trigger == IrqTrigger.Edge ? "edge" : "level"),-6}");
            sb.Append(s.Actions.Count == 0 ? "(none)" : string.Join(", ", s.Actions));
            sb.Append(CultureInfo.InvariantCulture, $"  [coalesced {s.Coalesced}, replayed {s.Replays}, unhandled {s.Unhandled}");
            if (s.Depth > 0)
            {
                sb.Append(s.SpuriousDisabled ? ", disabled as spurious" : $", disabled (depth {s.Depth})");
            }
            sb.AppendLine("]");
        }
        sb.Append("LOC:");
        foreach (var cpu in cpus)
        {
            sb.Append(CultureInfo.InvariantCulture, $" {cpu.LocalTimerInterruptCount,10}");
        }
        sb.AppendLine("  Local timer interrupts");
        sb.Append("CAL:");
        foreach (var cpu in cpus)
        {
            sb.Append(CultureInfo.InvariantCulture, $" {cpu.IpiCallCount,10}");
        }
        sb.AppendLine("  Function call interrupts");
        return sb.ToString();
    }

    private IrqDesc Desc(int irq, string caller)
    {
        if ((uint)irq >= (uint)_descs.Length)
        {
            ThrowNoSuchIrq(irq, caller);
        }
        return _descs[irq];
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void ThrowNoSuchIrq(int irq, string caller) =>
        throw new ArgumentOutOfRangeException(nameof(irq), irq, $"{caller}: IRQ {irq} does not exist; this controller has lines 0 to {_descs.Length - 1} (RuntimeOptions.IrqLines).");
}
