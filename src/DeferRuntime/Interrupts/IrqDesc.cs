using System.Diagnostics;
using System.Runtime.CompilerServices;
using DeferRuntime.Cpus;

namespace DeferRuntime.Interrupts;

/// <summary>
/// struct irq_desc: one interrupt line — its action chain, trigger, the chip's latch and mask, the
/// disable depth, in-progress and pending state, affinity, per-CPU counts and the spurious detector.
/// </summary>
/// <remarks>
/// <para>Two layers, as in the kernel. The <b>chip</b> (<see cref="_hw"/>) is what a device touches: it
/// latches an edge or holds a level, and delivers to a CPU unless masked — lock-free, so an assertion
/// never waits for a CPU. The <b>descriptor state</b> (depth, in-progress, pending, OneShot threads) is
/// changed under <see cref="_lock"/> (the kernel's desc->lock), which is never held while a handler runs.</para>
/// <para>Every assertion of an edge line ends in exactly one chain run or is counted as coalesced:
/// asserts = runs + coalesced once the line is quiet (the tests check it). Level lines re-fire at
/// unmask while the device still asserts them.</para>
/// <para>Field legend: <c>I:</c> set at creation; <c>L:</c> under <see cref="_lock"/>; <c>A:</c> any thread,
/// Interlocked; <c>C:</c> the CPU running the chain (serialized by in-progress), per-CPU slots by their CPU.</para>
/// </remarks>
internal sealed partial class IrqDesc
{
    // _hw bit layout (the chip):
    private const int HwLatched = 1; // an edge arrived and has not been taken by a flow handler yet
    private const int HwMasked = 2;  // masked at the chip: assertions latch but are not delivered
    private const int HwLevel = 4;   // a level line is being asserted by its device

    /// <summary>The kernel's spurious detector window and threshold (kernel/irq/spurious.c).</summary>
    internal const int SpuriousWindow = 100_000;
    internal const int SpuriousThreshold = 99_900;

    internal readonly IrqController Controller; // I
    internal readonly int Irq; // I
    internal readonly int Vector; // I: the per-CPU hard-IRQ vector the line is delivered on

    private readonly Lock _lock = new();
    private int _hw; // A: the chip, see the layout above
    private volatile IrqAction[] _actions = []; // L to write (copy on write); any thread reads the snapshot
    private volatile IrqTrigger _trigger; // L to write; read by the flow handler
    private int _depth = 1; // L: disable depth; 1 until the first request starts the line up (kernel: irq_desc starts disabled)
    private bool _inProgress; // L: IRQD_IRQ_INPROGRESS
    private bool _pending; // L: IRQS_PENDING: an edge that could not run (in progress elsewhere, disabled) and must be replayed
    private bool _spuriousDisabled; // L: IRQS_SPURIOUS_DISABLED
    private bool _closed; // L: shutdown freed the line; no request may be published after it
    private bool _threadsOneshotCapable; // L: some action is OneShot with a thread (IRQS_ONESHOT): mask while running
    private uint _threadsOneshot; // L: OneShot threads still running; the line stays masked while non-zero
    private int _runningCpu = -1; // L: the CPU running the chain, or -1
    private int _threadsActive; // A: woken threads not yet finished (synchronize_irq waits for 0)
    private SpuriousDetector _spurious; // L

    private volatile int[] _affinity; // L to write: the CPUs the line may be delivered to
    private volatile bool _balanced = true; // L to write: spread across the mask (false: first CPU only)
    private int _roundRobin; // A: next CPU of the mask when balanced

    private readonly long[] _cpuRuns; // C: chain runs per CPU (each slot written by its CPU)
    private long _asserts; // A
    private long _coalesced; // A
    private long _replays; // L
    private long _resends; // L
    private long _unhandled; // L: IRQ_NONE chain runs, all time

    internal IrqDesc(IrqController controller, int irq, int vector, IrqTrigger trigger, int cpuCount)
    {
        Controller = controller;
        Irq = irq;
        Vector = vector;
        _trigger = trigger;
        _cpuRuns = new long[cpuCount];
        _affinity = Enumerable.Range(0, cpuCount).ToArray();
        _hw = HwMasked;
    }

    internal IrqTrigger Trigger => _trigger;

    internal IrqAction[] Actions => _actions;

    internal int FirstAffinityCpu => _affinity[0];

    internal IReadOnlyList<int> Affinity => _affinity;

    internal bool Balanced => _balanced;

    internal long GetCpuRuns(int cpu) => Volatile.Read(ref _cpuRuns[cpu]);

    internal long Runs
    {
        get
        {
            long sum = 0;
            for (int i = 0; i < _cpuRuns.Length; i++)
            {
                sum += Volatile.Read(ref _cpuRuns[i]);
            }
            return sum;
        }
    }

    internal long Asserts => Interlocked.Read(ref _asserts);

    internal long Coalesced => Interlocked.Read(ref _coalesced);

    internal int ThreadsActive => Volatile.Read(ref _threadsActive);

    internal IrqLineStats Snapshot()
    {
        lock (_lock)
        {
            var perCpu = new long[_cpuRuns.Length];
            for (int i = 0; i < perCpu.Length; i++)
            {
                perCpu[i] = Volatile.Read(ref _cpuRuns[i]);
            }
            int hw = Volatile.Read(ref _hw);
            return new IrqLineStats(
                Irq, _trigger, _actions.Select(a => a.Name).ToArray(), perCpu, Interlocked.Read(ref _asserts),
                Interlocked.Read(ref _coalesced), _replays, _resends, _unhandled, _spurious.Unhandled, _depth,
                (hw & HwMasked) != 0, _inProgress, _pending || (hw & HwLatched) != 0, _spuriousDisabled, _affinity.ToArray(), _balanced);
        }
    }

    // ---- the chip: what devices do (any thread, lock-free) ----

    /// <summary>An edge on the line: latch it and deliver, unless already latched (coalesced) or masked (latched for unmask).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal IrqAssertResult AssertEdge() => Assert(HwLatched);

    /// <summary>A level line goes active: deliver unless it already was (coalesced) or is masked (delivered at unmask).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal IrqAssertResult AssertLevel() => Assert(HwLevel);

    /// <summary>Sets the chip's <paramref name="bit"/> (the edge latch or the level): the one setting it delivers, unless masked.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private IrqAssertResult Assert(int bit)
    {
        Interlocked.Increment(ref _asserts);
        int old = Interlocked.Or(ref _hw, bit);
        if ((old & bit) != 0)
        {
            Interlocked.Increment(ref _coalesced);
            return IrqAssertResult.Coalesced;
        }
        if ((old & HwMasked) != 0)
        {
            return IrqAssertResult.Latched;
        }
        Deliver();
        return IrqAssertResult.Delivered;
    }

    /// <summary>The device stops asserting a level line (its handler serviced it).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void DeassertLevel() => Interlocked.And(ref _hw, ~HwLevel);

    /// <summary>Sends the line's vector to one CPU of its affinity and kicks it.</summary>
    private void Deliver()
    {
        var affinity = _affinity;
        int index = affinity.Length == 1 || !_balanced
            ? 0
            : (int)((uint)Interlocked.Increment(ref _roundRobin) % (uint)affinity.Length);
        Controller.Runtime.Cpus[affinity[index]].AssertVector(Vector);
    }

    private void Mask() => Interlocked.Or(ref _hw, HwMasked);

    /// <summary>Unmasks at the chip; what was latched or is still asserted meanwhile is delivered now.</summary>
    private void Unmask()
    {
        int old = Interlocked.And(ref _hw, ~HwMasked);
        if ((old & HwMasked) != 0 && (old & (HwLatched | HwLevel)) != 0)
        {
            Deliver();
        }
    }

    // ---- descriptor state from the IRQ API (any thread) ----

    /// <summary>__disable_irq(): one more level of disable (lazy: the chip is masked when an interrupt arrives meanwhile).</summary>
    internal void DisableDepth()
    {
        lock (_lock)
        {
            _depth++;
        }
    }

    /// <summary>__enable_irq(): false if the line was not disabled (the caller warns: "Unbalanced enable").</summary>
    internal bool EnableDepth()
    {
        lock (_lock)
        {
            if (_depth == 0)
            {
                return false;
            }
            if (--_depth == 0)
            {
                _spuriousDisabled = false;
                RestartDeliveryLocked();
            }
            return true;
        }
    }

    /// <summary>True while a flow handler runs the chain or a woken thread has not finished.</summary>
    internal bool IsBusy
    {
        get
        {
            lock (_lock)
            {
                return _inProgress || Volatile.Read(ref _threadsActive) != 0;
            }
        }
    }

    internal bool IsRunningChainOn(VirtualCpu cpu)
    {
        lock (_lock)
        {
            return _inProgress && _runningCpu == cpu.Id;
        }
    }

    internal int Depth
    {
        get
        {
            lock (_lock)
            {
                return _depth;
            }
        }
    }

    /// <summary>__setup_irq()'s checks and publication, under the descriptor lock. Returns the refusal, or null.</summary>
    internal string? TryAdd(IrqAction action, IrqTrigger? trigger, out bool first)
    {
        lock (_lock)
        {
            var actions = _actions;
            if (_closed)
            {
                first = false;
                return $"IRQ {Irq}: the runtime is shutting down and has freed its lines";
            }
            first = actions.Length == 0;
            string? refusal = first ? null : IrqController.CheckShare(this, actions, action, trigger);
            if (refusal is not null)
            {
                return refusal;
            }
            if (action.Thread is not null)
            {
                // thread_mask: a bit no live action and no finishing OneShot thread of a freed one holds.
                uint used = _threadsOneshot;
                foreach (var a in actions)
                {
                    used |= a.ThreadMask;
                }
                if (used == uint.MaxValue)
                {
                    return $"IRQ {Irq} already has 32 threaded actions, the most a line's thread_mask can track";
                }
                action.ThreadMask = 1u << System.Numerics.BitOperations.TrailingZeroCount(~used);
            }
            if (first && trigger is { } t)
            {
                _trigger = t; // irq_set_irq_type() on the first request
            }
            var grown = new IrqAction[actions.Length + 1];
            actions.CopyTo(grown, 0);
            grown[^1] = action;
            _actions = grown;
            if ((action.Flags & IrqFlags.OneShot) != 0 && action.Thread is not null)
            {
                _threadsOneshotCapable = true;
            }
            if (first)
            {
                // irq_startup(): the spurious statistics start over, the line is enabled (unless
                // NoAutoEnable) and what latched while it had no handler is delivered now.
                _spurious = default;
                _spuriousDisabled = false;
                _balanced = (action.Flags & IrqFlags.NoBalancing) == 0;
                if ((action.Flags & IrqFlags.NoAutoEnable) == 0)
                {
                    _depth = 0;
                    RestartDeliveryLocked();
                }
                else
                {
                    _depth = 1; // undo nested disables of the unused line: one EnableIrq starts it
                }
            }
            return null;
        }
    }

    /// <summary>Shutdown: no request is published after this; returns the actions to free (unpublished, line shut down).</summary>
    internal IrqAction[] CloseForShutdown()
    {
        lock (_lock)
        {
            _closed = true;
            var actions = _actions;
            _actions = [];
            if (actions.Length > 0)
            {
                _depth = 1;
                Mask();
            }
            return actions;
        }
    }

    /// <summary>__free_irq()'s removal: unpublish the action; the last one shuts the line down (disabled, masked).</summary>
    internal bool Remove(IrqAction action)
    {
        lock (_lock)
        {
            var actions = _actions;
            int index = Array.IndexOf(actions, action);
            if (index < 0)
            {
                return false;
            }
            var shrunk = new IrqAction[actions.Length - 1];
            Array.Copy(actions, 0, shrunk, 0, index);
            Array.Copy(actions, index + 1, shrunk, index, actions.Length - index - 1);
            _actions = shrunk;
            _threadsOneshotCapable = shrunk.Any(a => (a.Flags & IrqFlags.OneShot) != 0 && a.Thread is not null);
            if (shrunk.Length == 0)
            {
                // irq_shutdown(): depth back to 1 and masked, as before the first request.
                _depth = 1;
                Mask();
            }
            return true;
        }
    }

    internal void SetAffinity(int[] cpus, bool balanced)
    {
        Debug.Assert(cpus.Length > 0, "validated by the controller");
        lock (_lock)
        {
            _affinity = cpus;
            _balanced = balanced;
            foreach (var a in _actions)
            {
                a.Thread?.AffinityChanged();
            }
        }
    }

    internal void SetTrigger(IrqTrigger trigger)
    {
        lock (_lock)
        {
            _trigger = trigger;
        }
    }
}
